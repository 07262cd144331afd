#include "storage/push_store.hpp"

namespace trestle::storage::push {

std::vector<Pusher> pushers_of_user(Connection& c, const std::string& user_id) {
  auto st = c.prepare("SELECT user_id, app_id, pushkey, data, device_id, created_ts FROM pushers WHERE user_id = ? "
                      "ORDER BY app_id, pushkey");
  st.bind(user_id);
  std::vector<Pusher> out;
  while (st.step()) out.push_back({st.text(0), st.text(1), st.text(2), st.text(3), st.opt_text(4), st.int64(5)});
  return out;
}

std::set<std::string> users_with_pushers(Connection& c) {
  auto st = c.prepare("SELECT DISTINCT user_id FROM pushers");
  std::set<std::string> out;
  while (st.step()) out.insert(st.text(0));
  return out;
}

void set_pusher_origin(Connection& c, const std::string& user_id, const std::string& app_id, const std::string& pushkey,
                       const std::optional<std::string>& device_id, int64_t ts) {
  c.prepare("UPDATE pushers SET device_id = ?, created_ts = ? WHERE user_id = ? AND app_id = ? AND pushkey = ?")
      .bind(device_id, ts, user_id, app_id, pushkey)
      .run();
}

void delete_pushers_of_other_devices(Connection& c, const std::string& user_id, const std::string& keep_device) {
  c.prepare("DELETE FROM push_queue WHERE user_id = ? AND (app_id, pushkey) IN (SELECT app_id, pushkey FROM pushers "
            "WHERE user_id = ? AND device_id IS NOT NULL AND device_id != ?)")
      .bind(user_id, user_id, keep_device)
      .run();
  c.prepare("DELETE FROM pushers WHERE user_id = ? AND device_id IS NOT NULL AND device_id != ?")
      .bind(user_id, keep_device)
      .run();
}

bool pusher_exists(Connection& c, const std::string& user_id, const std::string& app_id, const std::string& pushkey) {
  auto st = c.prepare("SELECT 1 FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?");
  st.bind(user_id, app_id, pushkey);
  return st.step();
}

void delete_pusher(Connection& c, const std::string& user_id, const std::string& app_id, const std::string& pushkey) {
  c.prepare("DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?").bind(user_id, app_id, pushkey).run();
  c.prepare("DELETE FROM push_queue WHERE user_id = ? AND app_id = ? AND pushkey = ?")
      .bind(user_id, app_id, pushkey)
      .run();
}

std::optional<int64_t> cursor(Connection& c) {
  auto st = c.prepare("SELECT last_stream FROM push_state WHERE id = 1");
  if (!st.step()) return std::nullopt;
  return st.int64(0);
}

void set_cursor(Connection& c, int64_t position) {
  c.prepare("INSERT INTO push_state (id, last_stream) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET "
            "last_stream = excluded.last_stream")
      .bind(position)
      .run();
}

void add_notifications(Connection& c, const std::string& room_id, const std::string& event_id,
                       int64_t stream_ordering, int64_t ts, const std::string& thread_id,
                       const std::vector<UserNotification>& rows) {
  // One single-row statement per row: a multi-row INSERT would need a statement journal (it may
  // fail half-way), which costs more than the statements it saves.
  static const std::string sql =
      "INSERT INTO push_notifications (user_id, room_id, event_id, stream_ordering, actions, highlight, ts, "
      "thread_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
  for (const auto& r : rows) {
    c.prepare(sql).bind(r.user_id, room_id, event_id, stream_ordering, r.actions_json, r.highlight, ts, thread_id).run();
  }
}

std::vector<Notification> notifications(Connection& c, const std::string& user_id, int64_t before, int64_t limit,
                                        bool only_highlight) {
  auto st = c.prepare(
      "SELECT id, room_id, event_id, stream_ordering, actions, highlight, ts FROM push_notifications "
      "WHERE user_id = ? AND id < ? AND (? = 0 OR highlight = 1) ORDER BY id DESC LIMIT ?");
  st.bind(user_id, before > 0 ? before : INT64_MAX, only_highlight, limit);
  std::vector<Notification> out;
  while (st.step()) {
    out.push_back({st.int64(0), st.text(1), st.text(2), st.int64(3), st.text(4), st.int64(5) != 0, st.int64(6)});
  }
  return out;
}

std::vector<std::string> notification_rooms(Connection& c, const std::string& user_id) {
  auto st = c.prepare("SELECT DISTINCT room_id FROM push_notifications WHERE user_id = ?");
  st.bind(user_id);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

int64_t count_notifications_after(Connection& c, const std::string& user_id, const std::string& room_id,
                                  int64_t after_stream) {
  auto st = c.prepare("SELECT COUNT(*) FROM push_notifications WHERE user_id = ? AND room_id = ? AND stream_ordering > ?");
  st.bind(user_id, room_id, after_stream);
  return st.step() ? st.int64(0) : 0;
}

void enqueue(Connection& c, const QueuedPush& p) {
  c.prepare("INSERT INTO push_queue (user_id, app_id, pushkey, body, attempts, next_try_ts) VALUES (?, ?, ?, ?, 0, 0)")
      .bind(p.user_id, p.app_id, p.pushkey, p.body)
      .run();
}

std::vector<QueuedPush> queue_heads(Connection& c, int64_t limit) {
  auto st = c.prepare(
      "SELECT q.id, q.user_id, q.app_id, q.pushkey, q.body, q.attempts, q.next_try_ts FROM push_queue q "
      "JOIN (SELECT MIN(id) AS id FROM push_queue GROUP BY user_id, app_id, pushkey) h ON q.id = h.id "
      "ORDER BY q.id LIMIT ?");
  st.bind(limit);
  std::vector<QueuedPush> out;
  while (st.step()) out.push_back({st.int64(0), st.text(1), st.text(2), st.text(3), st.text(4), st.int64(5), st.int64(6)});
  return out;
}

void dequeue(Connection& c, int64_t id) { c.prepare("DELETE FROM push_queue WHERE id = ?").bind(id).run(); }

void reschedule(Connection& c, int64_t id, int64_t attempts, int64_t next_try_ts) {
  c.prepare("UPDATE push_queue SET attempts = ?, next_try_ts = ? WHERE id = ?").bind(attempts, next_try_ts, id).run();
}

int64_t queue_size(Connection& c) {
  auto st = c.prepare("SELECT COUNT(*) FROM push_queue");
  return st.step() ? st.int64(0) : 0;
}

}  // namespace trestle::storage::push
