#include "storage/account_store.hpp"

#include <stdexcept>

namespace trestle::storage::accounts {

bool user_exists(Connection& c, const std::string& user_id) {
  return c.prepare("SELECT 1 FROM users WHERE user_id = ?").bind(user_id).step();
}

void insert_user(Connection& c, const User& u, int64_t now_ms) {
  c.prepare("INSERT INTO users (user_id, password_hash, created_ts, is_admin, appservice_id, displayname, is_guest) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)")
      .bind(u.user_id, u.password_hash, now_ms, u.is_admin, u.appservice_id, u.displayname, u.is_guest)
      .run();
}

std::optional<User> get_user(Connection& c, const std::string& user_id) {
  auto st = c.prepare("SELECT password_hash, deactivated, is_admin, appservice_id, displayname, avatar_url, is_guest, "
                      "locked, suspended FROM users WHERE user_id = ?");
  st.bind(user_id);
  if (!st.step()) return std::nullopt;
  User u;
  u.user_id = user_id;
  u.password_hash = st.opt_text(0);
  u.deactivated = st.int64(1) != 0;
  u.is_admin = st.int64(2) != 0;
  u.appservice_id = st.opt_text(3);
  u.displayname = st.opt_text(4);
  u.avatar_url = st.opt_text(5);
  u.is_guest = st.int64(6) != 0;
  u.locked = st.int64(7) != 0;
  u.suspended = st.int64(8) != 0;
  return u;
}

void set_password_hash(Connection& c, const std::string& user_id, const std::optional<std::string>& hash) {
  c.prepare("UPDATE users SET password_hash = ? WHERE user_id = ?").bind(hash, user_id).run();
}

bool upgrade_guest(Connection& c, const std::string& user_id, const std::optional<std::string>& hash) {
  c.prepare("UPDATE users SET password_hash = ?, is_guest = 0 WHERE user_id = ? AND is_guest = 1")
      .bind(hash, user_id)
      .run();
  return c.changes() > 0;
}

int64_t max_numeric_localpart(Connection& c, const std::string& server_name) {
  // '@' digits ':' server_name, at most 18 digits (to fit). The CASE keeps substr's length
  // positive (PostgreSQL rejects a negative one); trim() leaves nothing of a localpart of digits.
  auto st = c.prepare(
      "SELECT MAX(CAST(lp AS BIGINT)) FROM (SELECT CASE WHEN length(user_id) - length(?) - 2 BETWEEN 1 AND 18 "
      "AND substr(user_id, length(user_id) - length(?)) = ':' || ? "
      "THEN substr(user_id, 2, length(user_id) - length(?) - 2) END AS lp FROM users) l "
      "WHERE trim(lp, '0123456789') = ''");
  st.bind(server_name, server_name, server_name, server_name);
  if (!st.step() || st.is_null(0)) return 0;
  return st.int64(0);
}

bool replace_password_hash(Connection& c, const std::string& user_id, const std::string& old_hash,
                           const std::string& new_hash) {
  c.prepare("UPDATE users SET password_hash = ? WHERE user_id = ? AND password_hash = ?")
      .bind(new_hash, user_id, old_hash)
      .run();
  return c.changes() > 0;
}

void set_deactivated(Connection& c, const std::string& user_id) {
  c.prepare("UPDATE users SET deactivated = 1, password_hash = NULL, displayname = NULL, avatar_url = NULL "
            "WHERE user_id = ?")
      .bind(user_id)
      .run();
}

void set_erased(Connection& c, const std::string& user_id) {
  c.prepare("INSERT INTO erased_users (user_id) VALUES (?) ON CONFLICT DO NOTHING").bind(user_id).run();
}

bool is_erased(Connection& c, const std::string& user_id) {
  return c.prepare("SELECT 1 FROM erased_users WHERE user_id = ?").bind(user_id).step();
}

void set_displayname(Connection& c, const std::string& user_id, const std::optional<std::string>& v) {
  c.prepare("UPDATE users SET displayname = ? WHERE user_id = ?").bind(v, user_id).run();
}

void set_avatar_url(Connection& c, const std::string& user_id, const std::optional<std::string>& v) {
  c.prepare("UPDATE users SET avatar_url = ? WHERE user_id = ?").bind(v, user_id).run();
}

bool insert_device(Connection& c, const Device& d) {
  c.prepare("INSERT INTO devices (user_id, device_id, display_name, last_seen_ts, last_seen_ip) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
      .bind(d.user_id, d.device_id, d.display_name, d.last_seen_ts.value_or(0), d.last_seen_ip)
      .run();
  return c.changes() > 0;
}

namespace {
Device device_from_row(const Statement& st, const std::string& user_id) {
  Device d;
  d.user_id = user_id;
  d.device_id = st.text(0);
  d.display_name = st.opt_text(1);
  if (!st.is_null(2) && st.int64(2) != 0) d.last_seen_ts = st.int64(2);
  d.last_seen_ip = st.opt_text(3);
  return d;
}
}  // namespace

std::optional<Device> get_device(Connection& c, const std::string& user_id, const std::string& device_id) {
  auto st = c.prepare("SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices "
                      "WHERE user_id = ? AND device_id = ?");
  st.bind(user_id, device_id);
  if (!st.step()) return std::nullopt;
  return device_from_row(st, user_id);
}

std::vector<Device> list_devices(Connection& c, const std::string& user_id) {
  auto st = c.prepare("SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices "
                      "WHERE user_id = ? ORDER BY device_id");
  st.bind(user_id);
  std::vector<Device> out;
  while (st.step()) out.push_back(device_from_row(st, user_id));
  return out;
}

void set_device_display_name(Connection& c, const std::string& user_id, const std::string& device_id,
                             const std::optional<std::string>& name) {
  c.prepare("UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?")
      .bind(name, user_id, device_id)
      .run();
}

void touch_device(Connection& c, const std::string& user_id, const std::string& device_id, int64_t now_ms,
                  const std::string& ip) {
  c.prepare("UPDATE devices SET last_seen_ts = ?, last_seen_ip = ? WHERE user_id = ? AND device_id = ?")
      .bind(now_ms, ip, user_id, device_id)
      .run();
}

void delete_device(Connection& c, const std::string& user_id, const std::string& device_id) {
  c.prepare("DELETE FROM devices WHERE user_id = ? AND device_id = ?").bind(user_id, device_id).run();
  c.prepare("DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?").bind(user_id, device_id).run();
  c.prepare("DELETE FROM refresh_tokens WHERE user_id = ? AND device_id = ?").bind(user_id, device_id).run();
}

void insert_token(Connection& c, const std::string& token_hash, const std::string& user_id,
                  const std::optional<std::string>& device_id, int64_t now_ms, std::optional<int64_t> valid_until_ms,
                  std::optional<int64_t> refresh_token_id) {
  c.prepare("INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, valid_until_ms, refresh_token_id) "
            "VALUES (?, ?, ?, ?, ?, ?)")
      .bind(token_hash, user_id, device_id, now_ms, valid_until_ms, refresh_token_id)
      .run();
}

std::optional<TokenOwner> find_token(Connection& c, const std::string& token_hash) {
  auto st = c.prepare(
      "SELECT t.user_id, t.device_id, COALESCE(u.is_guest, 0), t.valid_until_ms, t.refresh_token_id, t.used, "
      "COALESCE(u.locked, 0), COALESCE(u.shadow_banned, 0) FROM access_tokens t LEFT JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = ?");
  st.bind(token_hash);
  if (!st.step()) return std::nullopt;
  TokenOwner o{st.text(0), st.opt_text(1), st.int64(2) != 0, std::nullopt, std::nullopt, st.int64(5) != 0,
               st.int64(6) != 0, st.int64(7) != 0};
  if (!st.is_null(3)) o.valid_until_ms = st.int64(3);
  if (!st.is_null(4)) o.refresh_token_id = st.int64(4);
  return o;
}

void delete_token(Connection& c, const std::string& token_hash) {
  // The refresh token issued with it goes too (logout ends the whole session).
  c.prepare("DELETE FROM refresh_tokens WHERE id = (SELECT refresh_token_id FROM access_tokens WHERE token_hash = ?)")
      .bind(token_hash)
      .run();
  c.prepare("DELETE FROM access_tokens WHERE token_hash = ?").bind(token_hash).run();
}

void delete_all_tokens(Connection& c, const std::string& user_id, const std::optional<std::string>& keep_hash) {
  c.prepare("DELETE FROM access_tokens WHERE user_id = ? AND token_hash IS DISTINCT FROM ?").bind(user_id, keep_hash).run();
  if (!keep_hash) c.prepare("DELETE FROM refresh_tokens WHERE user_id = ?").bind(user_id).run();
}

void delete_all_devices(Connection& c, const std::string& user_id, const std::optional<std::string>& keep_device) {
  c.prepare("DELETE FROM devices WHERE user_id = ? AND device_id IS DISTINCT FROM ?").bind(user_id, keep_device).run();
  c.prepare("DELETE FROM access_tokens WHERE user_id = ? AND device_id IS DISTINCT FROM ?").bind(user_id, keep_device).run();
  c.prepare("DELETE FROM refresh_tokens WHERE user_id = ? AND device_id IS DISTINCT FROM ?").bind(user_id, keep_device).run();
}

int64_t insert_refresh_token(Connection& c, const std::string& token_hash, const std::string& user_id,
                             const std::optional<std::string>& device_id, std::optional<int64_t> expiry_ts,
                             std::optional<int64_t> ultimate_session_expiry_ts) {
  auto st = c.prepare("INSERT INTO refresh_tokens (token_hash, user_id, device_id, expiry_ts, ultimate_session_expiry_ts) "
                      "VALUES (?, ?, ?, ?, ?) RETURNING id");
  st.bind(token_hash, user_id, device_id, expiry_ts, ultimate_session_expiry_ts);
  if (!st.step()) throw std::runtime_error("refresh token insert returned no id");
  const int64_t id = st.int64(0);
  st.run();  // to completion
  return id;
}

std::optional<RefreshToken> find_refresh_token(Connection& c, const std::string& token_hash) {
  auto st = c.prepare("SELECT id, user_id, device_id, expiry_ts, ultimate_session_expiry_ts, next_token_id "
                      "FROM refresh_tokens WHERE token_hash = ?");
  st.bind(token_hash);
  if (!st.step()) return std::nullopt;
  RefreshToken t;
  t.id = st.int64(0);
  t.user_id = st.text(1);
  t.device_id = st.opt_text(2);
  if (!st.is_null(3)) t.expiry_ts = st.int64(3);
  if (!st.is_null(4)) t.ultimate_session_expiry_ts = st.int64(4);
  if (!st.is_null(5)) t.next_token_id = st.int64(5);
  return t;
}

void set_next_refresh_token(Connection& c, int64_t id, int64_t next_id) {
  c.prepare("UPDATE refresh_tokens SET next_token_id = ? WHERE id = ?").bind(next_id, id).run();
}

void delete_refresh_token(Connection& c, int64_t id) {
  c.prepare("DELETE FROM access_tokens WHERE refresh_token_id = ?").bind(id).run();
  c.prepare("DELETE FROM refresh_tokens WHERE id = ?").bind(id).run();
}

int64_t delete_refresh_predecessors(Connection& c, int64_t id) {
  c.prepare("DELETE FROM access_tokens WHERE refresh_token_id IN (SELECT id FROM refresh_tokens WHERE next_token_id = ?)")
      .bind(id)
      .run();
  c.prepare("DELETE FROM refresh_tokens WHERE next_token_id = ?").bind(id).run();
  return c.changes();
}

bool mark_token_used(Connection& c, const std::string& token_hash) {
  c.prepare("UPDATE access_tokens SET used = 1 WHERE token_hash = ? AND used = 0").bind(token_hash).run();
  return c.changes() > 0;
}

void set_admin(Connection& c, const std::string& user_id, bool admin) {
  c.prepare("UPDATE users SET is_admin = ? WHERE user_id = ?").bind(admin, user_id).run();
}

void set_locked(Connection& c, const std::string& user_id, bool locked) {
  c.prepare("UPDATE users SET locked = ? WHERE user_id = ?").bind(locked, user_id).run();
}

void set_suspended(Connection& c, const std::string& user_id, bool suspended) {
  c.prepare("UPDATE users SET suspended = ? WHERE user_id = ?").bind(suspended, user_id).run();
}

bool is_suspended(Connection& c, const std::string& user_id) {
  return c.prepare("SELECT 1 FROM users WHERE user_id = ? AND suspended = 1").bind(user_id).step();
}

}  // namespace trestle::storage::accounts

namespace trestle::storage::accounts {

std::vector<User> search_users(Connection& c, const std::string& term, int64_t limit) {
  // LIKE with an escape character, so a '%' or '_' in the search term matches itself; lower() on
  // both sides, as SQLite's LIKE ignores ASCII case and PostgreSQL's does not.
  std::string pattern = "%";
  for (char ch : term) {
    if (ch == '%' || ch == '_' || ch == '\\') pattern += '\\';
    pattern += ch;
  }
  pattern += "%";
  auto st = c.prepare("SELECT user_id, displayname, avatar_url FROM users WHERE deactivated = 0 AND "
                      "(lower(user_id) LIKE lower(?) ESCAPE '\\' OR lower(displayname) LIKE lower(?) ESCAPE '\\') "
                      "ORDER BY user_id LIMIT ?");
  st.bind(pattern, pattern, limit);
  std::vector<User> out;
  while (st.step()) {
    User u;
    u.user_id = st.text(0);
    u.displayname = st.opt_text(1);
    u.avatar_url = st.opt_text(2);
    out.push_back(std::move(u));
  }
  return out;
}

}  // namespace trestle::storage::accounts
