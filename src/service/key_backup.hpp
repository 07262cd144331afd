#pragma once
// Server-side key backups (spec: key_backup.yaml, E2EE module "Server-side key backups"). The
// server stores what clients encrypted; it never decrypts. Every answer is about the Requester's
// user (for an appservice, the user it acts as).
#include "storage/database.hpp"

#include <boost/json/object.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace trestle::service {

// What the replacement rule looks at in a stored session key.
struct BackupKeyRank {
  int64_t first_message_index = 0;
  int64_t forwarded_count = 0;
  bool is_verified = false;
};
// The spec's rule for a key uploaded when one is stored for the session: a verified key beats an
// unverified one; then the lower first_message_index wins; then the lower forwarded_count. On a
// full tie the stored key stays.
bool should_replace_backup_key(const BackupKeyRank& stored, const BackupKeyRank& uploaded);

class KeyBackupService {
public:
  // Bounds on what one user may store (serialized JSON bytes / counts).
  static constexpr std::size_t kMaxAuthDataBytes = 16 * 1024;
  static constexpr std::size_t kMaxSessionDataBytes = 16 * 1024;
  static constexpr std::size_t kMaxKeysPerRequest = 5000;
  static constexpr std::size_t kMaxIdBytes = 255;  // room and session IDs

  explicit KeyBackupService(storage::Database& db) : db_(db) {}

  // POST /room_keys/version: the new version's number, as a string.
  std::string create_version(const std::string& user_id, const boost::json::object& body);
  // GET /room_keys/version[/{version}]: algorithm, auth_data, count, etag, version.
  boost::json::object get_version(const std::string& user_id, const std::optional<std::string>& version);
  void update_version(const std::string& user_id, const std::string& version, const boost::json::object& body);
  void delete_version(const std::string& user_id, const std::string& version);

  // PUT /room_keys/keys[/{roomId}[/{sessionId}]]: the body has the shape of the path's level.
  // Answers {etag, count}.
  boost::json::object put_keys(const std::string& user_id, const std::optional<std::string>& version,
                               const std::optional<std::string>& room_id, const std::optional<std::string>& session_id,
                               const boost::json::object& body);
  boost::json::object get_keys(const std::string& user_id, const std::optional<std::string>& version,
                               const std::optional<std::string>& room_id, const std::optional<std::string>& session_id);
  boost::json::object delete_keys(const std::string& user_id, const std::optional<std::string>& version,
                                  const std::optional<std::string>& room_id,
                                  const std::optional<std::string>& session_id);

private:
  storage::Database& db_;
};

}  // namespace trestle::service
