#include "storage/registration_token_store.hpp"

namespace trestle::storage::registration_tokens {

namespace {

// A token row with its pending count: the unused, unexpired sessions holding it (the parameter
// is now).
constexpr const char* kSelect =
    "SELECT token, uses_allowed, completed, expiry_time, pending FROM ("
    " SELECT t.token, t.uses_allowed, t.completed, t.expiry_time,"
    "  (SELECT COUNT(*) FROM registration_token_sessions s"
    "   WHERE s.token = t.token AND s.used = 0 AND s.expires_ts > ?) AS pending"
    " FROM registration_tokens t) AS tokens ";

// Valid at the parameter (now): not expired, and uses left once the pending ones are counted.
constexpr const char* kValid =
    "(uses_allowed IS NULL OR uses_allowed > pending + completed) AND (expiry_time IS NULL OR expiry_time > ?)";

std::optional<int64_t> opt_int(const Statement& st, int col) {
  if (st.is_null(col)) return std::nullopt;
  return st.int64(col);
}

Token row(const Statement& st) {
  return Token{st.text(0), opt_int(st, 1), st.int64(4), st.int64(2), opt_int(st, 3)};
}

}  // namespace

std::vector<Token> list(Connection& c, std::optional<bool> valid, int64_t now_ms) {
  std::string sql = kSelect;
  if (valid) sql += *valid ? std::string("WHERE ") + kValid : std::string("WHERE NOT (") + kValid + ")";
  sql += " ORDER BY token";  // PostgreSQL has no creation order (SQLite's rowid) to list them in
  auto st = c.prepare(sql);
  st.bind(now_ms);
  if (valid) st.bind(now_ms);
  std::vector<Token> out;
  while (st.step()) out.push_back(row(st));
  return out;
}

std::optional<Token> get(Connection& c, const std::string& token, int64_t now_ms) {
  auto st = c.prepare(std::string(kSelect) + "WHERE token = ?");
  st.bind(now_ms, token);
  if (!st.step()) return std::nullopt;
  return row(st);
}

bool is_valid(Connection& c, const std::string& token, int64_t now_ms) {
  auto st = c.prepare(std::string(kSelect) + "WHERE token = ? AND " + kValid);
  st.bind(now_ms, token, now_ms);
  return st.step();
}

bool exists(Connection& c, const std::string& token) {
  auto st = c.prepare("SELECT 1 FROM registration_tokens WHERE token = ?");
  st.bind(token);
  return st.step();
}

bool create(Connection& c, const std::string& token, std::optional<int64_t> uses_allowed,
            std::optional<int64_t> expiry_time) {
  c.prepare("INSERT INTO registration_tokens (token, uses_allowed, completed, expiry_time) VALUES (?, ?, 0, ?) "
            "ON CONFLICT DO NOTHING")
      .bind(token, uses_allowed, expiry_time)
      .run();
  return c.changes() > 0;
}

bool update(Connection& c, const std::string& token, std::optional<std::optional<int64_t>> uses_allowed,
            std::optional<std::optional<int64_t>> expiry_time) {
  if (!exists(c, token)) return false;
  if (uses_allowed) {
    c.prepare("UPDATE registration_tokens SET uses_allowed = ? WHERE token = ?").bind(*uses_allowed, token).run();
  }
  if (expiry_time) {
    c.prepare("UPDATE registration_tokens SET expiry_time = ? WHERE token = ?").bind(*expiry_time, token).run();
  }
  return true;
}

bool remove(Connection& c, const std::string& token) {
  c.prepare("DELETE FROM registration_tokens WHERE token = ?").bind(token).run();
  bool removed = c.changes() > 0;
  c.prepare("DELETE FROM registration_token_sessions WHERE token = ?").bind(token).run();
  return removed;
}

std::optional<std::string> session_token(Connection& c, const std::string& session_id) {
  auto st = c.prepare("SELECT token FROM registration_token_sessions WHERE session_id = ?");
  st.bind(session_id);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

bool hold(Connection& c, const std::string& session_id, const std::string& token, int64_t expires_ts,
          int64_t now_ms) {
  c.prepare("DELETE FROM registration_token_sessions WHERE expires_ts <= ?").bind(now_ms).run();
  if (!is_valid(c, token, now_ms)) return false;
  c.prepare("INSERT INTO registration_token_sessions (session_id, token, expires_ts, used) VALUES (?, ?, ?, 0) "
            "ON CONFLICT (session_id) DO UPDATE SET token = excluded.token, expires_ts = excluded.expires_ts, used = 0")
      .bind(session_id, token, expires_ts)
      .run();
  return true;
}

void complete(Connection& c, const std::string& session_id) {
  auto token = session_token(c, session_id);
  if (!token) return;
  c.prepare("UPDATE registration_token_sessions SET used = 1 WHERE session_id = ? AND used = 0").bind(session_id).run();
  if (c.changes() == 0) return;
  c.prepare("UPDATE registration_tokens SET completed = completed + 1 WHERE token = ?").bind(*token).run();
}

void drop_all_holds(Connection& c) { c.exec("DELETE FROM registration_token_sessions"); }

}  // namespace trestle::storage::registration_tokens
