#include "storage/room_admin_store.hpp"

#include "storage/sql_dialect.hpp"

namespace trestle::storage::room_admin {

namespace {

// A text field of a current state event's content ('' state key), NULL when absent or not text.
// `room` is the outer query's column holding the room ID.
std::string state_text(Dialect d, const std::string& room, const std::string& type, std::string_view field) {
  return "(SELECT " + sql::json_string(d, "e.json", {"content", field}) +
         " FROM current_state cs JOIN events e ON e.event_id = cs.event_id "
         "WHERE cs.room_id = " + room + " AND cs.type = '" + type + "' AND cs.state_key = '')";
}

// A user ID column of a local user (ends in ":" + the server name): two parameters, the server
// name twice. substr() with a start from the left: SQLite's negative start (from the right) means
// something else on PostgreSQL.
std::string local_user(const std::string& column) {
  return "substr(" + column + ", length(" + column + ") - length(?)) = ':' || ?";
}

// Its first two parameters are the server name (local users end in ":" + it).
std::string build_stats_cte(Dialect d) {
  auto text = [d](const std::string& type, std::string_view field) { return state_text(d, "r.room_id", type, field); };
  return "WITH stats AS (SELECT r.room_id AS room_id, " + text("m.room.name", "name") + " AS name, " +
         text("m.room.canonical_alias", "alias") + " AS canonical_alias, " +
         "(SELECT count(*) FROM room_memberships m WHERE m.room_id = r.room_id AND m.membership = 'join') "
         "AS joined_members, "
         "(SELECT count(*) FROM room_memberships m WHERE m.room_id = r.room_id AND m.membership = 'join' "
         "AND " + local_user("m.user_id") + ") AS joined_local_members, "
         "r.room_version AS version, r.creator AS creator, " +
         text("m.room.encryption", "algorithm") + " AS encryption, " +
         "(SELECT CASE WHEN " + sql::json_is_false(d, "e.json", {"content", "m.federate"}) +
         " THEN 0 ELSE 1 END FROM current_state cs JOIN events e ON e.event_id = cs.event_id "
         "WHERE cs.room_id = r.room_id AND cs.type = 'm.room.create' AND cs.state_key = '') AS federatable, "
         "r.is_public AS is_public, " +
         text("m.room.join_rules", "join_rule") + " AS join_rules, " +
         text("m.room.guest_access", "guest_access") + " AS guest_access, " +
         text("m.room.history_visibility", "history_visibility") + " AS history_visibility, " +
         "(SELECT count(*) FROM current_state cs WHERE cs.room_id = r.room_id) AS state_events, " +
         text("m.room.create", "type") + " AS room_type " + "FROM rooms r) ";
}

const std::string& stats_cte(Dialect d) {
  static const std::string sqlite = build_stats_cte(Dialect::sqlite), postgres = build_stats_cte(Dialect::postgres);
  return d == Dialect::sqlite ? sqlite : postgres;
}

const char* kStatsColumns =
    "SELECT room_id, name, canonical_alias, joined_members, joined_local_members, version, creator, encryption, "
    "federatable, is_public, join_rules, guest_access, history_visibility, state_events, room_type FROM stats ";

RoomStats read_stats(Statement& st) {
  RoomStats s;
  s.room_id = st.text(0);
  s.name = st.opt_text(1);
  s.canonical_alias = st.opt_text(2);
  s.joined_members = st.int64(3);
  s.joined_local_members = st.int64(4);
  s.version = st.text(5);
  s.creator = st.text(6);
  s.encryption = st.opt_text(7);
  s.federatable = st.is_null(8) || st.int64(8) != 0;
  s.is_public = st.int64(9) != 0;
  s.join_rules = st.opt_text(10);
  s.guest_access = st.opt_text(11);
  s.history_visibility = st.opt_text(12);
  s.state_events = st.int64(13);
  s.room_type = st.opt_text(14);
  return s;
}

// Synapse's RoomSortOrder: the column and whether it sorts ascending by default.
std::pair<const char*, bool> order_column(const std::string& order_by) {
  if (order_by == "name" || order_by == "alphabetical") return {"name", true};
  if (order_by == "size" || order_by == "joined_members") return {"joined_members", false};
  if (order_by == "canonical_alias") return {"canonical_alias", true};
  if (order_by == "joined_local_members") return {"joined_local_members", false};
  if (order_by == "version") return {"version", false};
  if (order_by == "creator") return {"creator", true};
  if (order_by == "encryption") return {"encryption", true};
  if (order_by == "federatable") return {"federatable", true};
  if (order_by == "public") return {"is_public", true};
  if (order_by == "join_rules") return {"join_rules", true};
  if (order_by == "guest_access") return {"guest_access", true};
  if (order_by == "history_visibility") return {"history_visibility", true};
  if (order_by == "state_events") return {"state_events", false};
  return {"name", true};
}

}  // namespace

std::pair<std::vector<RoomStats>, int64_t> list_rooms(Connection& c, const std::string& server_name,
                                                      const RoomQuery& q) {
  const auto d = c.dialect();
  std::string where = " WHERE true ";
  if (q.search_term) {
    // Synapse: the name (any case), the canonical alias's local part, or exactly the room ID.
    // Three parameters, the term each time.
    const char* position = d == Dialect::sqlite ? "instr" : "strpos";
    const std::string colon = std::string(position) + "(canonical_alias, ':')";
    where += std::string("AND (") + position + "(lower(name), lower(?)) > 0 OR " + position +
             "(lower(substr(canonical_alias, 2, CASE WHEN " + colon + " > 1 THEN " + colon +
             " - 2 ELSE 0 END)), lower(?)) > 0 OR room_id = ?) ";
  }
  if (q.public_rooms) where += *q.public_rooms ? "AND is_public = 1 " : "AND is_public = 0 ";
  if (q.empty_rooms) where += *q.empty_rooms ? "AND joined_members = 0 " : "AND joined_members <> 0 ";
  auto [column, asc] = order_column(q.order_by);
  if (q.reverse) asc = !asc;
  // NULLs (rooms without a name, ...) first ascending and last descending, on either engine.
  const char* dir = asc ? " ASC" : " DESC";
  const char* nulls = asc ? " NULLS FIRST" : " NULLS LAST";
  auto bind = [&](Statement& st) {
    st.bind(server_name, server_name);
    if (q.search_term) st.bind(*q.search_term, *q.search_term, *q.search_term);
  };
  // The page's room IDs first (only the sort and filter columns are computed for every room),
  // then each room's statistics.
  std::string sql = stats_cte(d) + "SELECT room_id FROM stats" + where + "ORDER BY " + column + dir + nulls +
                    ", room_id" + dir + " LIMIT " + std::to_string(q.limit) + " OFFSET " + std::to_string(q.offset);
  auto st = c.prepare(sql);
  bind(st);
  std::vector<std::string> ids;
  while (st.step()) ids.push_back(st.text(0));
  std::vector<RoomStats> rooms;
  for (const auto& id : ids) {
    if (auto s = room_stats(c, server_name, id)) rooms.push_back(std::move(*s));
  }

  auto count = c.prepare(stats_cte(d) + "SELECT count(*) FROM stats" + where);
  bind(count);
  count.step();
  return {std::move(rooms), count.int64(0)};
}

std::optional<RoomStats> room_stats(Connection& c, const std::string& server_name, const std::string& room_id) {
  auto st = c.prepare(stats_cte(c.dialect()) + kStatsColumns + "WHERE room_id = ?");
  st.bind(server_name, server_name, room_id);
  if (!st.step()) return std::nullopt;
  return read_stats(st);
}

int64_t joined_local_devices(Connection& c, const std::string& room_id) {
  auto st = c.prepare(
      "SELECT count(*) FROM devices d JOIN room_memberships m ON m.user_id = d.user_id "
      "WHERE m.room_id = ? AND m.membership = 'join'");
  st.bind(room_id);
  st.step();
  return st.int64(0);
}

bool locally_forgotten(Connection& c, const std::string& server_name, const std::string& room_id) {
  auto st = c.prepare("SELECT 1 FROM room_memberships WHERE room_id = ? AND forgotten = 0 AND " +
                      local_user("user_id") + " LIMIT 1");
  st.bind(room_id, server_name, server_name);
  return !st.step();
}

std::vector<std::string> joined_users(Connection& c, const std::string& room_id) {
  auto st = c.prepare("SELECT user_id FROM room_memberships WHERE room_id = ? AND membership = 'join' ORDER BY user_id");
  st.bind(room_id);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

std::vector<std::pair<std::string, std::string>> local_members(Connection& c, const std::string& server_name,
                                                               const std::string& room_id) {
  auto st = c.prepare("SELECT user_id, membership FROM room_memberships WHERE room_id = ? AND " +
                      local_user("user_id") + " ORDER BY user_id");
  st.bind(room_id, server_name, server_name);
  std::vector<std::pair<std::string, std::string>> out;
  while (st.step()) out.emplace_back(st.text(0), st.text(1));
  return out;
}

bool local_users_joined(Connection& c, const std::string& server_name, const std::string& room_id) {
  auto st = c.prepare("SELECT 1 FROM room_memberships WHERE room_id = ? AND membership = 'join' AND " +
                      local_user("user_id") + " LIMIT 1");
  st.bind(room_id, server_name, server_name);
  return st.step();
}

std::optional<std::string> blocked_by(Connection& c, const std::string& room_id) {
  auto st = c.prepare("SELECT user_id FROM blocked_rooms WHERE room_id = ?");
  st.bind(room_id);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

void block_room(Connection& c, const std::string& room_id, const std::string& user_id) {
  c.prepare("INSERT INTO blocked_rooms (room_id, user_id) VALUES (?, ?) ON CONFLICT (room_id) DO NOTHING")
      .bind(room_id, user_id)
      .run();
}

void unblock_room(Connection& c, const std::string& room_id) {
  c.prepare("DELETE FROM blocked_rooms WHERE room_id = ?").bind(room_id).run();
}

void purge_room(Connection& c, const std::string& room_id) {
  // Rows found through the room's events first, then everything keyed by room_id.
  static const char* by_event[] = {
      "DELETE FROM event_txns WHERE event_id IN (SELECT event_id FROM events WHERE room_id = ?)",
  };
  static const char* by_room[] = {
      "DELETE FROM event_search WHERE room_id = ?",
      "DELETE FROM event_relations WHERE room_id = ?",
      "DELETE FROM push_notifications WHERE room_id = ?",
      "DELETE FROM push_room_notifications WHERE room_id = ?",
      "DELETE FROM receipts WHERE room_id = ?",
      "DELETE FROM account_data WHERE room_id = ?",
      "DELETE FROM room_peeks WHERE room_id = ?",
      "DELETE FROM appservice_room_list WHERE room_id = ?",
      "DELETE FROM key_backup_keys WHERE room_id = ?",  // Synapse's e2e_room_keys
      "DELETE FROM room_aliases WHERE room_id = ?",
      "DELETE FROM forward_extremities WHERE room_id = ?",
      "DELETE FROM current_state WHERE room_id = ?",
      "DELETE FROM room_memberships WHERE room_id = ?",
      "DELETE FROM events WHERE room_id = ?",
      "DELETE FROM rooms WHERE room_id = ?",
  };
  for (const char* sql : by_event) c.prepare(sql).bind(room_id).run();
  for (const char* sql : by_room) c.prepare(sql).bind(room_id).run();
}

int64_t purge_history(Connection& c, const std::string& server_name, const std::string& room_id, int64_t before,
                      bool delete_local) {
  // The events to delete: the room's non-state events before the point, remote ones only unless
  // delete_local (Synapse keeps local users' events by default: they may be the only copies).
  std::string cond = "room_id = ? AND stream_ordering < ? AND state_key IS NULL";
  if (!delete_local) cond += " AND NOT (" + local_user("sender") + ")";
  auto run = [&](const std::string& sql) {
    auto st = c.prepare(sql);
    st.bind(room_id, before);
    if (!delete_local) st.bind(server_name, server_name);
    st.run();
  };
  const std::string ids = "(SELECT event_id FROM events WHERE " + cond + ")";
  run("DELETE FROM event_txns WHERE event_id IN " + ids);
  run("DELETE FROM event_relations WHERE event_id IN " + ids);
  run("DELETE FROM push_notifications WHERE event_id IN " + ids);
  run("DELETE FROM push_room_notifications WHERE stream_ordering IN (SELECT stream_ordering FROM events WHERE " + cond +
      ")");
  // The search index's key is the event's stream position (SQLite's FTS5: its rowid).
  run(std::string("DELETE FROM event_search WHERE ") + (c.dialect() == Dialect::sqlite ? "rowid" : "stream_ordering") +
      " IN (SELECT stream_ordering FROM events WHERE " + cond + ")");
  run("DELETE FROM events WHERE " + cond);
  return c.changes();
}

std::optional<int64_t> last_event_before_ts(Connection& c, const std::string& room_id, int64_t ts) {
  auto st = c.prepare(
      "SELECT stream_ordering FROM events WHERE room_id = ? AND origin_server_ts < ? "
      "ORDER BY stream_ordering DESC LIMIT 1");
  st.bind(room_id, ts);
  if (!st.step()) return std::nullopt;
  return st.int64(0);
}

namespace {

std::string report_select(Dialect d) {
  return "SELECT er.id, er.received_ts, er.room_id, er.event_id, er.user_id, er.reason, er.content, ev.sender, " +
         state_text(d, "er.room_id", "m.room.name", "name") + ", " +
         state_text(d, "er.room_id", "m.room.canonical_alias", "alias") +
         " FROM event_reports er LEFT JOIN events ev ON ev.event_id = er.event_id ";
}

EventReportRow read_report(Statement& st) {
  return {st.int64(0), st.int64(1), st.text(2),     st.text(3),     st.text(4),
          st.opt_text(5), st.text(6), st.opt_text(7), st.opt_text(8), st.opt_text(9)};
}

}  // namespace

std::pair<std::vector<EventReportRow>, int64_t> list_event_reports(Connection& c, const ReportQuery& q) {
  std::string where = "WHERE true ";
  std::vector<std::string> args;
  if (q.user_id) {
    where += "AND er.user_id = ? ";
    args.push_back(*q.user_id);
  }
  if (q.room_id) {
    where += "AND er.room_id = ? ";
    args.push_back(*q.room_id);
  }
  if (q.event_sender_user_id) {
    where += "AND ev.sender = ? ";
    args.push_back(*q.event_sender_user_id);
  }
  const char* dir = q.newest_first ? " DESC" : " ASC";
  auto st = c.prepare(report_select(c.dialect()) + where + "ORDER BY er.received_ts" + dir + ", er.id" + dir + " LIMIT " +
                      std::to_string(q.limit) + " OFFSET " + std::to_string(q.offset));
  for (const auto& a : args) st.bind(a);
  std::vector<EventReportRow> out;
  while (st.step()) out.push_back(read_report(st));
  auto count = c.prepare("SELECT count(*) FROM event_reports er LEFT JOIN events ev ON ev.event_id = er.event_id " +
                         where);
  for (const auto& a : args) count.bind(a);
  count.step();
  return {std::move(out), count.int64(0)};
}

std::optional<EventReportRow> get_event_report(Connection& c, int64_t id) {
  auto st = c.prepare(report_select(c.dialect()) + "WHERE er.id = ?");
  st.bind(id);
  if (!st.step()) return std::nullopt;
  return read_report(st);
}

bool delete_event_report(Connection& c, int64_t id) {
  c.prepare("DELETE FROM event_reports WHERE id = ?").bind(id).run();
  return c.changes() > 0;
}

}  // namespace trestle::storage::room_admin
