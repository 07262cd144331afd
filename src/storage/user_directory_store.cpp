#include "storage/user_directory_store.hpp"

#include "storage/sql_dialect.hpp"

namespace trestle::storage::user_directory {

namespace {

std::vector<accounts::User> users_of(Statement& st) {
  std::vector<accounts::User> out;
  while (st.step()) {
    accounts::User u;
    u.user_id = st.text(0);
    u.displayname = st.opt_text(1);
    u.avatar_url = st.opt_text(2);
    out.push_back(std::move(u));
  }
  return out;
}

}  // namespace

std::vector<accounts::User> search(Connection& c, const std::string& searcher, const std::string& term,
                                   int64_t limit, bool all_users) {
  // LIKE with an escape character, so a '%' or '_' in the search term matches itself.
  std::string pattern = "%";
  for (char ch : term) {
    if (ch == '%' || ch == '_' || ch == '\\') pattern += '\\';
    pattern += ch;
  }
  pattern += "%";
  // Public rooms make their members visible to everyone (the searcher included); a room the
  // searcher shares with someone makes that someone visible (Synapse's users_in_public_rooms and
  // users_who_share_private_rooms). The term matches ignoring ASCII case (SQLite's LIKE), on both
  // engines.
  static const std::string kMatches =
      "u.deactivated = 0 AND (lower(u.user_id) LIKE lower(?) ESCAPE '\\' OR lower(u.displayname) LIKE lower(?) "
      "ESCAPE '\\')";
  auto visible_rooms = [](Dialect d) {
    return "WITH public_rooms AS ("
           "  SELECT cs.room_id FROM current_state cs JOIN events e ON e.event_id = cs.event_id"
           "  WHERE cs.state_key = '' AND ("
           "    (cs.type = 'm.room.join_rules' AND " + sql::json_value(d, "e.json", {"content", "join_rule"}) +
           " = 'public') OR"
           "    (cs.type = 'm.room.history_visibility' AND " +
           sql::json_value(d, "e.json", {"content", "history_visibility"}) + " = 'world_readable'))),"
           "my_rooms AS (SELECT room_id FROM room_memberships WHERE user_id = ? AND membership = 'join') "
           "SELECT u.user_id, u.displayname, u.avatar_url FROM users u WHERE " + kMatches + " AND ("
           "  EXISTS (SELECT 1 FROM room_memberships m WHERE m.user_id = u.user_id AND m.membership = 'join'"
           "          AND m.room_id IN (SELECT room_id FROM public_rooms)) OR"
           "  (u.user_id != ? AND EXISTS (SELECT 1 FROM room_memberships m WHERE m.user_id = u.user_id"
           "          AND m.membership = 'join' AND m.room_id IN (SELECT room_id FROM my_rooms)))) "
           "ORDER BY u.user_id LIMIT ?";
  };
  static const std::string kVisibleSqlite = visible_rooms(Dialect::sqlite);
  static const std::string kVisiblePostgres = visible_rooms(Dialect::postgres);
  static const std::string kAllUsers =
      "SELECT u.user_id, u.displayname, u.avatar_url FROM users u WHERE " + kMatches + " ORDER BY u.user_id LIMIT ?";
  if (all_users) {
    auto st = c.prepare(kAllUsers);
    st.bind(pattern, pattern, limit);
    return users_of(st);
  }
  auto st = c.prepare(c.dialect() == Dialect::postgres ? kVisiblePostgres : kVisibleSqlite);
  st.bind(searcher, pattern, pattern, searcher, limit);
  return users_of(st);
}

}  // namespace trestle::storage::user_directory
