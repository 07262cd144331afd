#pragma once
// Synapse's admin API for users (docs/admin_api/user_admin_api.md): listing and looking up
// accounts, creating and changing them, admin flags, deactivation, passwords, devices, sessions,
// shadow-bans, rate-limit overrides, logging in as a user, and lookups by 3PID or external ID.
// The handlers (api/admin/users.cpp) parse requests; the rules and errors are here.
#include "service/homeserver.hpp"
#include "storage/user_admin_store.hpp"

#include <boost/json/object.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace trestle::service::admin {

// Who connects as the user, per device (the answer of the spec's GET /admin/whois and of Synapse's
// /_synapse/admin/v1/whois). 404 M_NOT_FOUND for an unknown user.
boost::json::object whois(Homeserver& hs, const std::string& user_id);

// Deactivates the account fully, as POST /account/deactivate and the admin API do: leaves every
// room, rejects pending invites, deletes devices, tokens, E2EE keys and pushers, and marks it
// deactivated (and erased with `erase`). Unbinding 3PIDs at identity servers (which waits on them)
// is left to the caller: ThreepidService::on_deactivate.
void deactivate_account(Homeserver& hs, const std::string& user_id, bool erase);

class UserAdmin {
public:
  // Applies the stored rate-limit overrides to the message rate limiter.
  explicit UserAdmin(Homeserver& hs);

  // GET /_synapse/admin/v2|v3/users: `users`, `total` and `next_token` when there is more.
  boost::json::object list(const storage::user_admin::ListQuery& q);
  // GET /_synapse/admin/v2/users/{userId}: 400 for a malformed or remote user ID, 404 if unknown.
  boost::json::object details(const std::string& user_id);
  // PUT /_synapse/admin/v2/users/{userId}: creates (201) or changes (200) the account; the answer
  // is its details.
  std::pair<int, boost::json::object> put_user(const Requester& admin, const std::string& user_id,
                                               const boost::json::object& body);

  bool is_admin(const std::string& user_id);
  // You may not demote yourself (400).
  void set_admin(const Requester& admin, const std::string& user_id, bool value);
  // 400 for a remote user, 404 for an unknown one; then deactivate_account.
  void check_deactivatable(const std::string& user_id);
  // POST /reset_password: 404 for an unknown user; 400 for a password over 512 bytes.
  void reset_password(const std::string& user_id, const std::string& new_password, bool logout_devices);

  boost::json::object joined_rooms(const std::string& user_id);
  boost::json::object pushers(const std::string& user_id);
  boost::json::object account_data(const std::string& user_id);

  boost::json::object devices(const std::string& user_id);
  boost::json::object device(const std::string& user_id, const std::string& device_id);
  void rename_device(const std::string& user_id, const std::string& device_id,
                     const std::optional<std::string>& display_name);
  // Logs the devices out (tokens and keys go); unknown device IDs are ignored.
  void delete_devices(const std::string& user_id, const std::vector<std::string>& device_ids);

  void set_shadow_banned(const std::string& user_id, bool banned);

  // {} when the user has no override, else messages_per_second and burst_count.
  boost::json::object ratelimit(const std::string& user_id);
  boost::json::object set_ratelimit(const std::string& user_id, int64_t messages_per_second, int64_t burst_count);
  void delete_ratelimit(const std::string& user_id);

  // An access token for the user with no device; not for oneself (400).
  std::string login_as(const Requester& admin, const std::string& user_id, std::optional<int64_t> valid_until_ms);

  // The user with this 3PID / external ID, or 404 "User not found".
  std::string user_for_threepid(const std::string& medium, const std::string& address);
  std::string user_for_external_id(const std::string& auth_provider, const std::string& external_id);

  // 400 M_INVALID_PARAM unless `user_id` is a valid user ID of this server (`what` says why).
  void require_local(const std::string& user_id, const std::string& what);
  // require_local, then 404 M_NOT_FOUND unless the account exists.
  void require_existing(const std::string& user_id, const std::string& what);

private:
  Homeserver& hs_;
};

}  // namespace trestle::service::admin
