#include "storage/search_store.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <limits>

namespace trestle::storage::search {

namespace {

constexpr const char* kMatchColumns =
    "SELECT rowid, room_id, key, CAST(-bm25(event_search) AS TEXT),"
    " (SELECT event_id FROM events WHERE events.stream_ordering = event_search.rowid) FROM event_search";

std::string rooms_json(const std::vector<std::string>& room_ids) {
  boost::json::array a;
  for (const auto& r : room_ids) a.emplace_back(r);
  return boost::json::serialize(a);
}

}  // namespace

const char* key_for_type(const std::string& type) {
  if (type == "m.room.message") return "content.body";
  if (type == "m.room.name") return "content.name";
  if (type == "m.room.topic") return "content.topic";
  return nullptr;
}

void index_event(Connection& c, const events::StoredEvent& e) {
  const char* key = key_for_type(e.type);
  if (!key || e.redacted_by) return;
  auto* content = e.pdu.if_contains("content");
  if (!content || !content->is_object()) return;
  auto* v = content->as_object().if_contains(key + 8);  // after "content."
  if (!v || !v->is_string()) return;
  std::string value(v->as_string());
  for (auto& ch : value) {
    if (ch == '\0') ch = ' ';  // FTS tokenizers stop at NUL (Synapse replaces it too)
  }
  c.prepare("INSERT INTO event_search (rowid, value, room_id, key) VALUES (?, ?, ?, ?)")
      .bind(e.stream_ordering, value, e.room_id, key)
      .run();
}

void unindex_event(Connection& c, const std::string& event_id) {
  c.prepare("DELETE FROM event_search WHERE rowid = (SELECT stream_ordering FROM events WHERE event_id = ?)")
      .bind(event_id)
      .run();
}

void for_each_match(Connection& c, const std::string& fts_query, Order order, int64_t offset,
                    std::optional<int64_t> below, const std::vector<std::string>& room_ids,
                    const std::function<bool(const Match&)>& visit) {
  const std::string rooms_clause = " AND room_id IN (SELECT value FROM json_each(?))";
  std::optional<Statement> st;
  if (order == Order::rank) {
    st.emplace(c.prepare(std::string(kMatchColumns) + " WHERE event_search MATCH ?" + rooms_clause +
                         " ORDER BY bm25(event_search), rowid DESC LIMIT -1 OFFSET ?"));
    st->bind(fts_query, rooms_json(room_ids), offset);
  } else {
    st.emplace(c.prepare(std::string(kMatchColumns) + " WHERE event_search MATCH ? AND rowid < ?" + rooms_clause +
                         " ORDER BY rowid DESC LIMIT -1 OFFSET ?"));
    st->bind(fts_query, below.value_or(std::numeric_limits<int64_t>::max()), rooms_json(room_ids), offset);
  }
  while (st->step()) {
    Match m;
    m.stream_ordering = st->int64(0);
    m.room_id = st->text(1);
    m.key = st->text(2);
    m.event_id = st->opt_text(4).value_or("");
    try {
      m.rank = std::stod(st->text(3));
    } catch (const std::exception&) {
      m.rank = 0;
    }
    if (!visit(m)) break;
  }
}

int64_t count_matches(Connection& c, const std::string& fts_query, const std::vector<std::string>& keys,
                      const std::map<std::string, int64_t>& upto_by_room) {
  boost::json::object upto;
  for (const auto& [room, pos] : upto_by_room) upto[room] = pos;
  boost::json::array key_list;
  for (const auto& k : keys) key_list.emplace_back(k);
  auto st = c.prepare(
      "SELECT COUNT(*) FROM event_search WHERE event_search MATCH ? AND key IN (SELECT value FROM json_each(?))"
      " AND rowid <= (SELECT value FROM json_each(?) AS j WHERE j.key = event_search.room_id)");
  st.bind(fts_query, boost::json::serialize(key_list), boost::json::serialize(upto));
  return st.step() ? st.int64(0) : 0;
}

std::vector<std::string> matched_terms(Connection& c, const std::string& fts_query, int64_t stream_ordering) {
  auto st = c.prepare(
      "SELECT highlight(event_search, 0, char(1), char(2)) FROM event_search WHERE event_search MATCH ? AND rowid = ?");
  st.bind(fts_query, stream_ordering);
  std::vector<std::string> out;
  if (!st.step()) return out;
  const std::string marked = st.text(0);
  size_t pos = 0;
  while ((pos = marked.find('\x01', pos)) != std::string::npos) {
    size_t end = marked.find('\x02', pos + 1);
    if (end == std::string::npos) break;
    out.push_back(marked.substr(pos + 1, end - pos - 1));
    pos = end + 1;
  }
  return out;
}

}  // namespace trestle::storage::search
