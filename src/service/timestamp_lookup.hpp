#pragma once
// GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event (spec: room_event_by_timestamp.yaml):
// the event of a room closest to a time, in one direction, among those the user may see.
#include "service/requester.hpp"
#include "storage/database.hpp"

#include <cstdint>
#include <string>

namespace trestle::service {

struct TimestampMatch {
  std::string event_id;
  int64_t origin_server_ts = 0;
};

class TimestampLookup {
public:
  explicit TimestampLookup(storage::Database& db) : db_(db) {}
  // The first event at or after `ts` (forwards) or at or before it (backwards), by the events'
  // origin_server_ts as stored (an appservice's massaged `ts` counts). 403 M_FORBIDDEN when the
  // user may not read the room (not a member, and not world_readable); 404 M_NOT_FOUND when no
  // visible event lies in that direction (history-hidden events are skipped, at most
  // kMaxCandidates of them).
  TimestampMatch closest(const Requester& r, const std::string& room_id, int64_t ts, bool forwards);

  static constexpr int64_t kMaxCandidates = 1000;

private:
  storage::Database& db_;
};

}  // namespace trestle::service
