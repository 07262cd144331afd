#include "storage/event_store.hpp"

#include "core/canonical_json.hpp"
#include "core/json_depth.hpp"
#include "storage/sql_dialect.hpp"

#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <stdexcept>

namespace trestle::storage::events {

namespace {

constexpr const char* kEventColumns =
    "stream_ordering, event_id, room_id, type, state_key, sender, origin_server_ts, depth, json, "
    "replaces_state, redacted_by, txn_id, txn_device_id";

// The columns only: everything but the PDU.
StoredEvent header_from_row(const Statement& st) {
  StoredEvent e;
  e.stream_ordering = st.int64(0);
  e.event_id = st.text(1);
  e.room_id = st.text(2);
  e.type = st.text(3);
  e.state_key = st.opt_text(4);
  e.sender = st.text(5);
  e.origin_server_ts = st.int64(6);
  e.depth = st.int64(7);
  e.replaces_state = st.opt_text(9);
  e.redacted_by = st.opt_text(10);
  e.txn_id = st.opt_text(11);
  e.txn_device_id = st.opt_text(12);
  return e;
}

// A row whose stored JSON cannot be read (damaged, or nested deeper than any binary wrote) must
// not fail every read that meets it: it is left out, with the reason logged. Once redacted, its
// content no longer matters, so it is served from its columns as a redacted event.
// `why`, when given, receives the reason a row was left out.
std::optional<StoredEvent> event_from_row(const Statement& st, std::string* why = nullptr) {
  StoredEvent e = header_from_row(st);
  try {
    const std::string text = st.text(8);
    auto v = core::parse_stored_json(text);
    if (!v.is_object()) throw std::runtime_error("not a JSON object");
    // Older binaries accepted `1e10` in content and stored it as a double ("1E10"); numbers
    // written so always have an exponent, so only rows with an 'E' can hold one.
    if (text.find('E') != std::string::npos) core::integralise_numbers(v);
    e.pdu = std::move(v.as_object());
    return e;
  } catch (const std::exception& ex) {
    if (!e.redacted_by) {
      spdlog::warn("event {}: stored JSON unreadable ({}); left out", e.event_id, ex.what());
      if (why) *why = ex.what();
      return std::nullopt;
    }
  }
  e.pdu = boost::json::object{{"room_id", e.room_id}, {"sender", e.sender}, {"type", e.type},
                              {"origin_server_ts", e.origin_server_ts}, {"depth", e.depth},
                              {"content", boost::json::object{}}};
  if (e.state_key) e.pdu["state_key"] = *e.state_key;
  return e;
}

std::vector<StoredEvent> collect(Statement& st) {
  std::vector<StoredEvent> out;
  while (st.step()) {
    if (auto e = event_from_row(st)) out.push_back(std::move(*e));
  }
  return out;
}

Membership membership_from_row(const Statement& st) {
  return Membership{st.text(0), st.text(1), st.text(2), st.text(3), st.int64(4), st.int64(5) != 0};
}

constexpr const char* kMembershipColumns = "room_id, user_id, membership, event_id, stream_ordering, forgotten";

}  // namespace

void insert_event(Connection& c, const StoredEvent& e) { insert_event(c, e, boost::json::serialize(e.pdu)); }

void insert_event(Connection& c, const StoredEvent& e, std::string_view pdu_json) {
  static const std::string sql =
      std::string("INSERT INTO events (") + kEventColumns + ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)";
  c.prepare(sql)
      .bind(e.stream_ordering, e.event_id, e.room_id, e.type, e.state_key, e.sender, e.origin_server_ts, e.depth,
            pdu_json, e.replaces_state, e.redacted_by, e.txn_id, e.txn_device_id)
      .run();
}

std::optional<StoredEvent> get_event(Connection& c, const std::string& event_id) {
  auto st = c.prepare(std::string("SELECT ") + kEventColumns + " FROM events WHERE event_id = ?");
  st.bind(event_id);
  if (!st.step()) return std::nullopt;
  return event_from_row(st);
}

std::optional<StoredEvent> get_event_header(Connection& c, const std::string& event_id) {
  auto st = c.prepare(std::string("SELECT ") + kEventColumns + " FROM events WHERE event_id = ?");
  st.bind(event_id);
  if (!st.step()) return std::nullopt;
  return header_from_row(st);
}

std::vector<StoredEvent> get_events(Connection& c, const std::vector<std::string>& event_ids) {
  std::vector<StoredEvent> out;
  for (const auto& id : event_ids) {
    if (auto e = get_event(c, id)) out.push_back(std::move(*e));
  }
  return out;
}

std::vector<StoredEvent> events_in_stream_range(Connection& c, int64_t after, int64_t upto, int64_t limit) {
  auto st = c.prepare(std::string("SELECT ") + kEventColumns +
                      " FROM events WHERE stream_ordering > ? AND stream_ordering <= ? ORDER BY stream_ordering LIMIT ?");
  st.bind(after, upto, limit);
  return collect(st);
}

std::vector<StreamRow> stream_rows(Connection& c, int64_t after, int64_t upto, int64_t limit) {
  auto st = c.prepare(std::string("SELECT ") + kEventColumns +
                      " FROM events WHERE stream_ordering > ? AND stream_ordering <= ? ORDER BY stream_ordering LIMIT ?");
  st.bind(after, upto, limit);
  std::vector<StreamRow> out;
  while (st.step()) {
    StreamRow row;
    row.stream_ordering = st.int64(0);
    row.event_id = st.text(1);
    std::string why;
    row.event = event_from_row(st, &why);
    if (!row.event) row.error = "stored JSON unreadable: " + why;
    out.push_back(std::move(row));
  }
  return out;
}

void mark_redacted(Connection& c, const std::string& event_id, const std::string& redaction_id) {
  c.prepare("UPDATE events SET redacted_by = ? WHERE event_id = ? AND redacted_by IS NULL")
      .bind(redaction_id, event_id)
      .run();
}

std::vector<StateEntry> current_state(Connection& c, const std::string& room_id) {
  // The primary key's order (SQLite reads it so anyway; PostgreSQL promises no order without it).
  auto st = c.prepare("SELECT type, state_key, event_id FROM current_state WHERE room_id = ? ORDER BY type, state_key");
  st.bind(room_id);
  std::vector<StateEntry> out;
  while (st.step()) out.push_back(StateEntry{st.text(0), st.text(1), st.text(2)});
  return out;
}

std::vector<StateEntry> state_at(Connection& c, const std::string& room_id, int64_t at) {
  // Each (type, state_key)'s latest position from the partial state index (only the room's state
  // events, already grouped by (type, state_key)), then that event's id by its key. SQLite is
  // told the index: left to itself its planner walks events_room_stream, every event of the room
  // up to `at` (O(room size): 40x slower in a room of 1,600 events).
  auto st = c.prepare(
      "SELECT e.type, e.state_key, e.event_id FROM (SELECT MAX(stream_ordering) AS latest FROM events" +
      sql::indexed_by(c.dialect(), "events_state_history") +
      " WHERE room_id = ? AND state_key IS NOT NULL AND stream_ordering <= ? GROUP BY type, state_key) s "
      "JOIN events e ON e.stream_ordering = s.latest");
  st.bind(room_id, at);
  std::vector<StateEntry> out;
  while (st.step()) out.push_back(StateEntry{st.text(0), st.text(1), st.text(2)});
  return out;
}

std::optional<boost::json::object> state_content_before(Connection& c, const std::string& room_id,
                                                        const std::string& type, const std::string& state_key,
                                                        int64_t before) {
  auto st = c.prepare("SELECT json FROM events WHERE room_id = ? AND type = ? AND state_key = ? AND "
                      "stream_ordering < ? ORDER BY stream_ordering DESC LIMIT 1");
  st.bind(room_id, type, state_key, before);
  if (!st.step()) return std::nullopt;
  boost::json::value pdu;
  try {
    pdu = core::parse_stored_json(st.text(0));
  } catch (const std::exception& ex) {
    spdlog::warn("room {}: stored state event {} unreadable ({})", room_id, type, ex.what());
    return boost::json::object{};
  }
  auto* content = pdu.is_object() ? pdu.as_object().if_contains("content") : nullptr;
  if (!content || !content->is_object()) return boost::json::object{};
  return content->as_object();
}

std::optional<std::string> state_event_id_before(Connection& c, const std::string& room_id, const std::string& type,
                                                 const std::string& state_key, int64_t before) {
  auto st = c.prepare("SELECT event_id FROM events WHERE room_id = ? AND type = ? AND state_key = ? AND "
                      "stream_ordering < ? ORDER BY stream_ordering DESC LIMIT 1");
  st.bind(room_id, type, state_key, before);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

std::optional<std::string> current_state_event_id(Connection& c, const std::string& room_id,
                                                  const std::string& type, const std::string& state_key) {
  auto st = c.prepare("SELECT event_id FROM current_state WHERE room_id = ? AND type = ? AND state_key = ?");
  st.bind(room_id, type, state_key);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

void set_current_state(Connection& c, const std::string& room_id, const std::string& type,
                       const std::string& state_key, const std::string& event_id) {
  c.prepare("INSERT INTO current_state (room_id, type, state_key, event_id) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id")
      .bind(room_id, type, state_key, event_id)
      .run();
}

std::vector<std::string> forward_extremities(Connection& c, const std::string& room_id) {
  auto st = c.prepare("SELECT event_id FROM forward_extremities WHERE room_id = ?");
  st.bind(room_id);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

void set_forward_extremity(Connection& c, const std::string& room_id, const std::string& event_id) {
  // Events from this server always extend the single latest event, so the extremity is replaced.
  c.prepare("DELETE FROM forward_extremities WHERE room_id = ?").bind(room_id).run();
  c.prepare("INSERT INTO forward_extremities (room_id, event_id) VALUES (?, ?)").bind(room_id, event_id).run();
}

void upsert_membership(Connection& c, const Membership& m) {
  c.prepare("INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_ordering, forgotten) "
            "VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, "
            "event_id = excluded.event_id, stream_ordering = excluded.stream_ordering, forgotten = 0")
      .bind(m.room_id, m.user_id, m.membership, m.event_id, m.stream_ordering)
      .run();
}

std::optional<Membership> get_membership(Connection& c, const std::string& room_id, const std::string& user_id) {
  auto st = c.prepare(std::string("SELECT ") + kMembershipColumns +
                      " FROM room_memberships WHERE room_id = ? AND user_id = ?");
  st.bind(room_id, user_id);
  if (!st.step()) return std::nullopt;
  return membership_from_row(st);
}

std::vector<std::string> rooms_for_user(Connection& c, const std::string& user_id, const std::string& membership) {
  auto st = c.prepare("SELECT room_id FROM room_memberships WHERE user_id = ? AND membership = ?");
  st.bind(user_id, membership);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

std::vector<Membership> memberships_of_user(Connection& c, const std::string& user_id) {
  auto st = c.prepare(std::string("SELECT ") + kMembershipColumns + " FROM room_memberships WHERE user_id = ?");
  st.bind(user_id);
  std::vector<Membership> out;
  while (st.step()) out.push_back(membership_from_row(st));
  return out;
}

std::vector<Membership> members_of_room(Connection& c, const std::string& room_id) {
  auto st = c.prepare(std::string("SELECT ") + kMembershipColumns +
                      " FROM room_memberships WHERE room_id = ? ORDER BY user_id");
  st.bind(room_id);
  std::vector<Membership> out;
  while (st.step()) out.push_back(membership_from_row(st));
  return out;
}

void set_forgotten(Connection& c, const std::string& room_id, const std::string& user_id) {
  c.prepare("UPDATE room_memberships SET forgotten = 1 WHERE room_id = ? AND user_id = ?").bind(room_id, user_id).run();
}

int64_t joined_member_count(Connection& c, const std::string& room_id) {
  auto st = c.prepare("SELECT COUNT(*) FROM room_memberships WHERE room_id = ? AND membership = 'join'");
  st.bind(room_id);
  st.step();
  return st.int64(0);
}

std::optional<std::string> txn_event(Connection& c, const std::string& user_id, const std::string& device_id,
                                     const std::string& txn_id) {
  auto st = c.prepare("SELECT event_id FROM event_txns WHERE user_id = ? AND device_id = ? AND txn_id = ?");
  st.bind(user_id, device_id, txn_id);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

void insert_txn(Connection& c, const std::string& user_id, const std::string& device_id, const std::string& txn_id,
                const std::string& event_id) {
  c.prepare("INSERT INTO event_txns (user_id, device_id, txn_id, event_id) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING")
      .bind(user_id, device_id, txn_id, event_id)
      .run();
}

std::vector<StoredEvent> room_events_backwards(Connection& c, const std::string& room_id, int64_t from_exclusive,
                                               int64_t to_inclusive, int64_t limit) {
  auto st = c.prepare(std::string("SELECT ") + kEventColumns +
                      " FROM events WHERE room_id = ? AND stream_ordering > ? AND stream_ordering <= ? "
                      "ORDER BY stream_ordering DESC LIMIT ?");
  st.bind(room_id, from_exclusive, to_inclusive, limit);
  return collect(st);
}

std::vector<StoredEvent> room_events_forwards(Connection& c, const std::string& room_id, int64_t from_exclusive,
                                              int64_t to_inclusive, int64_t limit) {
  auto st = c.prepare(std::string("SELECT ") + kEventColumns +
                      " FROM events WHERE room_id = ? AND stream_ordering > ? AND stream_ordering <= ? "
                      "ORDER BY stream_ordering ASC LIMIT ?");
  st.bind(room_id, from_exclusive, to_inclusive, limit);
  return collect(st);
}

int64_t latest_stream_in_room(Connection& c, const std::string& room_id) {
  auto st = c.prepare("SELECT MAX(stream_ordering) FROM events WHERE room_id = ?");
  st.bind(room_id);
  st.step();
  return st.is_null(0) ? 0 : st.int64(0);
}

}  // namespace trestle::storage::events
