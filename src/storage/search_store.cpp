#include "storage/search_store.hpp"

#include <boost/json/parse.hpp>

#include <algorithm>
#include <limits>

namespace trestle::storage::search {

namespace {

std::string room_token(const std::string& room_id) {
  static const char* digits = "0123456789ABCDEF";
  std::string out = "r";
  for (unsigned char ch : room_id) {
    out += digits[ch >> 4];
    out += digits[ch & 15];
  }
  return out;  // SQLite's hex() in the migration's back-fill writes the same
}

std::string key_token(const std::string& key) { return "k" + key.substr(key.find('.') + 1); }

std::string any_of(const std::vector<std::string>& tokens) {
  std::string out = "(";
  for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " OR \"" : "\"") + tokens[i] + "\"";
  return out + ")";
}

// The text query restricted to the rooms and keys. Room and key tokens are hex and letters: they
// need no escaping inside the quotes.
std::string scoped(const std::string& text_query, const std::vector<std::string>& room_ids,
                   const std::vector<std::string>& keys) {
  std::vector<std::string> rooms, key_tokens;
  for (const auto& r : room_ids) rooms.push_back(room_token(r));
  for (const auto& k : keys) key_tokens.push_back(key_token(k));
  return "{value} : (" + text_query + ") AND {tags} : (" + any_of(rooms) + " AND " + any_of(key_tokens) + ")";
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
  const std::string k(key);
  auto* v = content->as_object().if_contains(k.substr(k.find('.') + 1));
  if (!v || !v->is_string()) return;
  std::string value(v->as_string());
  std::replace(value.begin(), value.end(), '\0', ' ');  // SQLite strings end at NUL (Synapse replaces it too)
  c.prepare("INSERT INTO event_search (rowid, value, tags, room_id, key) VALUES (?, ?, ?, ?, ?)")
      .bind(e.stream_ordering, value, room_token(e.room_id) + " " + key_token(k), e.room_id, k)
      .run();
}

void unindex_event(Connection& c, const std::string& event_id) {
  c.prepare("DELETE FROM event_search WHERE rowid = (SELECT stream_ordering FROM events WHERE event_id = ?)")
      .bind(event_id)
      .run();
}

int64_t indexed_upto(Connection& c) {
  auto st = c.prepare("SELECT value FROM stream_position WHERE name = 'search'");
  return st.step() ? st.int64(0) : 0;
}

int64_t index_upto(Connection& c, int64_t upto) {
  const int64_t from = indexed_upto(c);
  if (upto <= from) return from;
  auto st = c.prepare(
      "SELECT stream_ordering, room_id, type, json FROM events WHERE stream_ordering > ? AND stream_ordering <= ?"
      " AND type IN ('m.room.message', 'm.room.name', 'm.room.topic') AND redacted_by IS NULL ORDER BY stream_ordering");
  st.bind(from, upto);
  events::StoredEvent e;
  while (st.step()) {
    boost::system::error_code ec;
    auto pdu = boost::json::parse(st.text(3), ec);
    if (ec || !pdu.is_object()) continue;  // an unreadable row has nothing to find (as the back-fill)
    e.stream_ordering = st.int64(0);
    e.room_id = st.text(1);
    e.type = st.text(2);
    e.pdu = std::move(pdu.as_object());
    index_event(c, e);
  }
  c.prepare("INSERT INTO stream_position (name, value) VALUES ('search', ?)"
            " ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)")
      .bind(upto)
      .run();
  return upto;
}

void for_each_match(Connection& c, const std::string& text_query, const std::vector<std::string>& room_ids,
                    const std::vector<std::string>& keys, Order order, int64_t offset, std::optional<int64_t> below,
                    const std::function<bool(const Match&)>& visit) {
  if (room_ids.empty() || keys.empty()) return;
  const std::string query = scoped(text_query, room_ids, keys);
  // Only the rowid and score per match; the row's other columns are read for the rows visited.
  std::optional<Statement> st;
  if (order == Order::rank) {
    st.emplace(c.prepare(
        "SELECT rowid, score FROM (SELECT rowid, -bm25(event_search, 1.0, 0.0) AS score FROM event_search"
        " WHERE event_search MATCH ? ORDER BY rowid DESC LIMIT ?) ORDER BY score DESC, rowid DESC LIMIT -1 OFFSET ?"));
    st->bind(query, kRankWindow, offset);
  } else {
    st.emplace(c.prepare(
        "SELECT rowid, 0 FROM event_search WHERE event_search MATCH ? AND rowid < ? ORDER BY rowid DESC"));
    st->bind(query, below.value_or(std::numeric_limits<int64_t>::max()));
  }
  while (st->step()) {
    Match m;
    m.stream_ordering = st->int64(0);
    if (order == Order::rank) {
      try {
        m.rank = std::stod(st->text(1));
      } catch (const std::exception&) {
        m.rank = 0;
      }
    }
    auto row = c.prepare(
        "SELECT room_id, key, (SELECT event_id FROM events WHERE stream_ordering = ?) FROM event_search WHERE rowid = ?");
    row.bind(m.stream_ordering, m.stream_ordering);
    if (!row.step()) continue;
    m.room_id = row.text(0);
    m.key = row.text(1);
    m.event_id = row.opt_text(2).value_or("");
    if (!visit(m)) break;
  }
}

int64_t count_matches(Connection& c, const std::string& text_query, const std::vector<std::string>& keys,
                      const std::map<std::string, int64_t>& upto_by_room) {
  // One query per distinct upper bound: the joined rooms share one (now), each left room has its
  // own. Beyond kMaxQueries bounds, the remaining rooms share the largest of theirs (the count is
  // approximate, as the spec allows).
  constexpr size_t kMaxQueries = 32;
  std::map<int64_t, std::vector<std::string>, std::greater<>> by_upto;
  for (const auto& [room, upto] : upto_by_room) by_upto[upto].push_back(room);
  while (by_upto.size() > kMaxQueries) {
    auto last = std::prev(by_upto.end());
    auto& into = std::prev(last)->second;
    into.insert(into.end(), last->second.begin(), last->second.end());
    by_upto.erase(last);
  }
  int64_t total = 0;
  for (const auto& [upto, rooms] : by_upto) {
    if (rooms.empty() || keys.empty()) continue;
    auto st = c.prepare("SELECT COUNT(*) FROM event_search WHERE event_search MATCH ? AND rowid <= ?");
    st.bind(scoped(text_query, rooms, keys), upto);
    if (st.step()) total += st.int64(0);
  }
  return total;
}

std::vector<std::string> matched_terms(Connection& c, const std::string& text_query, int64_t stream_ordering) {
  auto st = c.prepare(
      "SELECT highlight(event_search, 0, char(1), char(2)) FROM event_search WHERE event_search MATCH ? AND rowid = ?");
  st.bind("{value} : (" + text_query + ")", stream_ordering);
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
