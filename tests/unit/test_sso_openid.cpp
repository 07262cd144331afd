// Single sign-on user name mapping, login tokens, OpenID tokens, client addresses and UIA session
// parameters: pure logic, no server.
#include "service/client_ips.hpp"
#include "service/openid.hpp"
#include "service/sso.hpp"
#include "service/uia_sessions.hpp"
#include "core/url_encode.hpp"

#include <gtest/gtest.h>

using namespace trestle;

TEST(OpenIdTokens, IssuedTokenNamesItsUserUntilItExpires) {
  service::OpenIdTokens t;
  auto token = t.issue("@a:x", 1000);
  EXPECT_EQ(t.user_for(token, 1000), "@a:x");
  EXPECT_EQ(t.user_for(token, 1000 + service::OpenIdTokens::kLifetimeMs - 1), "@a:x");
  EXPECT_EQ(t.user_for(token, 1000 + service::OpenIdTokens::kLifetimeMs), std::nullopt);
  EXPECT_EQ(t.user_for("unknown", 1000), std::nullopt);
  EXPECT_NE(t.issue("@a:x", 1000), t.issue("@a:x", 1000));
}

TEST(ClientIps, KeepsOneRowPerDeviceAddressAndAgent) {
  service::ClientIps ips;
  ips.record("@a:x", "D1", "127.0.0.1", "ua", 1);
  ips.record("@a:x", "D1", "127.0.0.1", "ua", 5);
  ips.record("@a:x", "D2", "10.0.0.1", "other", 3);
  auto rows = ips.connections("@a:x");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].last_seen_ms, 5);
  EXPECT_TRUE(ips.connections("@b:x").empty());
  for (int i = 0; i < 300; ++i) ips.record("@a:x", "D3", "ip" + std::to_string(i), "ua", 10 + i);
  EXPECT_EQ(ips.connections("@a:x").size(), service::ClientIps::kMaxPerUser);
}

TEST(UiaSessions, RemembersParamsAndResult) {
  service::UiaSessions s;
  auto id = s.create("", "POST /register", 0);
  s.set_params(id, boost::json::object{{"username", "bob"}});
  s.set_result(id, "@bob:x");
  auto got = s.get(id, 10);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->params.at("username").as_string(), "bob");
  EXPECT_EQ(got->result, "@bob:x");
}

TEST(PercentEncode, KeepsUnreservedOnly) {
  EXPECT_EQ(core::percent_encode("https://client?p=http%3A%2F%2Fserver"),
            "https%3A%2F%2Fclient%3Fp%3Dhttp%253A%252F%252Fserver");
  EXPECT_EQ(core::percent_encode("a-Z_0.~ "), "a-Z_0.~%20");
}

TEST(SsoService, MapsUserNamesToLocalpartsAsSynapse) {
  using service::SsoService;
  EXPECT_EQ(SsoService::map_username_to_localpart("cas_user!"), "cas_user=21");
  EXPECT_EQ(SsoService::map_username_to_localpart("Cas User"), "cas=20user");
  EXPECT_EQ(SsoService::map_username_to_localpart("_x"), "=5fx");
  EXPECT_EQ(SsoService::map_username_to_localpart("a=b"), "a=3db");
  EXPECT_EQ(SsoService::map_username_to_localpart("\xc3\xa9"), "=c3=a9");
}
