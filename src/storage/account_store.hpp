#pragma once
// Users, devices and access tokens.
#include "storage/database.hpp"

#include <optional>
#include <string>
#include <vector>

namespace trestle::storage::accounts {

struct User {
  std::string user_id;
  std::optional<std::string> password_hash;
  bool deactivated = false;
  bool is_admin = false;
  std::optional<std::string> appservice_id;
  std::optional<std::string> displayname;
  std::optional<std::string> avatar_url;
  bool is_guest = false;
  bool locked = false;     // account locking (spec 1.12): requests get 401 M_USER_LOCKED
  bool suspended = false;  // account suspension (spec 1.13): most writes get 403 M_USER_SUSPENDED
};

struct Device {
  std::string user_id;
  std::string device_id;
  std::optional<std::string> display_name;
  std::optional<int64_t> last_seen_ts;
  std::optional<std::string> last_seen_ip;
};

struct TokenOwner {
  std::string user_id;
  std::optional<std::string> device_id;
  bool is_guest = false;
  std::optional<int64_t> valid_until_ms;    // none: the token does not expire
  std::optional<int64_t> refresh_token_id;  // the refresh token issued with it
  bool used = false;                        // used at least once (ends its predecessor refresh token)
  bool locked = false;                      // the user's account is locked
  bool shadow_banned = false;               // the user is shadow-banned (admin API)
};

struct RefreshToken {
  int64_t id = 0;
  std::string user_id;
  std::optional<std::string> device_id;
  std::optional<int64_t> expiry_ts;
  std::optional<int64_t> ultimate_session_expiry_ts;
  std::optional<int64_t> next_token_id;  // the refresh token issued when this one was last used
};

bool user_exists(Connection& c, const std::string& user_id);
void insert_user(Connection& c, const User& u, int64_t now_ms);
std::optional<User> get_user(Connection& c, const std::string& user_id);
void set_password_hash(Connection& c, const std::string& user_id, const std::optional<std::string>& hash);
// Guest upgrade: makes the guest `user_id` a full account with this password hash. False when the
// user is not (or no longer) a guest.
bool upgrade_guest(Connection& c, const std::string& user_id, const std::optional<std::string>& hash);
// The largest all-digit localpart of a user on `server_name` (0 when none): guests get the next.
int64_t max_numeric_localpart(Connection& c, const std::string& server_name);
// Replaces the hash only if it is still `old_hash` (a rehash must not undo a password change).
bool replace_password_hash(Connection& c, const std::string& user_id, const std::string& old_hash,
                           const std::string& new_hash);
void set_deactivated(Connection& c, const std::string& user_id);
// Erasure (deactivation with erase: true).
void set_erased(Connection& c, const std::string& user_id);
bool is_erased(Connection& c, const std::string& user_id);
void set_displayname(Connection& c, const std::string& user_id, const std::optional<std::string>& v);
void set_avatar_url(Connection& c, const std::string& user_id, const std::optional<std::string>& v);

// Returns false if the device already existed (its display name is then left alone).
bool insert_device(Connection& c, const Device& d);
std::optional<Device> get_device(Connection& c, const std::string& user_id, const std::string& device_id);
std::vector<Device> list_devices(Connection& c, const std::string& user_id);
void set_device_display_name(Connection& c, const std::string& user_id, const std::string& device_id,
                             const std::optional<std::string>& name);
// Records when and from which address the device was last used.
void touch_device(Connection& c, const std::string& user_id, const std::string& device_id, int64_t now_ms,
                  const std::string& ip);
// Deletes the device and its tokens.
void delete_device(Connection& c, const std::string& user_id, const std::string& device_id);

void insert_token(Connection& c, const std::string& token_hash, const std::string& user_id,
                  const std::optional<std::string>& device_id, int64_t now_ms,
                  std::optional<int64_t> valid_until_ms = std::nullopt,
                  std::optional<int64_t> refresh_token_id = std::nullopt);
std::optional<TokenOwner> find_token(Connection& c, const std::string& token_hash);
void delete_token(Connection& c, const std::string& token_hash);
// All tokens of the user; with `keep_hash`, all but that one. Devices go too (logout/all).
void delete_all_tokens(Connection& c, const std::string& user_id, const std::optional<std::string>& keep_hash);
void delete_all_devices(Connection& c, const std::string& user_id, const std::optional<std::string>& keep_device);

// Refresh tokens (stored hashed, like access tokens). Returns the new token's id.
int64_t insert_refresh_token(Connection& c, const std::string& token_hash, const std::string& user_id,
                             const std::optional<std::string>& device_id, std::optional<int64_t> expiry_ts,
                             std::optional<int64_t> ultimate_session_expiry_ts);
std::optional<RefreshToken> find_refresh_token(Connection& c, const std::string& token_hash);
void set_next_refresh_token(Connection& c, int64_t id, int64_t next_id);
// Deletes the refresh token and the access tokens issued with it.
void delete_refresh_token(Connection& c, int64_t id);
// Deletes the refresh tokens whose successor is `id` (and their access tokens): once the successor
// or its access token is used, the old one is spent. Returns how many went.
int64_t delete_refresh_predecessors(Connection& c, int64_t id);
// Marks the access token used; false if it already was.
bool mark_token_used(Connection& c, const std::string& token_hash);

void set_admin(Connection& c, const std::string& user_id, bool admin);
void set_locked(Connection& c, const std::string& user_id, bool locked);
void set_suspended(Connection& c, const std::string& user_id, bool suspended);
bool is_suspended(Connection& c, const std::string& user_id);

}  // namespace trestle::storage::accounts

namespace trestle::storage::accounts {
// Active users whose ID or display name contains `term` (case-insensitive), for the user directory.
std::vector<User> search_users(Connection& c, const std::string& term, int64_t limit);
}  // namespace trestle::storage::accounts
