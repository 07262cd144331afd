#include "storage/relation_store.hpp"

namespace trestle::storage::relations {

namespace {

constexpr const char* kColumns =
    "event_id, room_id, relates_to_id, rel_type, type, sender, aggregation_key, stream_ordering";

Relation from_row(const Statement& st) {
  return Relation{st.text(0), st.text(1), st.text(2), st.text(3), st.text(4), st.text(5), st.opt_text(6), st.int64(7)};
}

}  // namespace

void insert(Connection& c, const Relation& r) {
  c.prepare(std::string("INSERT INTO event_relations (") + kColumns +
            ") VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (event_id) DO UPDATE SET room_id = excluded.room_id, "
            "relates_to_id = excluded.relates_to_id, rel_type = excluded.rel_type, type = excluded.type, "
            "sender = excluded.sender, aggregation_key = excluded.aggregation_key, "
            "stream_ordering = excluded.stream_ordering")
      .bind(r.event_id, r.room_id, r.relates_to, r.rel_type, r.type, r.sender, r.aggregation_key, r.stream_ordering)
      .run();
}

void remove(Connection& c, const std::string& event_id) {
  c.prepare("DELETE FROM event_relations WHERE event_id = ?").bind(event_id).run();
}

bool is_parent(Connection& c, const std::string& event_id) {
  auto st = c.prepare("SELECT 1 FROM event_relations WHERE relates_to_id = ? LIMIT 1");
  st.bind(event_id);
  return st.step();
}

bool has_annotation(Connection& c, const std::string& parent, const std::string& sender, const std::string& type,
                    const std::string& key) {
  auto st = c.prepare(
      "SELECT 1 FROM event_relations WHERE relates_to_id = ? AND rel_type = 'm.annotation' AND sender = ? "
      "AND type = ? AND aggregation_key = ? LIMIT 1");
  st.bind(parent, sender, type, key);
  return st.step();
}

std::vector<Relation> children(Connection& c, const std::string& parent, const std::optional<std::string>& rel_type,
                               const std::optional<std::string>& event_type, int64_t lower_exclusive,
                               int64_t upper_inclusive, bool backwards, int64_t limit, int depth) {
  std::string sql;
  if (depth > 0) {
    // Children of children, a bounded number of levels down (UNION drops repeats, the depth
    // bound ends cycles).
    sql = std::string(
              "WITH RECURSIVE related(event_id, depth) AS ("
              " SELECT event_id, 0 FROM event_relations WHERE relates_to_id = ?"
              " UNION SELECT r.event_id, related.depth + 1 FROM event_relations r"
              " JOIN related ON r.relates_to_id = related.event_id WHERE related.depth < ?) "
              "SELECT ") +
          kColumns + " FROM event_relations WHERE event_id IN (SELECT event_id FROM related)";
  } else {
    sql = std::string("SELECT ") + kColumns + " FROM event_relations WHERE relates_to_id = ?";
  }
  if (rel_type) sql += " AND rel_type = ?";
  if (event_type) sql += " AND type = ?";
  sql += " AND stream_ordering > ? AND stream_ordering <= ? ORDER BY stream_ordering ";
  sql += backwards ? "DESC" : "ASC";
  sql += " LIMIT ?";
  auto st = c.prepare(sql);
  st.bind(parent);
  if (depth > 0) st.bind(static_cast<int64_t>(depth));
  if (rel_type) st.bind(*rel_type);
  if (event_type) st.bind(*event_type);
  st.bind(lower_exclusive, upper_inclusive, limit);
  std::vector<Relation> out;
  while (st.step()) out.push_back(from_row(st));
  return out;
}

std::vector<RelTypeCount> aggregatable_counts(Connection& c, const std::string& parent) {
  auto st = c.prepare(
      "SELECT rel_type, COUNT(*) FROM event_relations WHERE relates_to_id = ? "
      "AND rel_type IN ('m.thread', 'm.replace', 'm.reference') GROUP BY rel_type");
  st.bind(parent);
  std::vector<RelTypeCount> out;
  while (st.step()) out.push_back(RelTypeCount{st.text(0), st.int64(1)});
  return out;
}

std::vector<SenderSummary> thread_senders(Connection& c, const std::string& root) {
  auto st = c.prepare(
      "SELECT sender, COUNT(*), MAX(stream_ordering) FROM event_relations WHERE relates_to_id = ? "
      "AND rel_type = 'm.thread' GROUP BY sender");
  st.bind(root);
  std::vector<SenderSummary> out;
  while (st.step()) out.push_back(SenderSummary{st.text(0), st.int64(1), st.int64(2)});
  return out;
}

std::optional<std::string> latest_thread_reply(Connection& c, const std::string& root,
                                               const std::vector<std::string>& excluded) {
  auto st = c.prepare(
      "SELECT event_id, sender FROM event_relations WHERE relates_to_id = ? AND rel_type = 'm.thread' "
      "ORDER BY stream_ordering DESC LIMIT 1000");
  st.bind(root);
  while (st.step()) {
    auto sender = st.text(1);
    bool skip = false;
    for (const auto& x : excluded) skip = skip || x == sender;
    if (!skip) return st.text(0);
  }
  return std::nullopt;
}

std::vector<std::string> replacements(Connection& c, const std::string& parent, const std::string& sender,
                                      const std::string& type, int64_t limit) {
  auto st = c.prepare(
      "SELECT r.event_id FROM event_relations r JOIN events e ON e.event_id = r.event_id "
      "WHERE r.relates_to_id = ? AND r.rel_type = 'm.replace' AND r.sender = ? AND r.type = ? "
      "ORDER BY e.origin_server_ts DESC, r.event_id DESC LIMIT ?");
  st.bind(parent, sender, type, limit);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

std::vector<std::pair<std::string, std::string>> references(Connection& c, const std::string& parent, int64_t limit) {
  auto st = c.prepare(
      "SELECT event_id, sender FROM event_relations WHERE relates_to_id = ? AND rel_type = 'm.reference' "
      "ORDER BY stream_ordering LIMIT ?");
  st.bind(parent, limit);
  std::vector<std::pair<std::string, std::string>> out;
  while (st.step()) out.emplace_back(st.text(0), st.text(1));
  return out;
}

std::vector<ThreadRow> threads(Connection& c, const std::string& room_id, int64_t upto, int64_t before_exclusive,
                               const std::optional<std::string>& participant, int64_t limit) {
  std::string sql =
      "SELECT r.relates_to_id, MAX(r.stream_ordering) AS latest FROM event_relations r "
      "WHERE r.room_id = ? AND r.rel_type = 'm.thread' AND r.stream_ordering <= ? "
      "GROUP BY r.relates_to_id HAVING MAX(r.stream_ordering) < ?";
  if (participant) {
    sql += " AND (SUM(CASE WHEN r.sender = ? THEN 1 ELSE 0 END) > 0 OR EXISTS (SELECT 1 FROM events e "
           "WHERE e.event_id = r.relates_to_id AND e.sender = ?))";
  }
  sql += " ORDER BY latest DESC LIMIT ?";
  auto st = c.prepare(sql);
  st.bind(room_id, upto, before_exclusive);
  if (participant) st.bind(*participant, *participant);
  st.bind(limit);
  std::vector<ThreadRow> out;
  while (st.step()) out.push_back(ThreadRow{st.text(0), st.int64(1)});
  return out;
}

bool has_child_matching(Connection& c, const std::string& parent, const std::vector<std::string>& rel_types,
                        const std::vector<std::string>& senders) {
  std::string sql = "SELECT 1 FROM event_relations WHERE relates_to_id = ?";
  auto in_list = [&](const char* col, size_t n) {
    if (n == 0) return;
    sql += std::string(" AND ") + col + " IN (";
    for (size_t i = 0; i < n; ++i) sql += i ? ",?" : "?";
    sql += ")";
  };
  in_list("rel_type", rel_types.size());
  in_list("sender", senders.size());
  sql += " LIMIT 1";
  auto st = c.prepare(sql);
  st.bind(parent);
  for (const auto& t : rel_types) st.bind(t);
  for (const auto& s : senders) st.bind(s);
  return st.step();
}

}  // namespace trestle::storage::relations
