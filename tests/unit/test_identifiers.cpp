#include "core/identifiers.hpp"

#include <gtest/gtest.h>

using namespace trestle::core;

TEST(Identifiers, ServerNameSpecExamples) {
  for (const char* name : {"matrix.org", "matrix.org:8888", "1.2.3.4", "1.2.3.4:1234", "[1234:5678::abcd]",
                           "[1234:5678::abcd]:5678"})
    EXPECT_TRUE(is_valid_server_name(name)) << name;
}

TEST(Identifiers, ServerNameValidEdgeCases) {
  for (const char* name : {"localhost", "LOCALHOST", "a", "my-host.example", "1.2.3", "[::1]", "[::1]:8448",
                           "[::ffff:1.2.3.4]", "[ABCD:ef01::1]", "example.org:1", "example.org:65535",
                           "0.0.0.0", "255.255.255.255:80"})
    EXPECT_TRUE(is_valid_server_name(name)) << name;
  EXPECT_TRUE(is_valid_server_name(std::string(255, 'a')));
  EXPECT_TRUE(is_valid_server_name(std::string(255, 'a') + ":8448"));
}

TEST(Identifiers, ServerNameInvalid) {
  for (const char* name : {"", ":80", "matrix.org:", "matrix.org:123456", "matrix.org:8a", "matrix.org:-1",
                           "matrix.org:80:80", "exa mple.org", "exa_mple.org", "ex@mple.org", "256.1.1.1",
                           "1.2.3.999:80", ".example.org", "example..org", "example.org.", "[1234:5678::abcd",
                           "1234:5678::abcd", "[]", "[:]", "[::1]x", "[::1]:", "[::1]:123456", "[zz::1]",
                           "[1:2:3:4:5:6:7:8:9]", "[::1%eth0]", "[1.2.3.4]", "日本.example"})
    EXPECT_FALSE(is_valid_server_name(name)) << name;
  EXPECT_FALSE(is_valid_server_name(std::string(256, 'a')));
}

TEST(Identifiers, ParseUserId) {
  auto user = parse_user_id("@alice:example.org");
  ASSERT_TRUE(user.has_value());
  EXPECT_EQ(user->localpart, "alice");
  EXPECT_EQ(user->server_name, "example.org");
  EXPECT_EQ(user->str(), "@alice:example.org");

  auto with_port = parse_user_id("@bob:[::1]:8448");
  ASSERT_TRUE(with_port.has_value());
  EXPECT_EQ(with_port->localpart, "bob");
  EXPECT_EQ(with_port->server_name, "[::1]:8448");
}

TEST(Identifiers, ParseUserIdHistoricalLocalparts) {
  // Spec "Historical User IDs": servers MUST accept any code point except ':' and NUL, even empty.
  for (const char* id : {"@Alice:example.org", "@a!#$%&*~:example.org", "@:example.org", "@日本:example.org",
                         "@a b:example.org"})
    EXPECT_TRUE(parse_user_id(id).has_value()) << id;
}

TEST(Identifiers, ParseUserIdInvalid) {
  for (const char* id : {"", "@", "alice:example.org", "#alice:example.org", "@alice", "@alice:", "@alice:bad_host",
                         "@alice:example.org:port", "@\xff:example.org"})
    EXPECT_FALSE(parse_user_id(id).has_value()) << id;
  EXPECT_FALSE(parse_user_id(std::string_view("@a\0b:example.org", 17)).has_value());
}

TEST(Identifiers, UserIdLengthLimit) {
  const std::string server = ":example.org";
  const std::string at_limit = "@" + std::string(255 - 1 - server.size(), 'a') + server;
  ASSERT_EQ(at_limit.size(), 255u);
  EXPECT_TRUE(parse_user_id(at_limit).has_value());
  EXPECT_FALSE(parse_user_id("@" + std::string(255 - server.size(), 'a') + server).has_value());
}

TEST(Identifiers, NewLocalpartGrammar) {
  EXPECT_TRUE(is_valid_new_localpart("alice"));
  EXPECT_TRUE(is_valid_new_localpart("a.b_c=d-e/f+g0123456789"));
  for (const char* localpart : {"", "Alice", "al ice", "al:ice", "al@ice", "al*ice", "al#ice", "日本", "a\tb"})
    EXPECT_FALSE(is_valid_new_localpart(localpart)) << localpart;
}

TEST(Identifiers, ParseRoomAlias) {
  auto alias = parse_room_alias("#room:example.org");
  ASSERT_TRUE(alias.has_value());
  EXPECT_EQ(alias->localpart, "room");
  EXPECT_EQ(alias->server_name, "example.org");
  EXPECT_EQ(alias->str(), "#room:example.org");
  EXPECT_TRUE(parse_room_alias("#Ünïcödé room!:1.2.3.4:80").has_value());
  for (const char* s : {"", "#", "#:example.org", "room:example.org", "!room:example.org", "#room", "#room:",
                        "#room:bad host"})
    EXPECT_FALSE(parse_room_alias(s).has_value()) << s;
  const std::string server = ":example.org";
  EXPECT_TRUE(parse_room_alias("#" + std::string(254 - server.size(), 'r') + server).has_value());
  EXPECT_FALSE(parse_room_alias("#" + std::string(255 - server.size(), 'r') + server).has_value());
}

TEST(Identifiers, RoomIds) {
  EXPECT_TRUE(is_valid_room_id_with_domain("!abcDEF123:example.org"));
  EXPECT_TRUE(is_valid_room_id_with_domain("!x:domain"));
  EXPECT_TRUE(is_valid_room_id_with_domain("!x:[::1]:8448"));
  for (const char* s : {"", "!", "!abc", "!:example.org", "abc:example.org", "$abc:example.org", "!abc:",
                        "!abc:bad_host"})
    EXPECT_FALSE(is_valid_room_id_with_domain(s)) << s;
  EXPECT_FALSE(is_valid_room_id_with_domain("!" + std::string(250, 'a') + ":example.org"));
}

// Requests may name v12 rooms, whose IDs have no domain (spec 1.16, appendices "Room IDs").
TEST(Identifiers, RoomIdsAcceptTheDomainlessForm) {
  EXPECT_TRUE(is_valid_room_id("!abcDEF123:example.org"));
  EXPECT_TRUE(is_valid_room_id("!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ"));
  for (const char* s : {"", "!", "!:example.org", "abc:example.org", "$abc", "!abc:", "!abc:bad_host"})
    EXPECT_FALSE(is_valid_room_id(s)) << s;
}

TEST(Identifiers, RoomIdsOfAnyVersion) {
  EXPECT_TRUE(is_valid_room_id("!abcDEF123:example.org"));
  EXPECT_TRUE(is_valid_room_id("!Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"));
  EXPECT_TRUE(is_valid_room_id("!abcd"));
  for (const char* s : {"", "!", "abc", "$abc", "#abc:example.org", "!abc:", "!abc:bad_host", "!:example.org"})
    EXPECT_FALSE(is_valid_room_id(s)) << s;
  EXPECT_FALSE(is_valid_room_id("!" + std::string(300, 'a')));
}

TEST(Identifiers, EventIds) {
  EXPECT_TRUE(is_valid_event_id("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"));
  EXPECT_TRUE(is_valid_event_id("$0:domain"));
  EXPECT_TRUE(is_valid_event_id("$a"));
  EXPECT_TRUE(is_valid_event_id("$" + std::string(254, 'a')));
  for (const char* s : {"", "$", "abc", "!abc:domain"}) EXPECT_FALSE(is_valid_event_id(s)) << s;
  EXPECT_FALSE(is_valid_event_id("$" + std::string(255, 'a')));
}
