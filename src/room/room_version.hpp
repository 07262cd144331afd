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
  // v12 (MSC4289, MSC4291).
  bool privileged_creators;                 // creators (create sender + additional_creators)
                                            // have infinite power and are never in `users`
  bool room_id_is_create_event_id;  // room ID = create event ID with '!'; the create
                                            // event has no room_id and is never an auth event
};

// Returns nullopt for an unknown or unsupported version.
const RoomVersion* find_room_version(std::string_view id);
// The version new rooms get: "11" unless set_default_room_version chose another (config
// `default_room_version`). Set once at start-up, before the server serves.
const RoomVersion& default_room_version();
// Returns false (and changes nothing) for an unknown version.
bool set_default_room_version(std::string_view id);
std::vector<std::string> supported_room_versions();

}  // namespace trestle::room
