#pragma once
// History visibility (spec: client-server-api modules/history_visibility): whether a member may
// see an event, from the room's m.room.history_visibility and the member's membership in force
// when the event was sent; and who may read a room at all (members, and anyone while the room is
// world_readable).
#include "storage/event_store.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace trestle::service {

// What a user may read of a room.
struct RoomReadAccess {
  int64_t upto = 0;     // the highest stream position readable: now, or a former member's leave
  bool peeking = false;  // not a member (a world_readable room): only world_readable history shows
};

// "May this user read this room?" for /messages, /state, /members, /event, /context and the legacy
// /events and /initialSync. Joined: everything up to `now`. Left or banned: up to that membership
// event. Anyone else (never joined, invited, knocking; guests too) only while the room's current
// history_visibility is world_readable, as a peek; otherwise nullopt.
std::optional<RoomReadAccess> room_read_access(storage::Connection& c, const std::string& user_id,
                                               const std::string& room_id, int64_t now);

// `user_id` is (or was) a member of the event's room, or peeks into a world_readable room
// (`peeking`); callers have already capped what a former member sees at their leave.
// world_readable history is visible to all; shared history to members; invited history from the
// user's invite on; joined history only while joined.
bool event_visible_to(storage::Connection& c, const std::string& user_id, const storage::events::StoredEvent& e,
                      bool peeking = false);

}  // namespace trestle::service
