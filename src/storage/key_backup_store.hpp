#pragma once
// Server-side key backups (spec: key_backup.yaml): a user's backup versions and the encrypted
// megolm session keys stored in each. Versions are never reused: a deleted version stays as a
// tombstone row (deleted = 1) so the next one gets a higher number.
#include "storage/database.hpp"

#include <optional>
#include <string>
#include <vector>

namespace trestle::storage::key_backup {

struct Version {
  int64_t version = 0;
  std::string algorithm;
  std::string auth_data;  // JSON text
  int64_t etag = 0;       // bumped whenever the version's keys change
};

// The version (not deleted), or the user's latest live version when `version` is empty.
std::optional<Version> get_version(Connection& c, const std::string& user_id, std::optional<int64_t> version);
// True when the version exists, deleted or not.
bool version_ever_existed(Connection& c, const std::string& user_id, int64_t version);
// Creates the next version (one above any the user ever had) and returns its number.
int64_t create_version(Connection& c, const std::string& user_id, const std::string& algorithm,
                       const std::string& auth_data);
void update_auth_data(Connection& c, const std::string& user_id, int64_t version, const std::string& auth_data);
// Marks the version deleted and deletes its keys.
void delete_version(Connection& c, const std::string& user_id, int64_t version);
void bump_etag(Connection& c, const std::string& user_id, int64_t version);

struct SessionKey {
  std::string room_id;
  std::string session_id;
  int64_t first_message_index = 0;
  int64_t forwarded_count = 0;
  bool is_verified = false;
  std::string session_data;  // JSON text
};

int64_t count_keys(Connection& c, const std::string& user_id, int64_t version);
std::optional<SessionKey> get_key(Connection& c, const std::string& user_id, int64_t version,
                                  const std::string& room_id, const std::string& session_id);
void put_key(Connection& c, const std::string& user_id, int64_t version, const SessionKey& k);
// Keys of the version, of one room when `room_id` is set, ordered by room then session.
std::vector<SessionKey> get_keys(Connection& c, const std::string& user_id, int64_t version,
                                 const std::optional<std::string>& room_id);
// Deletes the keys of the version (of one room / one session when given); returns how many.
int64_t delete_keys(Connection& c, const std::string& user_id, int64_t version, const std::optional<std::string>& room_id,
                    const std::optional<std::string>& session_id);

}  // namespace trestle::storage::key_backup
