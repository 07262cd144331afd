#pragma once
// Matrix identifiers per the spec appendices ("Identifier Grammar"): server names, user IDs,
// room IDs, room aliases, event IDs. Parsing is strict for what we create and tolerant where the
// spec asks (historical user IDs may contain any code point except ':' and NUL, or be empty).
#include <optional>
#include <string>
#include <string_view>

namespace trestle::core {

bool is_valid_server_name(std::string_view s);  // host[:port], host = IPv4 | [IPv6] | DNS name

struct UserId {
  std::string localpart;
  std::string server_name;
  std::string str() const { return "@" + localpart + ":" + server_name; }
};
// Accepts historical localparts (spec "Historical User IDs": any valid UTF-8 except ':' and NUL,
// including the empty string); total length <= 255 bytes.
std::optional<UserId> parse_user_id(std::string_view s);
// The strict grammar for new users: [a-z0-9._=/+-]+ (non-empty).
bool is_valid_new_localpart(std::string_view localpart);

struct RoomAlias {
  std::string localpart;
  std::string server_name;
  std::string str() const { return "#" + localpart + ":" + server_name; }
};
std::optional<RoomAlias> parse_room_alias(std::string_view s);  // length <= 255

// Room IDs of rooms before v12: '!' opaque ':' server_name. Returns false for anything else.
bool is_valid_room_id_with_domain(std::string_view s);
// Room IDs of any room version (spec 1.16): the form above, or the domain-less form of v12 rooms
// ('!' followed by the create event's ID without its '$').
bool is_valid_room_id(std::string_view s);
// Event IDs: '$' followed by at least one character (room v4+ uses unpadded url-safe base64).
bool is_valid_event_id(std::string_view s);

}  // namespace trestle::core
