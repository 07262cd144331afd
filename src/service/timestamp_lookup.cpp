#include "service/timestamp_lookup.hpp"

#include "core/error.hpp"
#include "service/visibility.hpp"
#include "storage/event_store.hpp"
#include "storage/event_time_store.hpp"

#include <limits>

namespace trestle::service {

namespace ev = storage::events;

TimestampMatch TimestampLookup::closest(const Requester& r, const std::string& room_id, int64_t ts, bool forwards) {
  return db_.read([&](storage::Connection& c) -> TimestampMatch {
    auto access = room_read_access(c, r.user_id, room_id, db_.committed_position());
    if (!access) throw MatrixError::forbidden("You are not allowed to view room " + room_id);
    // Start just before (forwards) or just after (backwards) every event stamped `ts`.
    int64_t cursor_ts = ts;
    int64_t cursor_stream = forwards ? std::numeric_limits<int64_t>::min() : std::numeric_limits<int64_t>::max();
    constexpr int64_t kBatch = 50;
    int64_t examined = 0;
    while (examined < kMaxCandidates) {
      auto batch = ev::events_by_time(c, room_id, access->upto, forwards, cursor_ts, cursor_stream, kBatch);
      for (const auto& t : batch) {
        ++examined;
        auto e = ev::get_event(c, t.event_id);
        if (e && event_visible_to(c, r.user_id, *e, access->peeking)) return {t.event_id, t.origin_server_ts};
        cursor_ts = t.origin_server_ts;
        cursor_stream = t.stream_ordering;
      }
      if (static_cast<int64_t>(batch.size()) < kBatch) break;
    }
    throw MatrixError::not_found("Unable to find event from " + std::to_string(ts) + " in direction " +
                                 (forwards ? "f" : "b"));
  });
}

}  // namespace trestle::service
