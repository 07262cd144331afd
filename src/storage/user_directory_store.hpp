#pragma once
// User directory queries.
#include "storage/account_store.hpp"
#include "storage/database.hpp"

#include <string>
#include <vector>

namespace trestle::storage::user_directory {

// Active local users whose ID or display name contains `term` (case-insensitive), ordered by
// user ID. Unless `all_users`: only users joined to a room `searcher` is joined to, or to a public
// room (current join rule `public` or history visibility `world_readable`).
std::vector<accounts::User> search(Connection& c, const std::string& searcher, const std::string& term,
                                   int64_t limit, bool all_users);

}  // namespace trestle::storage::user_directory
