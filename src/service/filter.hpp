#pragma once
// Event filters (spec: client-server-api "Filtering"): which events a /sync or /messages shows.
#include "storage/event_store.hpp"

#include <boost/json/object.hpp>
#include <optional>
#include <string>

namespace trestle::service {

// Validates a filter definition's shape: 400 M_BAD_JSON / M_INVALID_PARAM on wrong types.
void validate_filter(const boost::json::object& filter);

// A RoomEventFilter / EventFilter: types, not_types (with '*' wildcards), senders, not_senders,
// rooms, not_rooms, contains_url.
bool event_matches(const boost::json::object& filter, const std::string& type, const std::string& sender,
                   const std::string& room_id, const boost::json::object& content);
bool event_matches(const boost::json::object& filter, const storage::events::StoredEvent& e);

// filter.limit if present and not negative (0: no events), else `fallback`.
int64_t filter_limit(const boost::json::object& filter, int64_t fallback);
bool filter_flag(const boost::json::object& filter, const char* key);
// The sub-object at `path` (e.g. {"room","timeline"}) or an empty object.
boost::json::object sub_filter(const boost::json::object& filter, std::initializer_list<const char*> path);
// Whether `room_id` passes the room filter's rooms / not_rooms.
bool room_allowed(const boost::json::object& room_filter, const std::string& room_id);

}  // namespace trestle::service
