#include "room/room_version.hpp"

#include <array>

namespace trestle::room {
namespace {

// Flags per content/rooms/v*.md: knock arrived in v7, restricted joins in v8, knock_restricted
// and integer-only power levels in v10, the revised redaction/create rules in v11, privileged
// creators and room IDs that are the create event's ID in v12 (which keeps v11's other rules).
// A function-local static so that other translation units' static initialisers may use it.
const std::array<RoomVersion, 12>& all_room_versions() {
  static const std::array<RoomVersion, 12> versions = {{
    // id    knock  restricted  knock_restricted  int_power_levels  v11_rules  creators  hashed_room_id
    {"1", false, false, false, false, false, false, false},
    {"2", false, false, false, false, false, false, false},
    {"3", false, false, false, false, false, false, false},
    {"4", false, false, false, false, false, false, false},
    {"5", false, false, false, false, false, false, false},
    {"6", false, false, false, false, false, false, false},
    {"7", true, false, false, false, false, false, false},
    {"8", true, true, false, false, false, false, false},
    {"9", true, true, false, false, false, false, false},
    {"10", true, true, true, true, false, false, false},
    {"11", true, true, true, true, true, false, false},
    {"12", true, true, true, true, true, true, true},
  }};
  return versions;
}

}  // namespace

const RoomVersion* find_room_version(std::string_view id) {
  for (const auto& version : all_room_versions())
    if (version.id == id) return &version;
  return nullptr;
}

namespace {
// The spec (v1.16) names v12 the default; clients lag (Debian's nheko reads no v11 space), so the
// default stays 10 as in Synapse until the config's default_room_version says otherwise.
const RoomVersion* configured_default = nullptr;
}  // namespace

const RoomVersion& default_room_version() {
  return configured_default ? *configured_default : *find_room_version("10");
}

bool set_default_room_version(std::string_view id) {
  const RoomVersion* version = find_room_version(id);
  if (!version) return false;
  configured_default = version;
  return true;
}

std::vector<std::string> supported_room_versions() {
  std::vector<std::string> ids;
  ids.reserve(all_room_versions().size());
  for (const auto& version : all_room_versions()) ids.push_back(version.id);
  return ids;
}

}  // namespace trestle::room
