// Fuzz target: identifier parsing (src/core/identifiers.*). The input is tried as it is and behind
// each sigil. Properties: a parsed user ID / room alias prints back to exactly the input and parses
// again to the same parts; every accepted identifier's server part is a valid server name; a valid
// server name or new-user localpart makes valid identifiers when put in one.
#include "core/identifiers.hpp"
#include "fuzz_check.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

using namespace trestle;

constexpr size_t kMaxId = 255;

void check_one(const std::string& s) {
  if (auto u = core::parse_user_id(s)) {
    FUZZ_CHECK(u->str() == s, "user ID does not print back: " + s);
    FUZZ_CHECK(u->localpart.find(':') == std::string::npos, "user localpart holds ':': " + s);
    FUZZ_CHECK(core::is_valid_server_name(u->server_name), "user ID with an invalid server name: " + s);
    auto again = core::parse_user_id(u->str());
    FUZZ_CHECK(again && again->localpart == u->localpart && again->server_name == u->server_name,
               "user ID does not parse back: " + s);
  }
  if (auto a = core::parse_room_alias(s)) {
    FUZZ_CHECK(a->str() == s, "alias does not print back: " + s);
    FUZZ_CHECK(!a->localpart.empty() && a->localpart.find(':') == std::string::npos, "bad alias localpart: " + s);
    FUZZ_CHECK(core::is_valid_server_name(a->server_name), "alias with an invalid server name: " + s);
    auto again = core::parse_room_alias(a->str());
    FUZZ_CHECK(again && again->localpart == a->localpart && again->server_name == a->server_name,
               "alias does not parse back: " + s);
  }
  if (core::is_valid_room_id(s)) {
    FUZZ_CHECK(s.size() <= kMaxId && s[0] == '!', "room ID accepted: " + s);
    // The domain-less form (room v12) is the create event's ID with '!'.
    FUZZ_CHECK(core::is_valid_room_id_with_domain(s) || core::is_valid_event_id("$" + s.substr(1)),
               "room ID that is neither form: " + s);
  }
  if (core::is_valid_room_id_with_domain(s)) {
    size_t colon = s.find(':');
    FUZZ_CHECK(colon != std::string::npos && colon > 1, "room ID without localpart or server: " + s);
    FUZZ_CHECK(core::is_valid_server_name(s.substr(colon + 1)), "room ID with an invalid server name: " + s);
  }
  if (core::is_valid_event_id(s)) {
    FUZZ_CHECK(s.size() >= 2 && s.size() <= kMaxId && s[0] == '$', "event ID accepted: " + s);
    FUZZ_CHECK(s.find('\0') == std::string::npos, "event ID with NUL: " + s);
  }
  if (core::is_valid_server_name(s)) {
    FUZZ_CHECK(!s.empty(), "empty server name accepted");
    FUZZ_CHECK(s.find_first_of(" /@#!$\0", 0, 7) == std::string::npos, "server name with a stray character: " + s);
    if (s.size() + 3 <= kMaxId) {
      auto u = core::parse_user_id("@a:" + s);
      FUZZ_CHECK(u && u->server_name == s, "valid server name, invalid user ID: " + s);
      FUZZ_CHECK(core::parse_room_alias("#a:" + s).has_value(), "valid server name, invalid alias: " + s);
      FUZZ_CHECK(core::is_valid_room_id("!a:" + s), "valid server name, invalid room ID: " + s);
    }
  }
  if (core::is_valid_new_localpart(s) && s.size() + 11 <= kMaxId) {
    auto u = core::parse_user_id("@" + s + ":localhost");
    FUZZ_CHECK(u && u->localpart == s, "valid new localpart, invalid user ID: " + s);
  }
}

}  // namespace

int trestle_fuzz_identifiers(const uint8_t* data, size_t size) {
  std::string s(reinterpret_cast<const char*>(data), size);
  check_one(s);
  for (const char* sigil : {"@", "#", "!", "$"}) check_one(sigil + s);
  return 0;
}
