#include "storage/event_time_store.hpp"

namespace trestle::storage::events {

std::vector<TimedEvent> events_by_time(Connection& c, const std::string& room_id, int64_t upto, bool forwards,
                                       int64_t after_ts, int64_t after_stream, int64_t limit) {
  auto st = c.prepare(forwards ? "SELECT event_id, origin_server_ts, stream_ordering FROM events "
                                 "WHERE room_id = ? AND (origin_server_ts, stream_ordering) > (?, ?) "
                                 "AND stream_ordering <= ? ORDER BY origin_server_ts, stream_ordering LIMIT ?"
                               : "SELECT event_id, origin_server_ts, stream_ordering FROM events "
                                 "WHERE room_id = ? AND (origin_server_ts, stream_ordering) < (?, ?) "
                                 "AND stream_ordering <= ? ORDER BY origin_server_ts DESC, stream_ordering DESC LIMIT ?");
  st.bind(room_id, after_ts, after_stream, upto, limit);
  std::vector<TimedEvent> out;
  while (st.step()) out.push_back({st.text(0), st.int64(1), st.int64(2)});
  return out;
}

}  // namespace trestle::storage::events
