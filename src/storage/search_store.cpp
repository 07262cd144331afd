#include "storage/search_store.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <limits>
#include <stdexcept>

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

// --- PostgreSQL: its own full-text search ---------------------------------------------------
// event_search is a table keyed by stream_ordering (FTS5's rowid) with a generated tsvector of
// the text, folded by search_fold() (diacritics removed, as FTS5's remove_diacritics) and
// tokenized by the 'simple' configuration (lower-cased, no stemming, no stop words: FTS5's
// unicode61). The room and key restrictions are plain columns, not tokens.

bool postgres(const Connection& c) { return c.dialect() == Dialect::postgres; }

// The FTS5 expression service::fts_query builds ("quoted phrases", AND, OR, NOT, parentheses)
// as tsquery text: a quoted phrase becomes a quoted tsquery operand (to_tsquery splits it into
// its words, adjacent, as FTS5's phrase), AND is &, OR is |, and FTS5's binary NOT is "& !".
// `positive` is every phrase not excluded, ORed: what highlighting looks for.
struct TsQuery {
  std::string all, positive;
};

TsQuery ts_query(const std::string& fts) {
  TsQuery q;
  bool negate_next = false;
  for (size_t i = 0; i < fts.size();) {
    const char ch = fts[i];
    if (ch == ' ' || ch == '(' || ch == ')') {
      if (ch != ' ') q.all += ch;
      ++i;
    } else if (ch == '"') {
      size_t end = fts.find('"', i + 1);
      if (end == std::string::npos) throw std::invalid_argument("unterminated phrase in search query");
      std::string operand = "'";
      for (char p : fts.substr(i + 1, end - i - 1)) {
        if (p == '\'' || p == '\\') operand += '\\';
        operand += p;
      }
      operand += "'";
      q.all += operand;
      if (!negate_next) q.positive += (q.positive.empty() ? "" : " | ") + operand;
      negate_next = false;
      i = end + 1;
    } else {
      size_t end = fts.find_first_of(" ()\"", i);
      const std::string word = fts.substr(i, end == std::string::npos ? std::string::npos : end - i);
      if (word == "AND") {
        q.all += " & ";
      } else if (word == "OR") {
        q.all += " | ";
      } else if (word == "NOT") {
        q.all += " & !";
        negate_next = true;
      } else {
        throw std::invalid_argument("unexpected '" + word + "' in search query");
      }
      i += word.size();
    }
  }
  return q;
}

// A JSON array of the strings, bound as one parameter: `x IN (SELECT json_array_elements_text(?::json))`.
std::string json_list(const std::vector<std::string>& items) {
  boost::json::array a;
  for (const auto& i : items) a.emplace_back(i);
  return boost::json::serialize(a);
}

constexpr const char* kPgMatch =
    " FROM event_search s WHERE vector @@ to_tsquery('simple', search_fold(?))"
    " AND room_id IN (SELECT json_array_elements_text(?::json)) AND key IN (SELECT json_array_elements_text(?::json))";

// Code points of UTF-8 text (its lead bytes), and the byte offset of one, for mapping offsets
// between a text and its fold.
size_t code_points(const std::string& s) {
  return std::count_if(s.begin(), s.end(), [](char ch) { return (static_cast<unsigned char>(ch) & 0xC0) != 0x80; });
}

size_t byte_offset(const std::string& s, size_t code_point) {
  size_t i = 0;
  for (size_t n = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80 && n++ == code_point) return i;
  }
  return i;
}

double rank_of(const Statement& st, int col) {
  try {
    return std::stod(st.text(col));
  } catch (const std::exception&) {
    return 0;
  }
}

// PostgreSQL: each match comes with its room, key and event (the rows are read for the filter
// anyway, and a query per match would cost a round trip). libpq reads a whole result at once, so
// the recent order reads kRecentChunk rows at a time, for as long as `visit` takes them.
constexpr int64_t kRecentChunk = 64;

void for_each_match_postgres(Connection& c, const std::string& text_query, const std::vector<std::string>& room_ids,
                             const std::vector<std::string>& keys, Order order, int64_t offset,
                             std::optional<int64_t> below, const std::function<bool(const Match&)>& visit) {
  static const std::string kRank =
      std::string("SELECT stream_ordering, score, room_id, key, (SELECT event_id FROM events e "
                  "WHERE e.stream_ordering = newest.stream_ordering) FROM (SELECT stream_ordering, room_id, key, "
                  "ts_rank_cd(vector, to_tsquery('simple', search_fold(?))) AS score") +
      kPgMatch + " ORDER BY stream_ordering DESC LIMIT ?) AS newest ORDER BY score DESC, stream_ordering DESC OFFSET ?";
  static const std::string kRecent =
      std::string("SELECT stream_ordering, 0, room_id, key, (SELECT event_id FROM events e "
                  "WHERE e.stream_ordering = s.stream_ordering)") +
      kPgMatch + " AND stream_ordering < ? ORDER BY stream_ordering DESC LIMIT ?";
  const std::string query = ts_query(text_query).all, rooms = json_list(room_ids), key_list = json_list(keys);
  auto match_of = [&](const Statement& st) {
    Match m;
    m.stream_ordering = st.int64(0);
    if (order == Order::rank) m.rank = rank_of(st, 1);
    m.room_id = st.text(2);
    m.key = st.text(3);
    m.event_id = st.opt_text(4).value_or("");
    return m;
  };
  if (order == Order::rank) {
    auto st = c.prepare(kRank);
    st.bind(query, query, rooms, key_list, kRankWindow, offset);
    while (st.step()) {
      if (!visit(match_of(st))) return;
    }
    return;
  }
  int64_t upper = below.value_or(std::numeric_limits<int64_t>::max());
  for (;;) {
    auto st = c.prepare(kRecent);
    st.bind(query, rooms, key_list, upper, kRecentChunk);
    int64_t rows = 0;
    while (st.step()) {
      ++rows;
      const Match m = match_of(st);
      upper = m.stream_ordering;
      if (!visit(m)) return;
    }
    if (rows < kRecentChunk) return;
  }
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
  if (postgres(c)) {  // no tags: the room and key are columns PostgreSQL filters on
    c.prepare("INSERT INTO event_search (stream_ordering, value, room_id, key) VALUES (?, ?, ?, ?)")
        .bind(e.stream_ordering, value, e.room_id, k)
        .run();
    return;
  }
  c.prepare("INSERT INTO event_search (rowid, value, tags, room_id, key) VALUES (?, ?, ?, ?, ?)")
      .bind(e.stream_ordering, value, room_token(e.room_id) + " " + key_token(k), e.room_id, k)
      .run();
}

void unindex_event(Connection& c, const std::string& event_id) {
  c.prepare(postgres(c) ? "DELETE FROM event_search WHERE stream_ordering = "
                          "(SELECT stream_ordering FROM events WHERE event_id = ?)"
                        : "DELETE FROM event_search WHERE rowid = (SELECT stream_ordering FROM events WHERE event_id = ?)")
      .bind(event_id)
      .run();
}

int64_t indexed_upto(Connection& c) {
  auto st = c.prepare("SELECT value FROM stream_position WHERE name = 'search'");
  return st.step() ? st.int64(0) : 0;
}

int64_t index_upto(Connection& c, int64_t upto) {
  int64_t from = 0;
  if (postgres(c)) {
    // Several processes index (an event writer's commit, a reader's search catching up): the
    // row lock makes the second wait and then read where the first stopped, so no event is
    // indexed twice.
    c.prepare("INSERT INTO stream_position (name, value) VALUES ('search', 0) ON CONFLICT (name) DO NOTHING").run();
    auto st = c.prepare("SELECT value FROM stream_position WHERE name = 'search' FOR UPDATE");
    if (st.step()) from = st.int64(0);
    while (st.step()) {
    }
  } else {
    from = indexed_upto(c);
  }
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
            " ON CONFLICT (name) DO UPDATE SET value = CASE WHEN excluded.value > stream_position.value"
            " THEN excluded.value ELSE stream_position.value END")
      .bind(upto)
      .run();
  return upto;
}

void for_each_match(Connection& c, const std::string& text_query, const std::vector<std::string>& room_ids,
                    const std::vector<std::string>& keys, Order order, int64_t offset, std::optional<int64_t> below,
                    const std::function<bool(const Match&)>& visit) {
  if (room_ids.empty() || keys.empty()) return;
  if (postgres(c)) return for_each_match_postgres(c, text_query, room_ids, keys, order, offset, below, visit);
  // Only the rowid and score per match; the row's other columns are read for the rows visited.
  std::optional<Statement> st;
  if (order == Order::rank) {
    st.emplace(c.prepare(
        "SELECT rowid, score FROM (SELECT rowid, -bm25(event_search, 1.0, 0.0) AS score FROM event_search"
        " WHERE event_search MATCH ? ORDER BY rowid DESC LIMIT ?) ORDER BY score DESC, rowid DESC LIMIT -1 OFFSET ?"));
    st->bind(scoped(text_query, room_ids, keys), kRankWindow, offset);
  } else {
    st.emplace(c.prepare(
        "SELECT rowid, 0 FROM event_search WHERE event_search MATCH ? AND rowid < ? ORDER BY rowid DESC"));
    st->bind(scoped(text_query, room_ids, keys), below.value_or(std::numeric_limits<int64_t>::max()));
  }
  while (st->step()) {
    Match m;
    m.stream_ordering = st->int64(0);
    if (order == Order::rank) m.rank = rank_of(*st, 1);
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
  if (postgres(c)) {  // one query: each room's bound joined in
    if (upto_by_room.empty() || keys.empty()) return 0;
    boost::json::object bounds;
    for (const auto& [room, upto] : upto_by_room) bounds[room] = upto;
    auto st = c.prepare(
        "SELECT COUNT(*) FROM event_search s JOIN json_each_text(?::json) AS b ON b.key = s.room_id "
        "WHERE vector @@ to_tsquery('simple', search_fold(?)) AND s.key IN (SELECT json_array_elements_text(?::json)) "
        "AND s.stream_ordering <= CAST(b.value AS BIGINT)");
    st.bind(boost::json::serialize(bounds), ts_query(text_query).all, json_list(keys));
    return st.step() ? st.int64(0) : 0;
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
  if (postgres(c)) {
    // ts_headline marks the matched words of the folded text; search_fold() maps a character to
    // one character (combining marks aside), so the same characters of the text are the words as
    // they appear in it.
    auto st = c.prepare(
        "SELECT value, search_fold(value), ts_headline('simple', search_fold(value), "
        "to_tsquery('simple', search_fold(?)), 'StartSel=' || chr(1) || ', StopSel=' || chr(2) || ', HighlightAll=true') "
        "FROM event_search WHERE stream_ordering = ?");
    st.bind(ts_query(text_query).positive, stream_ordering);
    std::vector<std::string> out;
    if (!st.step()) return out;
    const std::string value = st.text(0), folded = st.text(1), marked = st.text(2);
    const std::string& source = code_points(value) == code_points(folded) ? value : folded;
    size_t at = 0, start = 0;  // code points of the unmarked text before the current one
    for (size_t i = 0; i < marked.size(); ++i) {
      const char ch = marked[i];
      if (ch == '\x01') {
        start = at;
      } else if (ch == '\x02') {
        const size_t from = byte_offset(source, start);
        out.push_back(source.substr(from, byte_offset(source, at) - from));
      } else if ((static_cast<unsigned char>(ch) & 0xC0) != 0x80) {
        ++at;
      }
    }
    return out;
  }
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
