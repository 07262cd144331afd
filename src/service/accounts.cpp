#include "service/accounts.hpp"

#include "core/clock.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/identifiers.hpp"
#include "storage/user_admin_store.hpp"

#include <algorithm>

namespace trestle::service {

namespace accounts = storage::accounts;

namespace {
// Tokens are looked up by hash, so the database never holds a usable token and the lookup does
// not compare secrets byte by byte.
std::string token_hash(const std::string& token) { return core::base64_encode(core::sha256(token)); }
// A UIA session's result when single sign-on named another user: its request is refused.
const std::string kSsoMismatch = "sso-user-mismatch";
}  // namespace

AccountService::AccountService(const config::Config& cfg, storage::Database& db, const AppServiceRegistry& appservices)
    : cfg_(cfg),
      db_(db),
      appservices_(appservices),
      login_limiter_(cfg.rc_login),
      registration_limiter_(cfg.rc_registration) {}

const AppService& AccountService::authenticate_appservice(const std::optional<std::string>& token) {
  if (!token || token->empty()) throw MatrixError(401, "M_MISSING_TOKEN", "Missing access token");
  const AppService* as = appservices_.by_token(*token);
  if (!as) throw MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown application service token");
  return *as;
}

Requester AccountService::authenticate(const std::optional<std::string>& token,
                                       const std::optional<std::string>& user_id,
                                       const std::optional<std::string>& device_id) {
  if (!token || token->empty()) throw MatrixError(401, "M_MISSING_TOKEN", "Missing access token");
  if (const AppService* as = appservices_.by_token(*token)) {
    Requester r;
    r.appservice = as;
    r.user_id = user_id.value_or(as->sender);
    if (!core::parse_user_id(r.user_id)) throw MatrixError::invalid_param("Invalid user_id '" + r.user_id + "'");
    if (!as->is_interested_in_user(r.user_id)) {
      throw MatrixError::forbidden("Application service cannot masquerade as this user (" + r.user_id + ")");
    }
    if (!user_exists(r.user_id)) {
      throw MatrixError::forbidden("Application service has not registered this user (" + r.user_id + ")");
    }
    if (device_id) {
      if (!get_device(r.user_id, *device_id)) {
        throw MatrixError(400, "M_UNKNOWN_DEVICE", "Device " + *device_id + " does not belong to " + r.user_id);
      }
      r.device_id = device_id;
    }
    return r;
  }
  std::string hash = token_hash(*token);
  std::optional<accounts::TokenOwner> owner;
  uint64_t generation = 0;
  {
    std::lock_guard lock(token_cache_mu_);
    if (auto it = token_cache_.find(hash); it != token_cache_.end()) owner = it->second;
    generation = token_cache_generation_;
  }
  if (!owner) {
    owner = db_.read([&](storage::Connection& c) { return accounts::find_token(c, hash); });
    std::lock_guard lock(token_cache_mu_);
    // Only if no token was revoked meanwhile: the read may predate the revocation.
    if (owner && generation == token_cache_generation_ && cache_tokens_) {
      if (token_cache_.size() >= kTokenCacheSize) token_cache_.clear();
      token_cache_.emplace(hash, *owner);
    }
  }
  if (!owner) throw MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown access token", {{"soft_logout", false}});
  // An expired token's session lives on: the client refreshes or logs in again to the device.
  if (owner->valid_until_ms && *owner->valid_until_ms <= core::now_ms()) {
    throw MatrixError(401, "M_UNKNOWN_TOKEN", "Access token has expired", {{"soft_logout", true}});
  }
  if (owner->refresh_token_id && !owner->used) first_use_of_refreshed_token(hash, *owner->refresh_token_id);
  Requester r;
  r.user_id = owner->user_id;
  r.device_id = owner->device_id;
  r.access_token_hash = hash;
  r.is_guest = owner->is_guest;
  r.locked = owner->locked;
  r.shadow_banned = owner->shadow_banned;
  return r;
}

void AccountService::first_use_of_refreshed_token(const std::string& hash, int64_t refresh_token_id) {
  db_.write([&](storage::Connection& c) {
    if (accounts::mark_token_used(c, hash)) accounts::delete_refresh_predecessors(c, refresh_token_id);
  });
  // The cached entry says "unused", and the spent refresh token's access tokens are revoked.
  forget_cached_tokens();
}

AccountService::Minted AccountService::mint_tokens(storage::Connection& c, const std::string& user_id,
                                                   const std::string& device_id, bool refresh, int64_t now_ms,
                                                   std::optional<std::optional<int64_t>> ultimate_expiry_ms) {
  auto cap = [](std::optional<int64_t> v, std::optional<int64_t> limit) -> std::optional<int64_t> {
    if (!limit) return v;
    if (!v) return limit;
    return std::min(*v, *limit);
  };
  auto plus = [now_ms](std::optional<int64_t> d) -> std::optional<int64_t> {
    if (!d) return std::nullopt;
    return *d > INT64_MAX - now_ms ? INT64_MAX : now_ms + *d;
  };
  std::optional<int64_t> ultimate =
      ultimate_expiry_ms ? *ultimate_expiry_ms : plus(cfg_.session_lifetime_ms);
  Minted m;
  m.access_token = core::random_string(32);
  if (refresh && cfg_.refreshable_access_token_lifetime_ms) {
    m.refresh_token = core::random_string(32);
    m.valid_until_ms = cap(plus(cfg_.refreshable_access_token_lifetime_ms), ultimate);
    m.refresh_token_id = accounts::insert_refresh_token(c, token_hash(*m.refresh_token), user_id, device_id,
                                                        cap(plus(cfg_.refresh_token_lifetime_ms), ultimate), ultimate);
  } else {
    m.valid_until_ms = cap(plus(cfg_.nonrefreshable_access_token_lifetime_ms), ultimate);
  }
  accounts::insert_token(c, token_hash(m.access_token), user_id, device_id, now_ms, m.valid_until_ms, m.refresh_token_id);
  return m;
}

void AccountService::add_minted(Session& s, const Minted& m, int64_t now_ms) {
  s.access_token = m.access_token;
  s.refresh_token = m.refresh_token;
  if (m.valid_until_ms) s.expires_in_ms = std::max<int64_t>(0, *m.valid_until_ms - now_ms);
}

RefreshedTokens AccountService::refresh(const std::string& refresh_token) {
  const int64_t now = core::now_ms();
  auto unknown = [](const std::string& why) {
    return MatrixError(401, "M_UNKNOWN_TOKEN", why, {{"soft_logout", true}});
  };
  RefreshedTokens out;
  db_.write([&](storage::Connection& c) {
    auto rt = accounts::find_refresh_token(c, token_hash(refresh_token));
    if (!rt) throw unknown("Unknown refresh token, or one already used");
    if (rt->expiry_ts && *rt->expiry_ts <= now) throw unknown("The refresh token has expired");
    if (rt->ultimate_session_expiry_ts && *rt->ultimate_session_expiry_ts <= now) {
      throw unknown("The session has expired and can no longer be refreshed");
    }
    auto u = accounts::get_user(c, rt->user_id);
    if (!u || u->deactivated) throw MatrixError(401, "M_UNKNOWN_TOKEN", "This account is gone", {{"soft_logout", false}});
    if (u->locked) throw MatrixError(401, "M_USER_LOCKED", "This account has been locked", {{"soft_logout", true}});
    // Refreshing this token spends the one it replaced; an earlier refresh of this token whose
    // result was never used is replaced by this one.
    accounts::delete_refresh_predecessors(c, rt->id);
    if (rt->next_token_id) accounts::delete_refresh_token(c, *rt->next_token_id);
    if (!cfg_.refreshable_access_token_lifetime_ms) throw unknown("Refresh tokens are disabled");
    auto m = mint_tokens(c, rt->user_id, rt->device_id.value_or(""), true, now, rt->ultimate_session_expiry_ts);
    accounts::set_next_refresh_token(c, rt->id, *m.refresh_token_id);
    out.access_token = m.access_token;
    out.refresh_token = *m.refresh_token;
    if (m.valid_until_ms) out.expires_in_ms = std::max<int64_t>(0, *m.valid_until_ms - now);
  });
  forget_cached_tokens();  // access tokens of spent refresh tokens may have gone
  return out;
}

bool AccountService::is_admin(const std::string& user_id) {
  auto u = get_user(user_id);
  return u && u->is_admin && !u->deactivated;
}

void AccountService::require_not_suspended(const std::string& user_id) {
  if (db_.read([&](storage::Connection& c) { return accounts::is_suspended(c, user_id); })) {
    throw MatrixError(403, "M_USER_SUSPENDED", "You cannot perform this action while suspended.");
  }
}

namespace {
// The checks both admin moderation endpoints share; the target's record.
accounts::User moderation_target(AccountService& a, const config::Config& cfg, const Requester& r,
                                 const std::string& target) {
  // Authorisation first, so non-admins learn nothing about which accounts exist.
  if (r.appservice || !a.is_admin(r.user_id)) throw MatrixError::forbidden("Requesting user is not a server administrator.");
  auto id = core::parse_user_id(target);
  if (!id) throw MatrixError::invalid_param("Invalid user ID");
  if (id->server_name != cfg.server_name) throw MatrixError::invalid_param("User does not belong to the local server.");
  auto u = a.get_user(target);
  if (!u || u->deactivated) throw MatrixError::not_found("User not found.");
  if (u->is_admin && target != r.user_id) throw MatrixError::forbidden("The target user is a server administrator.");
  return *u;
}
}  // namespace

bool AccountService::moderation_status(const Requester& r, const std::string& target, Moderation kind) {
  auto u = moderation_target(*this, cfg_, r, target);
  return kind == Moderation::lock ? u.locked : u.suspended;
}

bool AccountService::set_moderation(const Requester& r, const std::string& target, Moderation kind, bool value) {
  moderation_target(*this, cfg_, r, target);
  if (target == r.user_id) {
    throw MatrixError::forbidden(kind == Moderation::lock ? "You cannot lock your own account."
                                                          : "You cannot suspend your own account.");
  }
  db_.write([&](storage::Connection& c) {
    if (kind == Moderation::lock) accounts::set_locked(c, target, value);
    else accounts::set_suspended(c, target, value);
  });
  if (kind == Moderation::lock) forget_cached_tokens();  // cached token owners carry the lock
  return value;
}

std::string AccountService::check_new_localpart(const std::string& localpart, const AppService* registering_as) {
  if (localpart.empty() || !core::is_valid_new_localpart(localpart)) {
    throw MatrixError(400, "M_INVALID_USERNAME",
                      "User ID may only contain lower-case letters, digits and the characters ._=-/+");
  }
  std::string user_id = user_id_for(localpart);
  if (user_id.size() > 255) throw MatrixError(400, "M_INVALID_USERNAME", "User ID is too long");
  if (registering_as && !registering_as->is_interested_in_user(user_id)) {
    throw MatrixError(400, "M_EXCLUSIVE", "User ID is not in the application service's namespace");
  }
  // An exclusive namespace keeps out people and every other appservice (a non-exclusive
  // namespace overlapping it does not let another appservice create users there).
  for (const auto& other : appservices_.all()) {
    if (other.get() != registering_as && other->owns_user_exclusively(user_id)) {
      throw MatrixError(400, "M_EXCLUSIVE", "User ID is reserved by an application service");
    }
  }
  if (user_exists(user_id)) throw MatrixError(400, "M_USER_IN_USE", "User ID already taken");
  return user_id;
}

Session AccountService::register_user(const std::string& localpart, const std::optional<std::string>& password,
                                      const std::optional<std::string>& device_id,
                                      const std::optional<std::string>& initial_device_display_name,
                                      bool inhibit_login, const std::optional<std::string>& appservice_id,
                                      bool is_admin, bool refresh_token) {
  const AppService* as = appservice_id ? appservices_.by_id(*appservice_id) : nullptr;
  std::string user_id = check_new_localpart(localpart, as);
  std::optional<std::string> hash;
  if (password && !password->empty()) hash = hasher_.hash(*password);  // slow: outside the write lock
  Session s{user_id, std::nullopt, std::nullopt};
  std::string dev = device_id.value_or(core::random_upper(10));
  const int64_t now = core::now_ms();
  Minted minted;
  db_.write([&](storage::Connection& c) {
    if (accounts::user_exists(c, user_id)) throw MatrixError(400, "M_USER_IN_USE", "User ID already taken");
    accounts::User u;
    u.user_id = user_id;
    u.password_hash = hash;
    u.appservice_id = appservice_id;
    u.is_admin = is_admin;
    u.displayname = localpart;  // Synapse's default display name
    accounts::insert_user(c, u, core::now_ms());
    if (!inhibit_login) {
      accounts::insert_device(c, {user_id, dev, initial_device_display_name, core::now_ms(), std::nullopt});
      minted = mint_tokens(c, user_id, dev, refresh_token, now);
      devices_changed(c, user_id);
    }
  });
  if (!inhibit_login) {
    devices_changed_after(user_id);
    add_minted(s, minted, now);
    s.device_id = dev;
  }
  return s;
}

Session AccountService::register_guest(const std::optional<std::string>& initial_device_display_name) {
  if (!cfg_.allow_guest_access) throw MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled");
  std::string token = core::random_string(32);
  std::string dev = core::random_upper(10);
  std::string user_id = db_.write([&](storage::Connection& c) {
    // Like Synapse: the next number after the largest all-digit localpart, skipping taken IDs and
    // appservices' exclusive namespaces.
    int64_t n = accounts::max_numeric_localpart(c, cfg_.server_name) + 1;
    for (int tries = 0; tries < 1000; ++tries, ++n) {
      std::string localpart = std::to_string(n);
      std::string id = user_id_for(localpart);
      bool reserved = std::any_of(appservices_.all().begin(), appservices_.all().end(),
                                  [&](const auto& as) { return as->owns_user_exclusively(id); });
      if (reserved || accounts::user_exists(c, id)) continue;
      accounts::User u;
      u.user_id = id;
      u.is_guest = true;
      u.displayname = localpart;
      accounts::insert_user(c, u, core::now_ms());
      accounts::insert_device(c, {id, dev, initial_device_display_name, core::now_ms(), std::nullopt});
      accounts::insert_token(c, token_hash(token), id, dev, core::now_ms());
      devices_changed(c, id);
      return id;
    }
    throw MatrixError(500, "M_UNKNOWN", "No free guest user ID");
  });
  devices_changed_after(user_id);
  return Session{user_id, token, dev};
}

std::string AccountService::guest_upgrade_target(const std::string& guest_token, const std::string& localpart) {
  Requester guest = authenticate(guest_token);
  if (!guest.is_guest || guest.user_id != user_id_for(localpart)) {
    throw MatrixError::forbidden("Cannot register taken user ID without valid guest credentials for that user");
  }
  return guest.user_id;
}

Session AccountService::upgrade_guest(const std::string& guest_token, const std::string& localpart,
                                      const std::optional<std::string>& password,
                                      const std::optional<std::string>& device_id,
                                      const std::optional<std::string>& initial_device_display_name,
                                      bool inhibit_login) {
  std::string user_id = guest_upgrade_target(guest_token, localpart);
  std::optional<std::string> hash;
  if (password && !password->empty()) hash = hasher_.hash(*password);  // slow: outside the write lock
  std::string token = core::random_string(32);
  std::string dev = device_id.value_or(core::random_upper(10));
  db_.write([&](storage::Connection& c) {
    if (!accounts::upgrade_guest(c, user_id, hash)) throw MatrixError::forbidden("This user is no longer a guest");
    if (!inhibit_login) {
      accounts::delete_device(c, user_id, dev);  // a re-used device id gets a fresh token
      accounts::insert_device(c, {user_id, dev, initial_device_display_name, core::now_ms(), std::nullopt});
      accounts::insert_token(c, token_hash(token), user_id, dev, core::now_ms());
    }
    devices_changed(c, user_id);
  });
  devices_changed_after(user_id);
  forget_cached_tokens();  // the guest's tokens are cached as a guest's
  Session s{user_id, std::nullopt, std::nullopt};
  if (!inhibit_login) {
    s.access_token = token;
    s.device_id = dev;
  }
  return s;
}

void AccountService::ensure_appservice_senders() {
  for (const auto& as : appservices_.all()) {
    if (user_exists(as->sender)) continue;
    db_.write([&](storage::Connection& c) {
      accounts::User u;
      u.user_id = as->sender;
      u.appservice_id = as->id;
      u.displayname = as->sender_localpart;
      if (!accounts::user_exists(c, u.user_id)) accounts::insert_user(c, u, core::now_ms());
    });
  }
}

Session AccountService::login_appservice(const AppService& as, const std::string& user,
                                         const std::optional<std::string>& device_id,
                                         const std::optional<std::string>& initial_device_display_name,
                                         bool refresh_token) {
  std::string user_id = user_id_for(user);
  if (!core::parse_user_id(user_id)) throw MatrixError::invalid_param("Invalid user ID");
  if (!as.is_interested_in_user(user_id)) {
    throw MatrixError(400, "M_EXCLUSIVE", "User ID is not in the application service's namespace");
  }
  auto u = get_user(user_id);
  if (!u || u->deactivated) throw MatrixError::forbidden("User " + user_id + " has not been registered");
  return issue_session(user_id, device_id, initial_device_display_name, refresh_token);
}

Session AccountService::login_password(const std::string& user, const std::string& password,
                                       const std::optional<std::string>& device_id,
                                       const std::optional<std::string>& initial_device_display_name,
                                       bool refresh_token) {
  std::string user_id = user_id_for(user);
  auto u = get_user(user_id);
  std::optional<std::string> hash;
  if (u && !u->deactivated) hash = u->password_hash;
  // One message and the same cost for every failure, so logins do not reveal which accounts exist.
  if (!check_password(user_id, password, hash)) throw MatrixError(403, "M_FORBIDDEN", "Invalid username or password");
  if (u->locked) throw MatrixError(401, "M_USER_LOCKED", "This account has been locked", {{"soft_logout", true}});
  return issue_session(user_id, device_id, initial_device_display_name, refresh_token);
}

Session AccountService::login_verified_user(const std::string& user_id, const std::optional<std::string>& device_id,
                                            const std::optional<std::string>& initial_device_display_name,
                                            bool refresh_token) {
  auto u = get_user(user_id);
  if (!u || u->deactivated) throw MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated");
  if (u->locked) throw MatrixError(401, "M_USER_LOCKED", "This account has been locked", {{"soft_logout", true}});
  return issue_session(user_id, device_id, initial_device_display_name, refresh_token);
}

bool AccountService::check_password(const std::string& user_id, std::string_view password,
                                    const std::optional<std::string>& hash) {
  if (!hasher_.verify(password, hash)) return false;
  if (core::password_needs_rehash(*hash)) {
    try {
      std::string fresh = hasher_.hash(password);
      db_.write([&](storage::Connection& c) { accounts::replace_password_hash(c, user_id, *hash, fresh); });
    } catch (const MatrixError&) {
      // Too busy to rehash now: the next login will.
    }
  }
  return true;
}

Session AccountService::issue_session(const std::string& user_id, const std::optional<std::string>& device_id,
                                      const std::optional<std::string>& initial_device_display_name,
                                      bool refresh_token) {
  std::string dev = device_id.value_or(core::random_upper(10));
  const int64_t now = core::now_ms();
  Minted minted;
  db_.write([&](storage::Connection& c) {
    // Logging in again with an existing device id replaces that device's old tokens.
    if (!accounts::insert_device(c, {user_id, dev, initial_device_display_name, core::now_ms(), std::nullopt})) {
      accounts::delete_device(c, user_id, dev);
      accounts::insert_device(c, {user_id, dev, initial_device_display_name, core::now_ms(), std::nullopt});
    }
    minted = mint_tokens(c, user_id, dev, refresh_token, now);
    devices_changed(c, user_id);
  });
  devices_changed_after(user_id);
  if (device_id) forget_cached_tokens();  // a re-used device id revoked that device's old tokens
  Session s{user_id, std::nullopt, dev};
  add_minted(s, minted, now);
  return s;
}

void AccountService::logout(const Requester& r) {
  db_.write([&](storage::Connection& c) {
    if (r.device_id) accounts::delete_device(c, r.user_id, *r.device_id);
    accounts::delete_token(c, r.access_token_hash);
    devices_changed(c, r.user_id);
  });
  devices_changed_after(r.user_id);
  forget_cached_tokens();
}

void AccountService::logout_all(const Requester& r) {
  db_.write([&](storage::Connection& c) {
    accounts::delete_all_devices(c, r.user_id, std::nullopt);
    accounts::delete_all_tokens(c, r.user_id, std::nullopt);
    devices_changed(c, r.user_id);
  });
  devices_changed_after(r.user_id);
  forget_cached_tokens();
}

void AccountService::require_deactivation_auth(const Requester& r, const boost::json::object& body) {
  if (r.appservice) return;
  require_password_uia(r, body, "POST /account/deactivate");
}

void AccountService::require_password_uia(const Requester& r, const boost::json::object& body,
                                          const std::string& operation, bool single_use) {
  static const std::string kStage = "m.login.password";
  static const std::string kSso = "m.login.sso";
  const bool sso = cfg_.cas.enabled;
  auto flows_reply = [sso](const std::string& session, const std::set<std::string>& completed, bool with_completed) {
    boost::json::array flows{boost::json::object{{"stages", boost::json::array{"m.login.password"}}}};
    if (sso) flows.push_back(boost::json::object{{"stages", boost::json::array{"m.login.sso"}}});
    boost::json::object o{{"flows", std::move(flows)}, {"params", boost::json::object{}}, {"session", session}};
    if (with_completed) o["completed"] = boost::json::array(completed.begin(), completed.end());
    return o;
  };
  int64_t now = core::steady_ms();
  auto* auth = body.if_contains("auth");
  const boost::json::object* a = auth && auth->is_object() ? &auth->as_object() : nullptr;
  std::string sid;
  UiaSessions::Session session;
  auto* sid_value = a ? a->if_contains("session") : nullptr;
  if (sid_value && sid_value->is_string() && !sid_value->as_string().empty()) {
    sid = sid_value->as_string();
    auto found = uia_.get(sid, now);
    if (!found) throw MatrixError(400, "M_UNKNOWN", "Unknown session ID");
    if (found->user_id != r.user_id || found->operation != operation) {
      throw MatrixError::forbidden("Requested operation has changed during the UI authentication session");
    }
    // Single sign-on was passed by someone else than the user of this session.
    if (found->result == kSsoMismatch) throw MatrixError::forbidden("Single sign-on was completed by another user");
    session = std::move(*found);
  } else {
    sid = uia_.create(r.user_id, operation, now);
    session = {r.user_id, operation, {}, now, {}, {}};
  }
  auto* type = a ? a->if_contains("type") : nullptr;
  if (!type) {
    if (session.completed.count(kStage) || session.completed.count(kSso)) {  // a retry with the completed session
      if (single_use) uia_.remove(sid);
      return;
    }
    // The first 401 carries only flows/params/session: an errcode would mean a failed attempt.
    throw MatrixError(401, "", "User-interactive authentication required", flows_reply(sid, session.completed, false));
  }
  if (!type->is_string() || type->as_string() != kStage) {
    throw MatrixError(401, "M_FORBIDDEN", "Unsupported authentication type", flows_reply(sid, session.completed, true));
  }
  std::string user;
  if (auto* ident = a->if_contains("identifier"); ident && ident->is_object()) {
    if (auto* u = ident->as_object().if_contains("user"); u && u->is_string()) user = u->as_string().c_str();
  } else if (auto* u = a->if_contains("user"); u && u->is_string()) {
    user = u->as_string().c_str();
  }
  // Authenticating as someone else does not authorise this user's request.
  if (!user.empty() && user_id_for(user) != r.user_id) {
    throw MatrixError::forbidden("The identifier names another user than the one logged in");
  }
  auto* pw = a->if_contains("password");
  auto u = get_user(r.user_id);
  std::optional<std::string> hash;
  if (u && !u->deactivated) hash = u->password_hash;
  if (!pw || !pw->is_string() || !check_password(r.user_id, std::string_view(pw->as_string()), hash)) {
    throw MatrixError(401, "M_FORBIDDEN", "Invalid password", flows_reply(sid, session.completed, true));
  }
  if (single_use) uia_.remove(sid);
  else uia_.complete_stage(sid, kStage);
}

bool AccountService::complete_sso_uia(const std::string& session_id, const std::string& sso_user_id) {
  auto session = uia_.get(session_id, core::steady_ms());
  if (!session || session->operation == "POST /register") return false;
  if (session->user_id == sso_user_id) uia_.complete_stage(session_id, "m.login.sso");
  else uia_.set_result(session_id, kSsoMismatch);
  return true;
}

void AccountService::change_password(const Requester& r, const std::string& new_password, bool logout_devices) {
  std::string hash = hasher_.hash(new_password);
  db_.write([&](storage::Connection& c) {
    accounts::set_password_hash(c, r.user_id, hash);
    if (logout_devices) {
      accounts::delete_all_devices(c, r.user_id, r.device_id);
      accounts::delete_all_tokens(c, r.user_id, r.access_token_hash);
      devices_changed(c, r.user_id);
    }
  });
  if (logout_devices) {
    devices_changed_after(r.user_id);
    forget_cached_tokens();
  }
}

void AccountService::link_external_id(const std::string& auth_provider, const std::string& external_id,
                                      const std::string& user_id) {
  db_.write([&](storage::Connection& c) { storage::user_admin::add_external_id(c, auth_provider, external_id, user_id); });
}

std::string AccountService::issue_deviceless_token(const std::string& user_id, std::optional<int64_t> valid_until_ms) {
  std::string token = core::random_string(32);
  db_.write([&](storage::Connection& c) {
    accounts::insert_token(c, token_hash(token), user_id, std::nullopt, core::now_ms(), valid_until_ms);
  });
  return token;
}

void AccountService::set_password(const std::string& user_id, const std::optional<std::string>& new_password,
                                  bool logout_devices) {
  std::optional<std::string> hash;
  if (new_password) hash = hasher_.hash(*new_password);  // slow: outside the write lock
  db_.write([&](storage::Connection& c) {
    accounts::set_password_hash(c, user_id, hash);
    if (logout_devices) {
      accounts::delete_all_devices(c, user_id, std::nullopt);
      accounts::delete_all_tokens(c, user_id, std::nullopt);
      devices_changed(c, user_id);
    }
  });
  if (logout_devices) {
    devices_changed_after(user_id);
    forget_cached_tokens();
  }
}

void AccountService::deactivate(const std::string& user_id, bool erase) {
  db_.write([&](storage::Connection& c) {
    accounts::set_deactivated(c, user_id);
    if (erase) accounts::set_erased(c, user_id);
    accounts::delete_all_devices(c, user_id, std::nullopt);
    accounts::delete_all_tokens(c, user_id, std::nullopt);
    devices_changed(c, user_id);
  });
  devices_changed_after(user_id);
  forget_cached_tokens();
}

void AccountService::set_profile_field(const std::string& user_id, const std::string& field,
                                       const std::optional<std::string>& value) {
  db_.write([&](storage::Connection& c) {
    // Suspended users may not change their profile (spec: account suspension).
    if (accounts::is_suspended(c, user_id)) {
      throw MatrixError(403, "M_USER_SUSPENDED", "You cannot change your profile while suspended.");
    }
    if (field == "displayname") accounts::set_displayname(c, user_id, value);
    else accounts::set_avatar_url(c, user_id, value);
  });
}

std::optional<accounts::User> AccountService::get_user(const std::string& user_id) {
  return db_.read([&](storage::Connection& c) { return accounts::get_user(c, user_id); });
}

bool AccountService::user_exists(const std::string& user_id) {
  return db_.read([&](storage::Connection& c) { return accounts::user_exists(c, user_id); });
}

std::vector<accounts::Device> AccountService::list_devices(const std::string& user_id) {
  return db_.read([&](storage::Connection& c) { return accounts::list_devices(c, user_id); });
}

std::optional<accounts::Device> AccountService::get_device(const std::string& user_id, const std::string& device_id) {
  return db_.read([&](storage::Connection& c) { return accounts::get_device(c, user_id, device_id); });
}

void AccountService::set_device_display_name(const std::string& user_id, const std::string& device_id,
                                             const std::optional<std::string>& name) {
  db_.write([&](storage::Connection& c) {
    if (!accounts::get_device(c, user_id, device_id)) throw MatrixError::not_found("Unknown device");
    accounts::set_device_display_name(c, user_id, device_id, name);
    devices_changed(c, user_id);
  });
  devices_changed_after(user_id);
}

void AccountService::record_device_seen(const std::string& user_id, const std::string& device_id,
                                        const std::string& ip, bool committed) {
  const int64_t now = core::now_ms();
  std::string key = user_id + '\0' + device_id;
  {
    std::lock_guard lock(device_seen_mu_);
    auto it = device_seen_.find(key);
    if (it != device_seen_.end() && now - it->second.first < kDeviceSeenIntervalMs && it->second.second == ip) return;
    if (device_seen_.size() >= kTokenCacheSize) device_seen_.clear();
    device_seen_[key] = {now, ip};
  }
  if (committed) {
    db_.write([&](storage::Connection& c) { accounts::touch_device(c, user_id, device_id, now, ip); });
    return;
  }
  // Bookkeeping only: written with the next group, without holding the request (it may run on an
  // I/O thread); a failure must not fail the request either.
  db_.write_async([user_id, device_id, now, ip](storage::Connection& c) { accounts::touch_device(c, user_id, device_id, now, ip); },
                  [](std::exception_ptr) {});
}

bool AccountService::create_device(const std::string& user_id, const std::string& device_id,
                                   const std::optional<std::string>& display_name) {
  bool created = db_.write([&](storage::Connection& c) {
    bool created = accounts::insert_device(c, {user_id, device_id, display_name, core::now_ms(), std::nullopt});
    if (!created && display_name) accounts::set_device_display_name(c, user_id, device_id, display_name);
    devices_changed(c, user_id);
    return created;
  });
  devices_changed_after(user_id);
  return created;
}

void AccountService::delete_device(const std::string& user_id, const std::string& device_id) {
  db_.write([&](storage::Connection& c) {
    accounts::delete_device(c, user_id, device_id);
    devices_changed(c, user_id);
  });
  devices_changed_after(user_id);
  forget_cached_tokens();
}

void AccountService::forget_cached_tokens(bool tell_peers) {
  {
    std::lock_guard lock(token_cache_mu_);
    token_cache_.clear();
    ++token_cache_generation_;
  }
  if (tell_peers && tokens_listener_) tokens_listener_();
}

}  // namespace trestle::service
