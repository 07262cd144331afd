#include "storage/thread_store.hpp"

namespace trestle::storage::threads {

std::vector<ReadPosition> read_positions(Connection& c, const std::string& room_id, const std::string& user_id) {
  auto st = c.prepare(
      "SELECT r.thread_id, MAX(e.stream_ordering) FROM receipts r JOIN events e ON e.event_id = r.event_id "
      "WHERE r.room_id = ? AND r.user_id = ? AND r.receipt_type IN ('m.read', 'm.read.private') "
      "GROUP BY r.thread_id ORDER BY r.thread_id");
  st.bind(room_id, user_id);
  std::vector<ReadPosition> out;
  while (st.step()) out.push_back(ReadPosition{st.text(0), st.int64(1)});
  return out;
}

std::optional<std::string> receipt_event(Connection& c, const std::string& room_id, const std::string& receipt_type,
                                         const std::string& user_id, const std::string& thread_id) {
  auto st = c.prepare("SELECT event_id FROM receipts WHERE room_id = ? AND receipt_type = ? AND user_id = ? AND "
                      "thread_id = ?");
  st.bind(room_id, receipt_type, user_id, thread_id);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

}  // namespace trestle::storage::threads
