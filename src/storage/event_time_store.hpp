#pragma once
// Events of a room by origin_server_ts (the events_room_ts index), for /timestamp_to_event.
#include "storage/database.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace trestle::storage::events {

struct TimedEvent {
  std::string event_id;
  int64_t origin_server_ts = 0;
  int64_t stream_ordering = 0;
};

// Events of `room_id` with stream_ordering <= upto, ordered by (origin_server_ts, stream_ordering)
// strictly after the position (after_ts, after_stream) when `forwards`, else strictly before it
// and newest first. At most `limit`.
std::vector<TimedEvent> events_by_time(Connection& c, const std::string& room_id, int64_t upto, bool forwards,
                                       int64_t after_ts, int64_t after_stream, int64_t limit);

}  // namespace trestle::storage::events
