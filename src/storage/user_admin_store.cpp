#include "storage/user_admin_store.hpp"

#include <algorithm>
#include <map>

namespace trestle::storage::user_admin {

namespace {

const std::map<std::string, std::string>& order_columns() {
  static const std::map<std::string, std::string> m = {
      {"name", "u.user_id"},
      {"is_guest", "u.is_guest"},
      {"admin", "u.is_admin"},
      {"deactivated", "u.deactivated"},
      {"shadow_banned", "u.shadow_banned"},
      {"creation_ts", "u.created_ts"},
      {"displayname", "u.displayname"},
      {"avatar_url", "u.avatar_url"},
      {"user_type", "u.user_type"},
      {"locked", "u.locked"},
      {"last_seen_ts", "last_seen_ts"},
  };
  return m;
}

// LIKE pattern text with '%', '_' and '\' matching themselves (ESCAPE '\').
std::string like_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '%' || ch == '_' || ch == '\\') out += '\\';
    out += ch;
  }
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return s;
}

const char* kColumns =
    "SELECT u.user_id, u.user_type, u.is_guest, u.is_admin, u.deactivated, "
    "(SELECT 1 FROM erased_users e WHERE e.user_id = u.user_id) IS NOT NULL, u.shadow_banned, u.locked, u.suspended, "
    "u.displayname, u.avatar_url, u.appservice_id, u.created_ts, "
    "(SELECT MAX(d.last_seen_ts) FROM devices d WHERE d.user_id = u.user_id AND d.last_seen_ts > 0) AS last_seen_ts, "
    "u.password_hash IS NOT NULL ";

UserRow row_from(const Statement& st) {
  UserRow u;
  u.name = st.text(0);
  u.user_type = st.opt_text(1);
  u.is_guest = st.int64(2) != 0;
  u.admin = st.int64(3) != 0;
  u.deactivated = st.int64(4) != 0;
  u.erased = st.int64(5) != 0;
  u.shadow_banned = st.int64(6) != 0;
  u.locked = st.int64(7) != 0;
  u.suspended = st.int64(8) != 0;
  u.displayname = st.opt_text(9);
  u.avatar_url = st.opt_text(10);
  u.appservice_id = st.opt_text(11);
  u.creation_ts_ms = st.int64(12);
  if (!st.is_null(13)) u.last_seen_ts = st.int64(13);
  u.has_password = st.int64(14) != 0;
  return u;
}

}  // namespace

const std::vector<std::string>& order_by_values() {
  static const std::vector<std::string> v = [] {
    std::vector<std::string> out;
    for (const auto& [k, _] : order_columns()) out.push_back(k);
    return out;
  }();
  return v;
}

std::pair<std::vector<UserRow>, int64_t> list_users(Connection& c, const ListQuery& q) {
  std::string where = " WHERE true";
  std::vector<std::string> args;
  if (q.name) {
    // The localpart (between '@' and a ':') or the display name contains it: Synapse's pattern
    // ('@%name%:%'), as SQLite and PostgreSQL have no common function finding the first ':'.
    where += " AND (lower(u.user_id) LIKE ? ESCAPE '\\' OR lower(u.displayname) LIKE ? ESCAPE '\\')";
    const std::string escaped = like_escape(lower(*q.name));
    args.push_back("@%" + escaped + "%:%");
    args.push_back("%" + escaped + "%");
  } else if (q.user_id) {
    where += " AND lower(u.user_id) LIKE ? ESCAPE '\\'";
    args.push_back("%" + like_escape(lower(*q.user_id)) + "%");
  }
  if (!q.guests) where += " AND u.is_guest = 0";
  if (q.deactivated) where += *q.deactivated ? " AND u.deactivated = 1" : " AND u.deactivated = 0";
  if (!q.locked) where += " AND u.locked = 0";
  if (q.admins) where += *q.admins ? " AND u.is_admin = 1" : " AND u.is_admin = 0";
  if (!q.not_user_types.empty()) {
    bool no_type = false;
    std::string in;
    for (const auto& t : q.not_user_types) {
      if (t.empty()) {
        no_type = true;
        continue;
      }
      in += in.empty() ? "?" : ", ?";
      args.push_back(t);
    }
    if (!in.empty()) {
      where += no_type ? " AND u.user_type NOT IN (" + in + ")"
                       : " AND (u.user_type IS NULL OR u.user_type NOT IN (" + in + "))";
    } else if (no_type) {
      where += " AND u.user_type IS NOT NULL";
    }
  }
  auto bind_args = [&](Statement& st) {
    for (const auto& a : args) st.bind(a);
  };
  int64_t total = 0;
  {
    auto st = c.prepare("SELECT COUNT(*) FROM users u" + where);
    bind_args(st);
    if (st.step()) total = st.int64(0);
  }
  auto col = order_columns().find(q.order_by);
  std::string order = col == order_columns().end() ? "u.user_id" : col->second;
  // NULLs (no display name, never seen) first in ascending order on both engines, as SQLite sorts them.
  const char* dir = q.backwards ? " DESC NULLS LAST" : " ASC NULLS FIRST";
  auto st = c.prepare(std::string(kColumns) + "FROM users u" + where + " ORDER BY " + order + dir +
                      ", u.user_id ASC LIMIT ? OFFSET ?");
  bind_args(st);
  st.bind(q.limit, q.from);
  std::vector<UserRow> out;
  while (st.step()) out.push_back(row_from(st));
  return {std::move(out), total};
}

std::optional<UserRow> get_user(Connection& c, const std::string& user_id) {
  auto st = c.prepare(std::string(kColumns) + "FROM users u WHERE u.user_id = ?");
  st.bind(user_id);
  if (!st.step()) return std::nullopt;
  return row_from(st);
}

void set_shadow_banned(Connection& c, const std::string& user_id, bool banned) {
  c.prepare("UPDATE users SET shadow_banned = ? WHERE user_id = ?").bind(banned, user_id).run();
}

bool is_shadow_banned(Connection& c, const std::string& user_id) {
  return c.prepare("SELECT 1 FROM users WHERE user_id = ? AND shadow_banned = 1").bind(user_id).step();
}

void set_user_type(Connection& c, const std::string& user_id, const std::optional<std::string>& user_type) {
  c.prepare("UPDATE users SET user_type = ? WHERE user_id = ?").bind(user_type, user_id).run();
}

void set_reactivated(Connection& c, const std::string& user_id) {
  c.prepare("UPDATE users SET deactivated = 0 WHERE user_id = ?").bind(user_id).run();
  c.prepare("DELETE FROM erased_users WHERE user_id = ?").bind(user_id).run();
}

std::optional<RateLimitOverride> get_ratelimit(Connection& c, const std::string& user_id) {
  auto st = c.prepare("SELECT COALESCE(messages_per_second, 0), COALESCE(burst_count, 0) FROM ratelimit_override "
                      "WHERE user_id = ?");
  st.bind(user_id);
  if (!st.step()) return std::nullopt;
  return RateLimitOverride{st.int64(0), st.int64(1)};
}

void set_ratelimit(Connection& c, const std::string& user_id, const RateLimitOverride& o) {
  c.prepare("INSERT INTO ratelimit_override (user_id, messages_per_second, burst_count) VALUES (?, ?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET messages_per_second = excluded.messages_per_second, "
            "burst_count = excluded.burst_count")
      .bind(user_id, o.messages_per_second, o.burst_count)
      .run();
}

void delete_ratelimit(Connection& c, const std::string& user_id) {
  c.prepare("DELETE FROM ratelimit_override WHERE user_id = ?").bind(user_id).run();
}

std::vector<std::pair<std::string, RateLimitOverride>> all_ratelimits(Connection& c) {
  auto st = c.prepare("SELECT user_id, COALESCE(messages_per_second, 0), COALESCE(burst_count, 0) "
                      "FROM ratelimit_override");
  std::vector<std::pair<std::string, RateLimitOverride>> out;
  while (st.step()) out.emplace_back(st.text(0), RateLimitOverride{st.int64(1), st.int64(2)});
  return out;
}

std::vector<std::pair<std::string, std::string>> external_ids(Connection& c, const std::string& user_id) {
  auto st = c.prepare("SELECT auth_provider, external_id FROM user_external_ids WHERE user_id = ? "
                      "ORDER BY auth_provider, external_id");
  st.bind(user_id);
  std::vector<std::pair<std::string, std::string>> out;
  while (st.step()) out.emplace_back(st.text(0), st.text(1));
  return out;
}

std::optional<std::string> user_for_external_id(Connection& c, const std::string& auth_provider,
                                                const std::string& external_id) {
  auto st = c.prepare("SELECT user_id FROM user_external_ids WHERE auth_provider = ? AND external_id = ?");
  st.bind(auth_provider, external_id);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

void add_external_id(Connection& c, const std::string& auth_provider, const std::string& external_id,
                     const std::string& user_id) {
  c.prepare("INSERT INTO user_external_ids (auth_provider, external_id, user_id) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING")
      .bind(auth_provider, external_id, user_id)
      .run();
}

bool replace_external_ids(Connection& c, const std::string& user_id,
                          const std::vector<std::pair<std::string, std::string>>& ids) {
  for (const auto& [provider, id] : ids) {
    auto owner = user_for_external_id(c, provider, id);
    if (owner && *owner != user_id) return false;
  }
  c.prepare("DELETE FROM user_external_ids WHERE user_id = ?").bind(user_id).run();
  for (const auto& [provider, id] : ids) add_external_id(c, provider, id, user_id);
  return true;
}

}  // namespace trestle::storage::user_admin
