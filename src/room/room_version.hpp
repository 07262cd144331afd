#pragma once
// The room versions Trestle creates and understands. Each flag names one rule that differs
// between versions, so the auth rules and redaction code read as the spec reads.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace trestle::room {

struct RoomVersion {
  std::string id;
  bool knock_allowed;               // v7+: join_rule "knock", membership "knock"
  bool restricted_join_allowed;     // v8+: join_rule "restricted" (v10+: "knock_restricted")
  bool knock_restricted_allowed;    // v10+
  bool integer_power_levels_only;   // v10+: power level values must be integers, not strings
  bool v11_redaction_and_create;    // v11: redaction keeps more, m.room.create has no "creator",
                                    //      redacts is a content key of m.room.redaction
};

// Returns nullopt for an unknown or unsupported version.
const RoomVersion* find_room_version(std::string_view id);
const RoomVersion& default_room_version();  // "10"
std::vector<std::string> supported_room_versions();

}  // namespace trestle::room
