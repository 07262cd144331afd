#pragma once
// What Synapse's admin API for users reads and writes beyond the account itself: the user list
// with its filters and orders, shadow-bans, user types, per-user rate-limit overrides and the
// external (SSO) IDs of accounts.
#include "storage/database.hpp"

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace trestle::storage::user_admin {

// One account as the admin API shows it.
struct UserRow {
  std::string name;  // the user ID
  std::optional<std::string> user_type;
  bool is_guest = false;
  bool admin = false;
  bool deactivated = false;
  bool erased = false;
  bool shadow_banned = false;
  bool locked = false;
  bool suspended = false;
  std::optional<std::string> displayname;
  std::optional<std::string> avatar_url;
  std::optional<std::string> appservice_id;
  int64_t creation_ts_ms = 0;
  std::optional<int64_t> last_seen_ts;
  bool has_password = false;
};

// GET /_synapse/admin/v2|v3/users. Text filters match case-insensitively (`name`: the localpart or
// the display name contains it; `user_id`: the user ID contains it; `name` wins).
struct ListQuery {
  int64_t from = 0;
  int64_t limit = 100;
  std::optional<std::string> name;
  std::optional<std::string> user_id;
  bool guests = true;                 // false: no guests
  std::optional<bool> deactivated;    // none: both; true: only deactivated; false: none
  bool locked = false;                // false: no locked users
  std::optional<bool> admins;         // none: both
  std::vector<std::string> not_user_types;  // "" stands for "no type"
  std::string order_by = "name";      // one of the keys of order_columns()
  bool backwards = false;
};
// The order_by values the list accepts.
const std::vector<std::string>& order_by_values();
// The page and the number of accounts matching the filters.
std::pair<std::vector<UserRow>, int64_t> list_users(Connection& c, const ListQuery& q);
std::optional<UserRow> get_user(Connection& c, const std::string& user_id);

void set_shadow_banned(Connection& c, const std::string& user_id, bool banned);
bool is_shadow_banned(Connection& c, const std::string& user_id);
void set_user_type(Connection& c, const std::string& user_id, const std::optional<std::string>& user_type);
// Clears the deactivated flag (the password is set separately).
void set_reactivated(Connection& c, const std::string& user_id);

// Synapse's ratelimit_override: 0/0 exempts the user.
struct RateLimitOverride {
  int64_t messages_per_second = 0;
  int64_t burst_count = 0;
};
std::optional<RateLimitOverride> get_ratelimit(Connection& c, const std::string& user_id);
void set_ratelimit(Connection& c, const std::string& user_id, const RateLimitOverride& o);
void delete_ratelimit(Connection& c, const std::string& user_id);
std::vector<std::pair<std::string, RateLimitOverride>> all_ratelimits(Connection& c);

// External IDs (auth_provider, external_id) of the user.
std::vector<std::pair<std::string, std::string>> external_ids(Connection& c, const std::string& user_id);
std::optional<std::string> user_for_external_id(Connection& c, const std::string& auth_provider,
                                                const std::string& external_id);
// Records that the identity provider's `external_id` is `user_id` (kept if already recorded).
void add_external_id(Connection& c, const std::string& auth_provider, const std::string& external_id,
                     const std::string& user_id);
// Replaces the user's external IDs; false (nothing changed) when one belongs to another user.
bool replace_external_ids(Connection& c, const std::string& user_id,
                          const std::vector<std::pair<std::string, std::string>>& ids);

}  // namespace trestle::storage::user_admin
