// Appservice registration files are read exactly as other homeservers read them.
#include "service/appservice/registration.hpp"

#include <gtest/gtest.h>

using trestle::service::AppServiceRegistry;
using trestle::service::parse_registration;

namespace {

const char* kIrc = R"(
id: "IRC Bridge"
url: "http://127.0.0.1:1234"
as_token: "30c05ae90a248a4188e620216fa72e349803310ec83e2a77b34fe90be6081f46"
hs_token: "312df522183efd404ec1cd22d2ffa4bbc76a8c1ccf541dd692eef281356bb74e"
sender_localpart: "_irc_bot"
namespaces:
  users:
    - exclusive: true
      regex: "@_irc_bridge_.*"
  aliases:
    - exclusive: false
      regex: "#_irc_bridge_.*"
  rooms: []
)";

TEST(AppServiceRegistration, ParsesTheSpecExample) {
  auto as = parse_registration(kIrc, "irc.yaml", "example.org");
  EXPECT_EQ(as.id, "IRC Bridge");
  EXPECT_EQ(*as.url, "http://127.0.0.1:1234");
  EXPECT_EQ(as.sender, "@_irc_bot:example.org");
  EXPECT_TRUE(as.is_interested_in_user("@_irc_bridge_alice:example.org"));
  EXPECT_TRUE(as.owns_user_exclusively("@_irc_bridge_alice:example.org"));
  EXPECT_TRUE(as.is_interested_in_user("@_irc_bot:example.org"));
  EXPECT_FALSE(as.is_interested_in_user("@alice:example.org"));
  EXPECT_TRUE(as.is_interested_in_alias("#_irc_bridge_chan:example.org"));
  EXPECT_FALSE(as.owns_alias_exclusively("#_irc_bridge_chan:example.org"));
  EXPECT_FALSE(as.receive_ephemeral);
}

TEST(AppServiceRegistration, RegexMatchesTheWholeId) {
  auto as = parse_registration(kIrc, "irc.yaml", "example.org");
  // A prefix match inside a longer ID must not count.
  EXPECT_FALSE(as.is_interested_in_user("@x_@_irc_bridge_a:example.org"));
}

TEST(AppServiceRegistration, StableAndUnstableEphemeralFlagsTogetherAreFine) {
  std::string yaml = std::string(kIrc) + "receive_ephemeral: true\nde.sorunome.msc2409.push_ephemeral: true\n"
                                         "org.matrix.msc3202: true\nio.element.msc4190: true\n";
  auto as = parse_registration(yaml, "irc.yaml", "example.org");
  EXPECT_TRUE(as.receive_ephemeral);
  EXPECT_TRUE(as.msc3202);
  EXPECT_TRUE(as.msc4190);
}

TEST(AppServiceRegistration, NullUrlMeansNoPushes) {
  std::string yaml = kIrc;
  yaml.replace(yaml.find("url: \"http://127.0.0.1:1234\""), 28, "url: null");
  auto as = parse_registration(yaml, "irc.yaml", "example.org");
  EXPECT_FALSE(as.url.has_value());
}

TEST(AppServiceRegistration, HttpsUrlAccepted) {
  std::string yaml = kIrc;
  yaml.replace(yaml.find("url: \"http://127.0.0.1:1234\""), 28, "url: \"https://bridge.example/as\"");
  auto as = parse_registration(yaml, "irc.yaml", "example.org");
  EXPECT_EQ(as.url.value_or(""), "https://bridge.example/as");
}

TEST(AppServiceRegistration, BadFieldsNameFileAndField) {
  auto expect_error = [](const std::string& yaml, const std::string& field) {
    try {
      parse_registration(yaml, "bad.yaml", "example.org");
      FAIL() << "accepted: " << yaml;
    } catch (const std::runtime_error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("bad.yaml"), std::string::npos) << msg;
      EXPECT_NE(msg.find(field), std::string::npos) << msg;
    }
  };
  expect_error("id: x\nurl: null\nhs_token: h\nsender_localpart: b\n", "as_token");
  expect_error("id: x\nurl: null\nas_token: a\nhs_token: h\nsender_localpart: 'Bad Name'\n", "sender_localpart");
  expect_error("id: x\nurl: null\nas_token: a\nhs_token: h\nsender_localpart: b\nnamespaces:\n  users:\n"
               "    - exclusive: true\n      regex: '(unclosed'\n",
               "namespaces.users[0].regex");
  expect_error("id: x\nurl: ftp://x\nas_token: a\nhs_token: h\nsender_localpart: b\n", "url");
  expect_error("[not, a, mapping]", "mapping");
}

TEST(AppServiceRegistry, IdAndTokenMustBeUnique) {
  AppServiceRegistry reg;
  reg.add(parse_registration(kIrc, "a.yaml", "example.org"));
  std::string same_token = kIrc;
  same_token.replace(same_token.find("IRC Bridge"), 10, "Other");
  EXPECT_THROW(reg.add(parse_registration(same_token, "b.yaml", "example.org")), std::runtime_error);
  EXPECT_THROW(reg.add(parse_registration(kIrc, "c.yaml", "example.org")), std::runtime_error);
}

TEST(AppServiceRegistry, FindsByTokenAndExclusiveOwner) {
  AppServiceRegistry reg;
  reg.add(parse_registration(kIrc, "a.yaml", "example.org"));
  EXPECT_NE(reg.by_token("30c05ae90a248a4188e620216fa72e349803310ec83e2a77b34fe90be6081f46"), nullptr);
  EXPECT_EQ(reg.by_token("30c05ae90a248a4188e620216fa72e349803310ec83e2a77b34fe90be6081f4"), nullptr);
  EXPECT_NE(reg.exclusive_owner_of_user("@_irc_bridge_bob:example.org"), nullptr);
  EXPECT_EQ(reg.exclusive_owner_of_alias("#_irc_bridge_chan:example.org"), nullptr);  // non-exclusive
}

}  // namespace
