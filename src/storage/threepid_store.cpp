#include "storage/threepid_store.hpp"

namespace trestle::storage::threepids {

void upsert_threepid(Connection& c, const Threepid& t) {
  c.prepare("INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (medium, address) DO UPDATE SET user_id = excluded.user_id, "
            "validated_at = excluded.validated_at, added_at = excluded.added_at")
      .bind(t.user_id, t.medium, t.address, t.validated_at, t.added_at)
      .run();
}

std::vector<Threepid> user_threepids(Connection& c, const std::string& user_id) {
  auto st = c.prepare("SELECT medium, address, validated_at, added_at FROM user_threepids WHERE user_id = ? "
                      "ORDER BY added_at, medium, address");
  st.bind(user_id);
  std::vector<Threepid> out;
  while (st.step()) out.push_back(Threepid{user_id, st.text(0), st.text(1), st.int64(2), st.int64(3)});
  return out;
}

std::optional<std::string> user_for_threepid(Connection& c, const std::string& medium, const std::string& address) {
  auto st = c.prepare("SELECT user_id FROM user_threepids WHERE medium = ? AND address = ?");
  st.bind(medium, address);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

bool delete_threepid(Connection& c, const std::string& user_id, const std::string& medium, const std::string& address) {
  c.prepare("DELETE FROM user_threepids WHERE user_id = ? AND medium = ? AND address = ?")
      .bind(user_id, medium, address)
      .run();
  return c.changes() > 0;
}

void delete_user_threepids(Connection& c, const std::string& user_id) {
  c.prepare("DELETE FROM user_threepids WHERE user_id = ?").bind(user_id).run();
}

void add_id_server(Connection& c, const std::string& user_id, const std::string& medium, const std::string& address,
                   const std::string& id_server) {
  c.prepare("INSERT INTO user_threepid_id_server (user_id, medium, address, id_server) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING")
      .bind(user_id, medium, address, id_server)
      .run();
}

void remove_id_server(Connection& c, const std::string& user_id, const std::string& medium,
                      const std::string& address, const std::string& id_server) {
  c.prepare("DELETE FROM user_threepid_id_server WHERE user_id = ? AND medium = ? AND address = ? AND id_server = ?")
      .bind(user_id, medium, address, id_server)
      .run();
}

std::vector<std::string> id_servers(Connection& c, const std::string& user_id, const std::string& medium,
                                    const std::string& address) {
  auto st = c.prepare("SELECT id_server FROM user_threepid_id_server WHERE user_id = ? AND medium = ? AND address = ? "
                      "ORDER BY id_server");
  st.bind(user_id, medium, address);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

std::vector<Binding> user_bindings(Connection& c, const std::string& user_id) {
  auto st = c.prepare("SELECT medium, address, id_server FROM user_threepid_id_server WHERE user_id = ? "
                      "ORDER BY medium, address, id_server");
  st.bind(user_id);
  std::vector<Binding> out;
  while (st.step()) out.push_back(Binding{st.text(0), st.text(1), st.text(2)});
  return out;
}

namespace {
ValidationSession session_from_row(const Statement& st) {
  ValidationSession s;
  s.session_id = st.text(0);
  s.medium = st.text(1);
  s.address = st.text(2);
  s.client_secret = st.text(3);
  s.token = st.text(4);
  s.send_attempt = st.int64(5);
  if (!st.is_null(6)) s.validated_at = st.int64(6);
  s.created_ts = st.int64(7);
  return s;
}
constexpr const char* kSessionColumns =
    "SELECT session_id, medium, address, client_secret, token, send_attempt, validated_at, created_ts "
    "FROM threepid_validation_sessions ";
}  // namespace

void insert_session(Connection& c, const ValidationSession& s) {  // always unvalidated
  c.prepare("INSERT INTO threepid_validation_sessions (session_id, medium, address, client_secret, token, "
            "send_attempt, validated_at, created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
      .bind(s.session_id, s.medium, s.address, s.client_secret, s.token, s.send_attempt, std::optional<int64_t>(),
            s.created_ts)
      .run();
}

std::optional<ValidationSession> get_session(Connection& c, const std::string& session_id) {
  auto st = c.prepare(std::string(kSessionColumns) + "WHERE session_id = ?");
  st.bind(session_id);
  if (!st.step()) return std::nullopt;
  return session_from_row(st);
}

std::optional<ValidationSession> find_session(Connection& c, const std::string& client_secret,
                                              const std::string& medium, const std::string& address) {
  auto st = c.prepare(std::string(kSessionColumns) +
                      "WHERE client_secret = ? AND medium = ? AND address = ? ORDER BY created_ts DESC LIMIT 1");
  st.bind(client_secret, medium, address);
  if (!st.step()) return std::nullopt;
  return session_from_row(st);
}

void set_send_attempt(Connection& c, const std::string& session_id, int64_t send_attempt) {
  c.prepare("UPDATE threepid_validation_sessions SET send_attempt = ? WHERE session_id = ?")
      .bind(send_attempt, session_id)
      .run();
}

void set_validated(Connection& c, const std::string& session_id, int64_t now_ms) {
  c.prepare("UPDATE threepid_validation_sessions SET validated_at = ? WHERE session_id = ? AND validated_at IS NULL")
      .bind(now_ms, session_id)
      .run();
}

void delete_sessions_before(Connection& c, int64_t created_before_ms) {
  c.prepare("DELETE FROM threepid_validation_sessions WHERE created_ts < ?").bind(created_before_ms).run();
}

}  // namespace trestle::storage::threepids
