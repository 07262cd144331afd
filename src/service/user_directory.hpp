#pragma once
// User directory search (spec: POST /user_directory/search). Privacy-preserving, as Synapse by
// default: the searcher finds the local users who share a room with them and the users in
// public rooms (join rule `public`, or history `world_readable`); with
// user_directory.search_all_users every local user.
#include "config/config.hpp"
#include "storage/database.hpp"

#include <optional>
#include <string>
#include <vector>

namespace trestle::service {

struct DirectoryUser {
  std::string user_id;
  std::optional<std::string> display_name;
  std::optional<std::string> avatar_url;
};

class UserDirectory {
public:
  UserDirectory(const config::Config& cfg, storage::Database& db) : cfg_(cfg), db_(db) {}
  // Up to `limit` users matching `term` (user ID or display name, case-insensitive).
  std::vector<DirectoryUser> search(const std::string& searcher, const std::string& term, int64_t limit);

private:
  const config::Config& cfg_;
  storage::Database& db_;
};

}  // namespace trestle::service
