#include "room/room_version.hpp"

#include <array>

namespace trestle::room {
namespace {

// Flags per content/rooms/v*.md: knock arrived in v7, restricted joins in v8, knock_restricted
// and integer-only power levels in v10, the revised redaction/create rules in v11.
// A function-local static so that other translation units' static initialisers may use it.
const std::array<RoomVersion, 11>& all_room_versions() {
  static const std::array<RoomVersion, 11> versions = {{
    // id    knock  restricted  knock_restricted  int_power_levels  v11_rules
    {"1", false, false, false, false, false},
    {"2", false, false, false, false, false},
    {"3", false, false, false, false, false},
    {"4", false, false, false, false, false},
    {"5", false, false, false, false, false},
    {"6", false, false, false, false, false},
    {"7", true, false, false, false, false},
    {"8", true, true, false, false, false},
    {"9", true, true, false, false, false},
    {"10", true, true, true, true, false},
    {"11", true, true, true, true, true},
  }};
  return versions;
}

}  // namespace

const RoomVersion* find_room_version(std::string_view id) {
  for (const auto& version : all_room_versions())
    if (version.id == id) return &version;
  return nullptr;
}

const RoomVersion& default_room_version() { return *find_room_version("10"); }

std::vector<std::string> supported_room_versions() {
  std::vector<std::string> ids;
  ids.reserve(all_room_versions().size());
  for (const auto& version : all_room_versions()) ids.push_back(version.id);
  return ids;
}

}  // namespace trestle::room
