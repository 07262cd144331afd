// Token-lifetime and login-token settings (Synapse's keys and duration format), and single-use
// UIA sessions (POST /login/get_token re-prompts for every token).
#include "config/config.hpp"
#include "service/uia_sessions.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

using namespace trestle;

namespace {
config::Config parse(const std::string& extra) {
  std::vector<std::string> warnings;
  std::string yaml =
      "server_name: example.org\n"
      "database:\n  name: sqlite3\n  args:\n    database: /tmp/x.db\n" +
      extra;
  auto c = config::parse_config(yaml, "/tmp", warnings);
  for (const auto& w : warnings) ADD_FAILURE() << w;
  return c;
}
}  // namespace

TEST(TokenConfig, DefaultsAreSynapses) {
  auto c = parse("");
  EXPECT_EQ(c.refreshable_access_token_lifetime_ms, 5 * 60 * 1000);
  EXPECT_FALSE(c.refresh_token_lifetime_ms);
  EXPECT_FALSE(c.nonrefreshable_access_token_lifetime_ms);
  EXPECT_FALSE(c.session_lifetime_ms);
  EXPECT_FALSE(c.login_via_existing_session.enabled);
  EXPECT_TRUE(c.login_via_existing_session.require_ui_auth);
  EXPECT_EQ(c.login_via_existing_session.token_timeout_ms, 5 * 60 * 1000);
}

TEST(TokenConfig, DurationsWithUnits) {
  auto c = parse(
      "refreshable_access_token_lifetime: 90s\n"
      "refresh_token_lifetime: 30d\n"
      "nonrefreshable_access_token_lifetime: 2h\n"
      "session_lifetime: 1y\n"
      "login_via_existing_session:\n  enabled: true\n  require_ui_auth: false\n  token_timeout: 1500ms\n");
  EXPECT_EQ(c.refreshable_access_token_lifetime_ms, 90'000);
  EXPECT_EQ(c.refresh_token_lifetime_ms, 30LL * 86'400'000);
  EXPECT_EQ(c.nonrefreshable_access_token_lifetime_ms, 2 * 3'600'000);
  EXPECT_EQ(c.session_lifetime_ms, 365LL * 86'400'000);
  EXPECT_TRUE(c.login_via_existing_session.enabled);
  EXPECT_FALSE(c.login_via_existing_session.require_ui_auth);
  EXPECT_EQ(c.login_via_existing_session.token_timeout_ms, 1500);
}

TEST(TokenConfig, NullTurnsRefreshTokensOff) {
  auto c = parse("refreshable_access_token_lifetime: null\n");
  EXPECT_FALSE(c.refreshable_access_token_lifetime_ms);
}

TEST(TokenConfig, BadValuesAreRefused) {
  EXPECT_THROW(parse("refresh_token_lifetime: soon\n"), std::runtime_error);
  EXPECT_THROW(parse("session_lifetime: -5m\n"), std::runtime_error);
  EXPECT_THROW(parse("login_via_existing_session: yes\n"), std::runtime_error);
  EXPECT_THROW(parse("login_via_existing_session:\n  enabled: maybe\n"), std::runtime_error);
}

TEST(UiaSessionsRemove, ARemovedSessionIsUnknown) {
  service::UiaSessions s;
  auto id = s.create("@a:example.org", "POST /login/get_token", 1000);
  ASSERT_TRUE(s.get(id, 1000));
  s.remove(id);
  EXPECT_FALSE(s.get(id, 1000));
  s.remove(id);  // twice is harmless
  EXPECT_EQ(s.size(), 0u);
}
