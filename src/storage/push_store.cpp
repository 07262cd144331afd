#include "storage/push_store.hpp"

#include "storage/sql_dialect.hpp"

#include <algorithm>
#include <atomic>

namespace trestle::storage::push {

namespace {
std::atomic<uint64_t> g_rules_or_pushers_generation{0};
}  // namespace

uint64_t rules_or_pushers_generation() { return g_rules_or_pushers_generation.load(); }
void rules_or_pushers_changed() { g_rules_or_pushers_generation.fetch_add(1); }

std::vector<Pusher> pushers_of_user(Connection& c, const std::string& user_id) {
  auto st = c.prepare("SELECT user_id, app_id, pushkey, data, device_id, created_ts FROM pushers WHERE user_id = ? "
                      "ORDER BY app_id, pushkey");
  st.bind(user_id);
  std::vector<Pusher> out;
  while (st.step()) out.push_back({st.text(0), st.text(1), st.text(2), st.text(3), st.opt_text(4), st.int64(5)});
  return out;
}

void set_pusher_origin(Connection& c, const std::string& user_id, const std::string& app_id, const std::string& pushkey,
                       const std::optional<std::string>& device_id, int64_t ts) {
  c.prepare("UPDATE pushers SET device_id = ?, created_ts = ? WHERE user_id = ? AND app_id = ? AND pushkey = ?")
      .bind(device_id, ts, user_id, app_id, pushkey)
      .run();
}

void delete_pushers_of_other_devices(Connection& c, const std::string& user_id, const std::string& keep_device) {
  rules_or_pushers_changed();
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
  rules_or_pushers_changed();
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
  // The first position is also where the rows start (migration 27's rows_from).
  c.prepare("INSERT INTO push_state (id, last_stream, rows_from) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "last_stream = excluded.last_stream")
      .bind(position, position)
      .run();
}

std::optional<RowCoverage> row_coverage(Connection& c) {
  auto st = c.prepare("SELECT rows_from, last_stream FROM push_state WHERE id = 1");
  if (!st.step()) return std::nullopt;
  return RowCoverage{st.int64(0), st.int64(1)};
}

StoredDecisions stored_decisions(Connection& c, const std::string& user_id, const std::string& room_id, int64_t after,
                                 int64_t upto, int64_t limit) {
  // The room's rows from migration 27's covering index (no table reads: a room's rows are
  // contiguous there, where its events and rows in the tables are spread over the whole file),
  // then the user's own rows in the same range.
  StoredDecisions out;
  out.upto = upto;
  {
    auto st = c.prepare("SELECT stream_ordering, sender, thread_id, highlight FROM push_room_notifications" +
                        sql::indexed_by(c.dialect(), "push_room_notifications_room") +
                        " WHERE room_id = ? AND stream_ordering > ? AND stream_ordering <= ? "
                        "ORDER BY stream_ordering LIMIT ?");
    st.bind(room_id, after, upto, limit);
    while (st.step()) {
      StoredDecision d;
      d.stream_ordering = st.int64(0);
      d.sender = st.text(1);
      d.room_row = true;
      d.room_thread = st.text(2);
      d.room_highlight = st.int64(3) != 0;
      out.rows.push_back(std::move(d));
    }
  }
  if (static_cast<int64_t>(out.rows.size()) >= limit) out.upto = out.rows.back().stream_ordering;
  auto st = c.prepare(
      "SELECT stream_ordering, notify, highlight, thread_id FROM push_notifications WHERE user_id = ? AND room_id = ? "
      "AND stream_ordering > ? AND stream_ordering <= ? ORDER BY stream_ordering");
  st.bind(user_id, room_id, after, out.upto);
  std::vector<StoredDecision> merged;
  merged.reserve(out.rows.size());
  size_t i = 0;
  while (st.step()) {
    const int64_t pos = st.int64(0);
    while (i < out.rows.size() && out.rows[i].stream_ordering < pos) merged.push_back(std::move(out.rows[i++]));
    StoredDecision d;
    if (i < out.rows.size() && out.rows[i].stream_ordering == pos) d = std::move(out.rows[i++]);
    d.stream_ordering = pos;
    d.own_row = true;
    d.own_notify = st.int64(1) != 0;
    d.own_highlight = st.int64(2) != 0;
    d.own_thread = st.text(3);
    merged.push_back(std::move(d));
  }
  while (i < out.rows.size()) merged.push_back(std::move(out.rows[i++]));
  out.rows = std::move(merged);
  return out;
}

void delete_room_notification(Connection& c, int64_t stream_ordering) {
  c.prepare("DELETE FROM push_room_notifications WHERE stream_ordering = ?").bind(stream_ordering).run();
}

void add_room_notification(Connection& c, const RoomNotification& n) {
  c.prepare("INSERT INTO push_room_notifications (stream_ordering, room_id, event_id, sender, thread_id, actions, "
            "highlight, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
      .bind(n.stream_ordering, n.room_id, n.event_id, n.sender, n.thread_id, n.actions_json, n.highlight, n.ts)
      .run();
}

void add_notifications(Connection& c, const std::string& room_id, const std::string& event_id,
                       int64_t stream_ordering, int64_t ts, const std::string& thread_id,
                       const std::vector<UserNotification>& rows) {
  // One single-row statement per row: a multi-row INSERT would need a statement journal (it may
  // fail half-way), which costs more than the statements it saves.
  static const std::string sql =
      "INSERT INTO push_notifications (user_id, room_id, event_id, stream_ordering, actions, highlight, ts, "
      "thread_id, notify) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
  for (const auto& r : rows) {
    c.prepare(sql)
        .bind(r.user_id, room_id, event_id, stream_ordering, r.actions_json, r.highlight, ts, thread_id, r.notify)
        .run();
  }
}

std::vector<JoinedRange> joined_ranges(Connection& c, const std::string& room_id, const std::string& user_id) {
  const auto d = c.dialect();
  auto st = c.prepare("SELECT stream_ordering, " + sql::json_value(d, "json", {"content", "membership"}) +
                      " FROM events" + sql::indexed_by(d, "events_state_history") +
                      " WHERE room_id = ? AND type = 'm.room.member' AND state_key = ? ORDER BY stream_ordering");
  st.bind(room_id, user_id);
  std::vector<JoinedRange> out;
  bool joined = false;
  while (st.step()) {
    const bool join = st.opt_text(1).value_or("") == "join";
    if (join && !joined) out.push_back({st.int64(0), INT64_MAX});
    if (!join && joined) out.back().before = st.int64(0);
    joined = join;
  }
  return out;
}

namespace {

// The filters both readers share, and their parameters in order (bind_filter).
constexpr const char* kOwnRows =
    "FROM push_notifications WHERE user_id = ? AND room_id = ? AND stream_ordering > ? AND stream_ordering <= ? "
    "AND notify = 1 AND (? IS NULL OR thread_id = ?) AND (? = 0 OR highlight = 1)";
constexpr const char* kRoomRows =
    "FROM push_room_notifications r WHERE room_id = ? AND stream_ordering > ? AND stream_ordering <= ? "
    "AND sender <> ? AND (? IS NULL OR thread_id = ?) AND (? = 0 OR highlight = 1) AND NOT EXISTS "
    "(SELECT 1 FROM push_notifications p WHERE p.user_id = ? AND p.room_id = ? AND "
    "p.stream_ordering = r.stream_ordering)";

void bind_filter(Statement& st, const NotificationQuery& q, int64_t after, int64_t upto, bool own) {
  if (own) {
    st.bind(q.user_id, q.room_id, after, upto, q.thread_id, q.thread_id, q.only_highlight);
  } else {
    st.bind(q.room_id, after, upto, q.user_id, q.thread_id, q.thread_id, q.only_highlight, q.user_id, q.room_id);
  }
}

// Calls `read(after, upto, own)` for the own rows over the whole range, then for the room rows
// in each joined range that overlaps it.
template <typename Read>
void for_each_part(const NotificationQuery& q, Read read) {
  read(q.after, q.upto, true);
  for (const auto& r : q.joined) {
    const int64_t after = std::max(q.after, r.after);
    const int64_t upto = std::min(q.upto, r.before - 1);
    if (after < upto) read(after, upto, false);
  }
}

}  // namespace

std::vector<Notification> notifications(Connection& c, const NotificationQuery& q, int64_t limit) {
  static const std::string columns = "SELECT stream_ordering, event_id, thread_id, actions, highlight, ts ";
  static const std::string own_sql = columns + kOwnRows + " ORDER BY stream_ordering DESC LIMIT ?";
  static const std::string room_sql = columns + kRoomRows + " ORDER BY stream_ordering DESC LIMIT ?";
  std::vector<Notification> out;
  for_each_part(q, [&](int64_t after, int64_t upto, bool own) {
    auto st = c.prepare(own ? own_sql : room_sql);
    bind_filter(st, q, after, upto, own);
    st.bind(limit);
    while (st.step()) {
      out.push_back({st.int64(0), q.room_id, st.text(1), st.text(2), st.text(3), st.int64(4) != 0, st.int64(5)});
    }
  });
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.stream_ordering > b.stream_ordering; });
  if (static_cast<int64_t>(out.size()) > limit) out.resize(static_cast<size_t>(limit));
  return out;
}

int64_t count_notifications(Connection& c, const NotificationQuery& q) {
  static const std::string own_sql = std::string("SELECT COUNT(*) ") + kOwnRows;
  static const std::string room_sql = std::string("SELECT COUNT(*) ") + kRoomRows;
  int64_t n = 0;
  for_each_part(q, [&](int64_t after, int64_t upto, bool own) {
    auto st = c.prepare(own ? own_sql : room_sql);
    bind_filter(st, q, after, upto, own);
    if (st.step()) n += st.int64(0);
  });
  return n;
}

std::vector<std::string> joined_users_with_rules_or_pushers(Connection& c, const std::string& room_id) {
  auto st = c.prepare(
      "SELECT user_id FROM room_memberships WHERE room_id = ? AND membership = 'join' AND "
      "(user_id IN (SELECT user_id FROM push_rules) OR user_id IN (SELECT user_id FROM pushers))");
  st.bind(room_id);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

bool has_rules_or_pusher(Connection& c, const std::string& user_id) {
  auto st = c.prepare("SELECT EXISTS (SELECT 1 FROM push_rules WHERE user_id = ?) OR "
                      "EXISTS (SELECT 1 FROM pushers WHERE user_id = ?)");
  st.bind(user_id, user_id);
  return st.step() && st.int64(0) != 0;
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

bool is_queued(Connection& c, int64_t id) {
  auto st = c.prepare("SELECT 1 FROM push_queue WHERE id = ?");
  st.bind(id);
  return st.step();
}

void reschedule(Connection& c, int64_t id, int64_t attempts, int64_t next_try_ts) {
  c.prepare("UPDATE push_queue SET attempts = ?, next_try_ts = ? WHERE id = ?").bind(attempts, next_try_ts, id).run();
}

int64_t queue_size(Connection& c) {
  auto st = c.prepare("SELECT COUNT(*) FROM push_queue");
  return st.step() ? st.int64(0) : 0;
}

}  // namespace trestle::storage::push
