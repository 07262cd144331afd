#include "storage/report_store.hpp"

#include <limits>
#include <stdexcept>

namespace trestle::storage::reports {

namespace {

// Runs an INSERT ... RETURNING id and returns the new row's id.
template <typename... Args>
int64_t insert_returning_id(Connection& c, const std::string& sql, const Args&... args) {
  auto st = c.prepare(sql + " RETURNING id");
  st.bind(args...);
  if (!st.step()) throw std::runtime_error("INSERT returned no id");
  return st.int64(0);
}

int64_t upper(int64_t before_id) { return before_id > 0 ? before_id : std::numeric_limits<int64_t>::max(); }

}  // namespace

int64_t add_event_report(Connection& c, const EventReport& r) {
  return insert_returning_id(c,
                             "INSERT INTO event_reports (received_ts, room_id, event_id, user_id, reason, content) "
                             "VALUES (?, ?, ?, ?, ?, ?)",
                             r.received_ts, r.room_id, r.event_id, r.user_id, r.reason, r.content_json);
}

int64_t add_room_report(Connection& c, const RoomReport& r) {
  return insert_returning_id(c, "INSERT INTO room_reports (received_ts, room_id, user_id, reason) VALUES (?, ?, ?, ?)",
                             r.received_ts, r.room_id, r.user_id, r.reason);
}

int64_t add_user_report(Connection& c, const UserReport& r) {
  return insert_returning_id(c,
                             "INSERT INTO user_reports (received_ts, target_user_id, user_id, reason) VALUES (?, ?, ?, ?)",
                             r.received_ts, r.target_user_id, r.user_id, r.reason);
}

std::vector<EventReport> event_reports(Connection& c, int64_t before_id, int64_t limit) {
  auto st = c.prepare("SELECT id, received_ts, room_id, event_id, user_id, reason, content FROM event_reports "
                      "WHERE id < ? ORDER BY id DESC LIMIT ?");
  st.bind(upper(before_id), limit);
  std::vector<EventReport> out;
  while (st.step()) {
    out.push_back({st.int64(0), st.int64(1), st.text(2), st.text(3), st.text(4), st.opt_text(5), st.text(6)});
  }
  return out;
}

std::vector<RoomReport> room_reports(Connection& c, int64_t before_id, int64_t limit) {
  auto st = c.prepare("SELECT id, received_ts, room_id, user_id, reason FROM room_reports "
                      "WHERE id < ? ORDER BY id DESC LIMIT ?");
  st.bind(upper(before_id), limit);
  std::vector<RoomReport> out;
  while (st.step()) out.push_back({st.int64(0), st.int64(1), st.text(2), st.text(3), st.text(4)});
  return out;
}

std::vector<UserReport> user_reports(Connection& c, int64_t before_id, int64_t limit) {
  auto st = c.prepare("SELECT id, received_ts, target_user_id, user_id, reason FROM user_reports "
                      "WHERE id < ? ORDER BY id DESC LIMIT ?");
  st.bind(upper(before_id), limit);
  std::vector<UserReport> out;
  while (st.step()) out.push_back({st.int64(0), st.int64(1), st.text(2), st.text(3), st.text(4)});
  return out;
}

}  // namespace trestle::storage::reports
