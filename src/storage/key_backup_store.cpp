#include "storage/key_backup_store.hpp"

namespace trestle::storage::key_backup {

std::optional<Version> get_version(Connection& c, const std::string& user_id, std::optional<int64_t> version) {
  auto st = version ? c.prepare("SELECT version, algorithm, auth_data, etag FROM key_backup_versions "
                                "WHERE user_id = ? AND version = ? AND deleted = 0")
                    : c.prepare("SELECT version, algorithm, auth_data, etag FROM key_backup_versions "
                                "WHERE user_id = ? AND deleted = 0 ORDER BY version DESC LIMIT 1");
  if (version) st.bind(user_id, *version);
  else st.bind(user_id);
  if (!st.step()) return std::nullopt;
  return Version{st.int64(0), st.text(1), st.text(2), st.int64(3)};
}

bool version_ever_existed(Connection& c, const std::string& user_id, int64_t version) {
  auto st = c.prepare("SELECT 1 FROM key_backup_versions WHERE user_id = ? AND version = ?");
  st.bind(user_id, version);
  return st.step();
}

int64_t create_version(Connection& c, const std::string& user_id, const std::string& algorithm,
                       const std::string& auth_data) {
  auto st = c.prepare("SELECT COALESCE(MAX(version), 0) + 1 FROM key_backup_versions WHERE user_id = ?");
  st.bind(user_id);
  st.step();
  int64_t v = st.int64(0);
  c.prepare("INSERT INTO key_backup_versions (user_id, version, algorithm, auth_data, etag, deleted) "
            "VALUES (?, ?, ?, ?, 0, 0)")
      .bind(user_id, v, algorithm, auth_data)
      .run();
  return v;
}

void update_auth_data(Connection& c, const std::string& user_id, int64_t version, const std::string& auth_data) {
  c.prepare("UPDATE key_backup_versions SET auth_data = ? WHERE user_id = ? AND version = ?")
      .bind(auth_data, user_id, version)
      .run();
}

void delete_version(Connection& c, const std::string& user_id, int64_t version) {
  c.prepare("DELETE FROM key_backup_keys WHERE user_id = ? AND version = ?").bind(user_id, version).run();
  c.prepare("UPDATE key_backup_versions SET deleted = 1, auth_data = '{}' WHERE user_id = ? AND version = ?")
      .bind(user_id, version)
      .run();
}

void bump_etag(Connection& c, const std::string& user_id, int64_t version) {
  c.prepare("UPDATE key_backup_versions SET etag = etag + 1 WHERE user_id = ? AND version = ?")
      .bind(user_id, version)
      .run();
}

int64_t count_keys(Connection& c, const std::string& user_id, int64_t version) {
  auto st = c.prepare("SELECT COUNT(*) FROM key_backup_keys WHERE user_id = ? AND version = ?");
  st.bind(user_id, version);
  st.step();
  return st.int64(0);
}

std::optional<SessionKey> get_key(Connection& c, const std::string& user_id, int64_t version,
                                  const std::string& room_id, const std::string& session_id) {
  auto st = c.prepare("SELECT first_message_index, forwarded_count, is_verified, session_data FROM key_backup_keys "
                      "WHERE user_id = ? AND version = ? AND room_id = ? AND session_id = ?");
  st.bind(user_id, version, room_id, session_id);
  if (!st.step()) return std::nullopt;
  return SessionKey{room_id, session_id, st.int64(0), st.int64(1), st.int64(2) != 0, st.text(3)};
}

void put_key(Connection& c, const std::string& user_id, int64_t version, const SessionKey& k) {
  c.prepare("INSERT INTO key_backup_keys (user_id, version, room_id, session_id, first_message_index, "
            "forwarded_count, is_verified, session_data) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET "
            "first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count, "
            "is_verified = excluded.is_verified, session_data = excluded.session_data")
      .bind(user_id, version, k.room_id, k.session_id, k.first_message_index, k.forwarded_count, k.is_verified,
            k.session_data)
      .run();
}

std::vector<SessionKey> get_keys(Connection& c, const std::string& user_id, int64_t version,
                                 const std::optional<std::string>& room_id) {
  auto st = room_id ? c.prepare("SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, "
                                "session_data FROM key_backup_keys WHERE user_id = ? AND version = ? AND room_id = ? "
                                "ORDER BY session_id")
                    : c.prepare("SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, "
                                "session_data FROM key_backup_keys WHERE user_id = ? AND version = ? "
                                "ORDER BY room_id, session_id");
  if (room_id) st.bind(user_id, version, *room_id);
  else st.bind(user_id, version);
  std::vector<SessionKey> out;
  while (st.step()) {
    out.push_back(SessionKey{st.text(0), st.text(1), st.int64(2), st.int64(3), st.int64(4) != 0, st.text(5)});
  }
  return out;
}

int64_t delete_keys(Connection& c, const std::string& user_id, int64_t version, const std::optional<std::string>& room_id,
                    const std::optional<std::string>& session_id) {
  if (room_id && session_id) {
    c.prepare("DELETE FROM key_backup_keys WHERE user_id = ? AND version = ? AND room_id = ? AND session_id = ?")
        .bind(user_id, version, *room_id, *session_id)
        .run();
  } else if (room_id) {
    c.prepare("DELETE FROM key_backup_keys WHERE user_id = ? AND version = ? AND room_id = ?")
        .bind(user_id, version, *room_id)
        .run();
  } else {
    c.prepare("DELETE FROM key_backup_keys WHERE user_id = ? AND version = ?").bind(user_id, version).run();
  }
  return c.changes();
}

}  // namespace trestle::storage::key_backup
