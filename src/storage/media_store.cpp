#include "storage/media_store.hpp"

#include "storage/sql_dialect.hpp"

#include <stdexcept>

namespace trestle::storage::media {

namespace {

constexpr const char* kColumns =
    "media_id, uploader, content_type, upload_name, size, sha256, created_ts, unused_expires_ts, authenticated, "
    "last_access_ts, quarantined_by, safe_from_quarantine";

Media read_row(Statement& st) {
  Media m;
  m.media_id = st.text(0);
  m.uploader = st.text(1);
  m.content_type = st.opt_text(2);
  m.upload_name = st.opt_text(3);
  if (!st.is_null(4)) m.size = st.int64(4);
  m.sha256 = st.opt_text(5);
  m.created_ts = st.int64(6);
  if (!st.is_null(7)) m.unused_expires_ts = st.int64(7);
  m.authenticated = st.int64(8) != 0;
  if (!st.is_null(9)) m.last_access_ts = st.int64(9);
  m.quarantined_by = st.opt_text(10);
  m.safe_from_quarantine = st.int64(11) != 0;
  return m;
}

// The admin API's sort keys and their columns; nullptr for anything else.
const char* media_order_column(const std::string& order_by) {
  static const std::pair<const char*, const char*> columns[] = {
      {"media_id", "media_id"},         {"upload_name", "upload_name"},
      {"created_ts", "created_ts"},     {"last_access_ts", "last_access_ts"},
      {"media_length", "size"},         {"media_type", "content_type"},
      {"quarantined_by", "quarantined_by"}, {"safe_from_quarantine", "safe_from_quarantine"}};
  for (const auto& [key, column] : columns) {
    if (order_by == key) return column;
  }
  return nullptr;
}

// Ascending with NULLs first, descending with NULLs last, on both engines (SQLite's default;
// PostgreSQL's is the other way round).
const char* direction(bool descending) { return descending ? " DESC NULLS LAST" : " ASC NULLS FIRST"; }

}  // namespace

void insert_media(Connection& c, const Media& m) {
  auto st = c.prepare(
      "INSERT INTO local_media (media_id, uploader, content_type, upload_name, size, sha256, created_ts, "
      "unused_expires_ts, authenticated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  st.bind(m.media_id, m.uploader, m.content_type, m.upload_name, m.size, m.sha256, m.created_ts, m.unused_expires_ts,
          m.authenticated);
  st.run();
}

std::optional<Media> get_media(Connection& c, const std::string& media_id) {
  auto st = c.prepare(
      "SELECT " + std::string(kColumns) + " FROM local_media WHERE media_id = ?");
  st.bind(media_id);
  if (!st.step()) return std::nullopt;
  return read_row(st);
}

bool complete_media(Connection& c, const std::string& media_id, const std::optional<std::string>& content_type,
                    const std::optional<std::string>& upload_name, int64_t size, const std::string& sha256) {
  c.prepare("UPDATE local_media SET content_type = ?, upload_name = ?, size = ?, sha256 = ?, "
            "unused_expires_ts = NULL WHERE media_id = ? AND size IS NULL")
      .bind(content_type, upload_name, size, sha256, media_id)
      .run();
  return c.changes() == 1;
}

int64_t count_pending(Connection& c, const std::string& uploader, int64_t now_ms) {
  auto st = c.prepare("SELECT COUNT(*) FROM local_media WHERE uploader = ? AND size IS NULL AND unused_expires_ts > ?");
  st.bind(uploader, now_ms);
  st.step();
  return st.int64(0);
}

void touch_media(Connection& c, const std::string& media_id, int64_t ts) {
  c.prepare("UPDATE local_media SET last_access_ts = ? WHERE media_id = ?").bind(ts, media_id).run();
}

void delete_media(Connection& c, const std::string& media_id) {
  c.prepare("DELETE FROM local_media WHERE media_id = ?").bind(media_id).run();
}

std::vector<Media> list_by_uploader(Connection& c, const std::string& uploader, const std::string& order_by,
                                    bool descending, int64_t offset, int64_t limit) {
  const char* column = media_order_column(order_by);
  if (!column) throw std::invalid_argument("unknown media order " + order_by);
  auto st = c.prepare("SELECT " + std::string(kColumns) + " FROM local_media WHERE uploader = ? ORDER BY " + column +
                      direction(descending) + ", media_id ASC LIMIT ? OFFSET ?");
  st.bind(uploader, limit, offset);
  std::vector<Media> out;
  while (st.step()) out.push_back(read_row(st));
  return out;
}

int64_t count_by_uploader(Connection& c, const std::string& uploader) {
  auto st = c.prepare("SELECT COUNT(*) FROM local_media WHERE uploader = ?");
  st.bind(uploader);
  st.step();
  return st.int64(0);
}

std::vector<std::string> ids_by_uploader(Connection& c, const std::string& uploader, bool only_unquarantined) {
  auto st = c.prepare(std::string("SELECT media_id FROM local_media WHERE uploader = ?") +
                      (only_unquarantined ? " AND quarantined_by IS NULL" : ""));
  st.bind(uploader);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

int64_t set_quarantined(Connection& c, const std::vector<std::string>& media_ids, const std::optional<std::string>& by) {
  int64_t changed = 0;
  // Quarantining leaves who did it first; releasing touches only quarantined media.
  const char* which = by ? " AND quarantined_by IS NULL AND safe_from_quarantine = 0" : " AND quarantined_by IS NOT NULL";
  for (const auto& id : media_ids) {
    auto find = c.prepare("SELECT sha256 FROM local_media WHERE media_id = ?");
    find.bind(id);
    if (!find.step()) continue;
    auto sha = find.opt_text(0);
    if (sha) {
      c.prepare(std::string("UPDATE local_media SET quarantined_by = ? WHERE sha256 = ?") + which).bind(by, *sha).run();
    } else {
      c.prepare(std::string("UPDATE local_media SET quarantined_by = ? WHERE media_id = ?") + which).bind(by, id).run();
    }
    changed += c.changes();
  }
  return changed;
}

void set_protected(Connection& c, const std::string& media_id, bool safe) {
  c.prepare("UPDATE local_media SET safe_from_quarantine = ? WHERE media_id = ?").bind(safe, media_id).run();
}

std::vector<std::string> unused_since(Connection& c, int64_t before_ts, int64_t size_gt) {
  auto st = c.prepare(
      "SELECT media_id FROM local_media WHERE (last_access_ts < ? OR (last_access_ts IS NULL AND created_ts < ?)) "
      "AND size > ? AND quarantined_by IS NULL AND safe_from_quarantine = 0 ORDER BY created_ts");
  st.bind(before_ts, before_ts, size_gt);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

std::vector<std::string> avatar_uris(Connection& c, const std::string& prefix) {
  std::vector<std::string> out;
  // Starting with the prefix, case and all (LIKE ignores ASCII case on SQLite, not on PostgreSQL).
  auto users = c.prepare("SELECT avatar_url FROM users WHERE substr(avatar_url, 1, length(?)) = ?");
  users.bind(prefix, prefix);
  while (users.step()) out.push_back(users.text(0));
  // Per-room member avatars and room avatars: the current state's events that name one.
  const Dialect d = c.dialect();
  auto state = c.prepare("SELECT v FROM (SELECT CASE cs.type WHEN 'm.room.avatar' THEN " +
                         sql::json_string(d, "e.json", {"content", "url"}) + " ELSE " +
                         sql::json_string(d, "e.json", {"content", "avatar_url"}) +
                         " END AS v FROM current_state cs JOIN events e ON e.event_id = cs.event_id "
                         "WHERE cs.type IN ('m.room.member', 'm.room.avatar') AND e.json LIKE ?) AS s "
                         "WHERE substr(v, 1, length(?)) = ?");
  state.bind("%" + prefix + "%", prefix, prefix);
  while (state.step()) out.push_back(state.text(0));
  return out;
}

std::vector<std::string> room_media_uris(Connection& c, const std::string& room_id) {
  const Dialect d = c.dialect();
  auto st = c.prepare("SELECT " + sql::json_string(d, "json", {"content", "url"}) + ", " +
                      sql::json_string(d, "json", {"content", "info", "thumbnail_url"}) +
                      " FROM events WHERE room_id = ? AND json LIKE '%mxc:%' ORDER BY stream_ordering DESC");
  st.bind(room_id);
  std::vector<std::string> out;
  while (st.step()) {
    for (int col = 0; col < 2; ++col) {
      if (!st.is_null(col)) out.push_back(st.text(col));
    }
  }
  return out;
}

std::pair<std::vector<UserUsage>, int64_t> usage_by_user(Connection& c, int64_t from_ts, std::optional<int64_t> until_ts,
                                                         const std::optional<std::string>& search_term,
                                                         const std::string& order_by, bool descending, int64_t offset,
                                                         int64_t limit) {
  const char* column = order_by == "media_length"  ? "media_length"
                       : order_by == "media_count" ? "media_count"
                       : order_by == "displayname" ? "displayname"
                       : order_by == "user_id"     ? "user_id"
                                                   : nullptr;
  if (!column) throw std::invalid_argument("unknown usage order " + order_by);
  // Only uploaded media counts (a pending create has no bytes yet). The term is found ignoring
  // ASCII case (SQLite's LIKE), on both engines.
  std::string base =
      " FROM local_media m LEFT JOIN users u ON u.user_id = m.uploader WHERE m.size IS NOT NULL AND m.created_ts >= ?"
      " AND (? IS NULL OR m.created_ts <= ?)"
      " AND (? IS NULL OR lower(m.uploader) LIKE '@%' || lower(?) || '%:%'"
      " OR lower(u.displayname) LIKE '%' || lower(?) || '%')"
      " GROUP BY m.uploader, u.displayname";
  auto bind_filters = [&](Statement& st) {
    st.bind(from_ts, until_ts, until_ts, search_term, search_term, search_term);
  };
  auto count = c.prepare("SELECT COUNT(*) FROM (SELECT m.uploader" + base + ") AS uploaders");
  bind_filters(count);
  count.step();
  int64_t total = count.int64(0);
  auto st = c.prepare("SELECT m.uploader AS user_id, u.displayname AS displayname, COUNT(*) AS media_count, "
                      "SUM(m.size) AS media_length" + base + " ORDER BY " + column + direction(descending) +
                      ", user_id ASC LIMIT ? OFFSET ?");
  bind_filters(st);
  st.bind(limit, offset);
  std::vector<UserUsage> out;
  while (st.step()) out.push_back({st.text(0), st.opt_text(1), st.int64(2), st.int64(3)});
  return {std::move(out), total};
}

}  // namespace trestle::storage::media
