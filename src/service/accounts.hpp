#pragma once
// Accounts, devices, access tokens and user-interactive authentication.
#include "config/config.hpp"
#include "service/appservice/registration.hpp"
#include "service/password_hasher.hpp"
#include "service/rate_limiter.hpp"
#include "service/requester.hpp"
#include "service/uia_sessions.hpp"
#include "storage/account_store.hpp"
#include "storage/database.hpp"

#include <boost/json/object.hpp>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <optional>
#include <set>
#include <string>

namespace trestle::service {

struct Session {
  std::string user_id;
  std::optional<std::string> access_token;  // none with inhibit_login
  std::optional<std::string> device_id;
  std::optional<std::string> refresh_token = std::nullopt;  // when the client asked for one
  std::optional<int64_t> expires_in_ms = std::nullopt;      // when the access token expires
};

// The tokens POST /refresh hands out.
struct RefreshedTokens {
  std::string access_token;
  std::string refresh_token;
  std::optional<int64_t> expires_in_ms;
};

// Account moderation by server admins (spec v1.18 admin lock / suspend).
enum class Moderation { lock, suspend };

class AccountService {
public:
  AccountService(const config::Config& cfg, storage::Database& db, const AppServiceRegistry& appservices);

  // Resolves an access token (raw, from header or query) to its Requester. Throws 401
  // M_MISSING_TOKEN / M_UNKNOWN_TOKEN. For an appservice's as_token this is identity assertion:
  // `user_id` (default: the sender) must be in its user namespaces (403 M_FORBIDDEN) and exist;
  // `device_id` must be one of that user's devices (400 M_UNKNOWN_DEVICE).
  Requester authenticate(const std::optional<std::string>& token, const std::optional<std::string>& user_id = {},
                         const std::optional<std::string>& device_id = {});
  // The appservice an as_token belongs to: 401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN otherwise.
  const AppService& authenticate_appservice(const std::optional<std::string>& token);

  // The user id a localpart names on this server, validated for registration:
  // 400 M_INVALID_USERNAME, 400 M_USER_IN_USE, and 400 M_EXCLUSIVE when an appservice registers
  // outside its namespaces or anyone else registers inside an exclusive one.
  std::string check_new_localpart(const std::string& localpart, const AppService* registering_as = nullptr);
  // Creates the appservices' sender users if they do not exist yet.
  void ensure_appservice_senders();
  const AppServiceRegistry& appservices() const { return appservices_; }

  // Creates the user (password may be empty for appservice users) and, unless inhibit_login,
  // a device and access token.
  Session register_user(const std::string& localpart, const std::optional<std::string>& password,
                        const std::optional<std::string>& device_id,
                        const std::optional<std::string>& initial_device_display_name, bool inhibit_login,
                        const std::optional<std::string>& appservice_id = std::nullopt, bool is_admin = false,
                        bool refresh_token = false);

  // POST /register?kind=guest: a guest account with the next free numeric localpart, a device and
  // an access token. 403 M_GUEST_ACCESS_FORBIDDEN unless allow_guest_access.
  Session register_guest(const std::optional<std::string>& initial_device_display_name);
  // Guest upgrade (POST /register with guest_access_token): the guest's user ID when the token is
  // a guest's and `localpart` names that guest, else 403 M_FORBIDDEN (401 for an unknown token).
  std::string guest_upgrade_target(const std::string& guest_token, const std::string& localpart);
  // Makes that guest a full account with `password`, keeping its user ID, rooms and data, and
  // (unless inhibit_login) gives it a new device and token.
  Session upgrade_guest(const std::string& guest_token, const std::string& localpart,
                        const std::optional<std::string>& password, const std::optional<std::string>& device_id,
                        const std::optional<std::string>& initial_device_display_name, bool inhibit_login);

  // m.login.application_service (MSC2778): `user` (localpart or user ID) must be in the
  // appservice's namespace (400 M_EXCLUSIVE) and registered (403 M_FORBIDDEN).
  Session login_appservice(const AppService& as, const std::string& user,
                           const std::optional<std::string>& device_id,
                           const std::optional<std::string>& initial_device_display_name, bool refresh_token = false);
  // m.login.password: `user` is a localpart or a full user ID. 403 M_FORBIDDEN on mismatch, and
  // as slow for an unknown user as for a known one. A hash with old parameters is replaced.
  // A locked account gets 401 M_USER_LOCKED (soft_logout) once the password is right.
  Session login_password(const std::string& user, const std::string& password,
                         const std::optional<std::string>& device_id,
                         const std::optional<std::string>& initial_device_display_name, bool refresh_token = false);
  // m.login.token: the user a login token named, unless deactivated since (403
  // M_USER_DEACTIVATED) or locked (401 M_USER_LOCKED).
  Session login_verified_user(const std::string& user_id, const std::optional<std::string>& device_id,
                              const std::optional<std::string>& initial_device_display_name, bool refresh_token);
  // Creates (or re-uses) a device and a fresh token for an already authorised user. With
  // `refresh_token` (and refresh tokens configured) also a refresh token, and the access token
  // expires after refreshable_access_token_lifetime; without, after
  // nonrefreshable_access_token_lifetime (if set). session_lifetime caps both.
  Session issue_session(const std::string& user_id, const std::optional<std::string>& device_id,
                        const std::optional<std::string>& initial_device_display_name, bool refresh_token = false);
  // POST /refresh: a new access token and refresh token for the same device. The old refresh
  // token stays usable until the new access token or refresh token is first used (then it and
  // the access tokens issued with it are revoked). An unknown, spent or expired refresh token:
  // 401 M_UNKNOWN_TOKEN with soft_logout; a locked account: 401 M_USER_LOCKED.
  RefreshedTokens refresh(const std::string& refresh_token);

  // Admin lock and suspension. The requester must be a server admin (403 M_FORBIDDEN, checked
  // before any lookup); the target a local user (400 M_INVALID_PARAM) that exists and is not
  // deactivated (404 M_NOT_FOUND), and not another admin (403). Setting it on oneself: 403.
  bool moderation_status(const Requester& r, const std::string& target, Moderation kind);
  bool set_moderation(const Requester& r, const std::string& target, Moderation kind, bool value);
  // 403 M_USER_SUSPENDED when the user is suspended (profile changes and other writes).
  void require_not_suspended(const std::string& user_id);
  // Whether the user is a server admin.
  bool is_admin(const std::string& user_id);

  // Admin API: a new access token for `user_id` with no device (POST /_synapse/admin/v1/users/{id}/login),
  // expiring at `valid_until_ms` when given.
  std::string issue_deviceless_token(const std::string& user_id, std::optional<int64_t> valid_until_ms);
  // Admin API: sets the user's password (none: removes it); with `logout_devices` every device
  // and token of the user goes.
  void set_password(const std::string& user_id, const std::optional<std::string>& new_password, bool logout_devices);
  // Single sign-on: the identity provider `auth_provider` (e.g. "cas") knows `user_id` as
  // `external_id` (Synapse's user_external_ids, for the admin API's lookups).
  void link_external_id(const std::string& auth_provider, const std::string& external_id, const std::string& user_id);
  // Cached token owners carry account flags (lock, shadow-ban): call after changing one.
  // `tell_peers`: the other processes of the deployment forget theirs too (set_tokens_listener).
  void forget_cached_tokens(bool tell_peers = true);
  // Called by forget_cached_tokens() that tell peers (several processes: service/cluster).
  void set_tokens_listener(std::function<void()> f) { tokens_listener_ = std::move(f); }
  // A worker looks every token up (a revocation on the main process reaches its cache only
  // milliseconds after main answered: a request in between must not pass with the token).
  void set_cache_tokens(bool on) { cache_tokens_ = on; }

  void logout(const Requester& r);
  void logout_all(const Requester& r);
  // User-interactive authentication with m.login.password for `operation` (a key naming what
  // the request does, e.g. "DELETE /devices/ABC"): returns once the session in `auth` (or `auth`
  // itself) has completed the password stage for this user and operation. Otherwise 401 with
  // the flows and session (with M_FORBIDDEN after a wrong password); 400 M_UNKNOWN for an
  // unknown session; 403 M_FORBIDDEN for a session of another user or operation, or an
  // identifier naming another user.
  // With `single_use` a completed session authorises one request only (POST /login/get_token must
  // re-prompt for every token).
  void require_password_uia(const Requester& r, const boost::json::object& body, const std::string& operation,
                            bool single_use = false);
  void change_password(const Requester& r, const std::string& new_password, bool logout_devices);
  // With `erase` (Synapse's GDPR erasure) the user's events are served pruned to anyone who was
  // not in the room when they were sent.
  void deactivate(const std::string& user_id, bool erase = false);
  // The m.login.sso stage of UIA session `session_id` was passed by `sso_user_id` (CAS ticket):
  // completed when that is the session's user; otherwise the session's request is refused (403).
  // False for an unknown session.
  bool complete_sso_uia(const std::string& session_id, const std::string& sso_user_id);
  // POST /account/deactivate: a user proves it with UIA (require_password_uia); an appservice
  // deactivating a user of its namespace (identity assertion checked that) needs none, as in Synapse.
  void require_deactivation_auth(const Requester& r, const boost::json::object& body);

  // field is "displayname" or "avatar_url"; nullopt clears it.
  void set_profile_field(const std::string& user_id, const std::string& field, const std::optional<std::string>& value);
  std::optional<storage::accounts::User> get_user(const std::string& user_id);
  bool user_exists(const std::string& user_id);

  std::vector<storage::accounts::Device> list_devices(const std::string& user_id);
  std::optional<storage::accounts::Device> get_device(const std::string& user_id, const std::string& device_id);
  void set_device_display_name(const std::string& user_id, const std::string& device_id,
                               const std::optional<std::string>& name);
  // Returns true when the device was created (appservice device management), false if it existed.
  bool create_device(const std::string& user_id, const std::string& device_id,
                     const std::optional<std::string>& display_name);
  void delete_device(const std::string& user_id, const std::string& device_id);
  // Records the device's last use (time and address) for GET /devices: written at most once a
  // minute per device (and at once when the address changes), so requests cost no write.
  // `committed`: returns once it is written (a new session: the login's reply and the next
  // GET /devices agree); otherwise written with a later group, holding no thread.
  void record_device_seen(const std::string& user_id, const std::string& device_id, const std::string& ip,
                          bool committed = false);

  // Device-list hooks (E2EE keys): `in_txn` runs inside the write that added, renamed or removed
  // one of the user's devices (to drop the keys of deleted devices and record the change in the
  // same transaction); `after` runs once it committed (to wake /sync).
  struct DeviceHooks {
    std::function<void(storage::Connection&, const std::string& user_id)> in_txn;
    std::function<void(const std::string& user_id)> after;
  };
  void set_device_hooks(DeviceHooks h) { device_hooks_ = std::move(h); }

  RateLimiter& login_limiter() { return login_limiter_; }
  PasswordHasher& password_hasher() { return hasher_; }
  RateLimiter& registration_limiter() { return registration_limiter_; }
  const config::Config& config() const { return cfg_; }

private:
  // A localpart or a full user ID, as /login accepts.
  std::string user_id_for(const std::string& user) const {
    return !user.empty() && user[0] == '@' ? user : "@" + user + ":" + cfg_.server_name;
  }

  // Verifies `password` against `hash` (none: a missing, deactivated or passwordless user, checked
  // against a dummy hash of the same cost) and rehashes a hash made with older parameters.
  bool check_password(const std::string& user_id, std::string_view password, const std::optional<std::string>& hash);

  // A new access token (and refresh token when asked for and configured) for the device,
  // inserted with `c`. `ultimate_expiry_ms`: the session's end, for a refresh.
  struct Minted {
    std::string access_token;
    std::optional<std::string> refresh_token;
    std::optional<int64_t> refresh_token_id;
    std::optional<int64_t> valid_until_ms;
  };
  Minted mint_tokens(storage::Connection& c, const std::string& user_id, const std::string& device_id, bool refresh,
                     int64_t now_ms, std::optional<std::optional<int64_t>> ultimate_expiry_ms = std::nullopt);
  static void add_minted(Session& s, const Minted& m, int64_t now_ms);
  // The first use of an access token issued by a refresh spends the refresh token it replaced.
  void first_use_of_refreshed_token(const std::string& token_hash, int64_t refresh_token_id);

  void devices_changed(storage::Connection& c, const std::string& user_id) {
    if (device_hooks_.in_txn) device_hooks_.in_txn(c, user_id);
  }
  void devices_changed_after(const std::string& user_id) {
    if (device_hooks_.after) device_hooks_.after(user_id);
  }
  DeviceHooks device_hooks_;

  const config::Config& cfg_;
  storage::Database& db_;
  const AppServiceRegistry& appservices_;
  // Access tokens seen recently, so most requests skip the database. Revoking any token clears
  // it (revocations are rare), and the generation stops a lookup that raced a revocation from
  // putting the revoked token back.
  static constexpr size_t kTokenCacheSize = 100000;
  std::mutex token_cache_mu_;
  std::unordered_map<std::string, storage::accounts::TokenOwner> token_cache_;
  uint64_t token_cache_generation_ = 0;
  std::function<void()> tokens_listener_;
  bool cache_tokens_ = true;
  static constexpr int64_t kDeviceSeenIntervalMs = 60000;
  std::mutex device_seen_mu_;
  std::unordered_map<std::string, std::pair<int64_t, std::string>> device_seen_;  // user\0device -> (ms, ip)
  RateLimiter login_limiter_;
  RateLimiter registration_limiter_;
  PasswordHasher hasher_;
  UiaSessions uia_;
};

}  // namespace trestle::service
