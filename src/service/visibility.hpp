#pragma once
// History visibility (spec: client-server-api modules/history_visibility): whether a member may
// see an event, from the room's m.room.history_visibility and the member's membership in force
// when the event was sent.
#include "storage/event_store.hpp"

#include <string>

namespace trestle::service {

// `user_id` is (or was) a member of the event's room; callers have already capped what a former
// member sees at their leave. world_readable and shared history is visible; invited history only
// from the user's invite on; joined history only while joined.
bool event_visible_to(storage::Connection& c, const std::string& user_id, const storage::events::StoredEvent& e);

}  // namespace trestle::service
