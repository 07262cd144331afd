// Registration, login, logout and account management (spec: registration.yaml, login.yaml,
// logout.yaml, password_management.yaml, account_deactivation.yaml, whoami).
#include "api/appservice/offload.hpp"
#include "api/handler_util.hpp"
#include "service/admin/user_admin.hpp"
#include "api/routes.hpp"
#include "core/clock.hpp"
#include "core/crypto.hpp"

#include <algorithm>

namespace trestle::api {

using boost::json::array;
using boost::json::object;
using http::Auth;

namespace {

constexpr size_t kMaxPasswordBytes = 512;

object session_json(const service::Session& s, const std::string& server_name) {
  object o{{"user_id", s.user_id}, {"home_server", server_name}};
  if (s.access_token) o["access_token"] = *s.access_token;
  if (s.device_id) o["device_id"] = *s.device_id;
  if (s.refresh_token) o["refresh_token"] = *s.refresh_token;
  if (s.expires_in_ms) o["expires_in_ms"] = *s.expires_in_ms;
  return o;
}

// refresh_token: true in a /login or /register body: the client can refresh its access token.
bool wants_refresh_token(const object& body) { return optional_bool(body, "refresh_token").value_or(false); }

// A new session's device is seen now, from the address that logged in (GET /devices shows it).
object session_reply(service::Homeserver& hs, const http::Request& req, const service::Session& s) {
  if (s.device_id) hs.accounts.record_device_seen(s.user_id, *s.device_id, req.remote_address, true);
  return session_json(s, hs.config.server_name);
}

// The flows of a guest upgrade (the dummy stage only).
object dummy_flows() {
  return object{{"flows", array{object{{"stages", array{"m.login.dummy"}}}}},
                {"params", object{}},
                {"session", core::random_string(24)}};
}

bool is_appservice_login(const boost::json::object& body) {
  auto is_as = [](const boost::json::value* t) {
    return t && t->is_string() && t->as_string() == "m.login.application_service";
  };
  if (is_as(body.if_contains("type"))) return true;
  auto* auth = body.if_contains("auth");
  return auth && auth->is_object() && is_as(auth->as_object().if_contains("type"));
}

// m.login.email.identity (registration): the address a validated session proved, not yet used by
// an account. 401 with the flows when the session is not validated.
// The (medium, address) an m.login.email.identity stage's validated session proved; 401 with
// `flows` when the session is not validated.
std::pair<std::string, std::string> validated_threepid(service::Homeserver& hs, const object& auth,
                                                       const object& flows) {
  const auto* creds = auth.if_contains("threepid_creds");
  if (!creds) creds = auth.if_contains("threepidCreds");
  if (!creds || !creds->is_object()) throw MatrixError::missing_param("Missing 'threepid_creds'");
  try {
    return hs.threepids.validated_session(required_string(creds->as_object(), "sid"),
                                          required_string(creds->as_object(), "client_secret"));
  } catch (const MatrixError& e) {
    if (e.errcode() != "M_THREEPID_AUTH_FAILED") throw;
    throw MatrixError(401, e.errcode(), e.what(), flows);
  }
}

std::pair<std::string, std::string> registration_threepid(service::Homeserver& hs, const object& auth,
                                                          const object& flows) {
  auto threepid = validated_threepid(hs, auth, flows);
  if (hs.threepids.user_for(threepid.first, threepid.second)) {
    throw MatrixError(400, "M_THREEPID_IN_USE", "This email address is already in use");
  }
  return threepid;
}

// Login by 3PID (identifier m.id.thirdparty, or the deprecated top-level medium/address): the
// user the address belongs to. An unknown address fails as a wrong password does.
std::string login_threepid_user(service::Homeserver& hs, const object& o) {
  std::string medium = required_string(o, "medium");
  std::string address = required_string(o, "address");
  if (medium == "email") address = service::ThreepidService::canonical_email(address);
  auto user = hs.threepids.user_for(medium, address);
  // An id no account can have: login_password then pays the same hashing cost and says the same.
  return user.value_or("@\x01unknown:" + hs.config.server_name);
}

void check_password(const std::optional<std::string>& pw) {
  if (pw && pw->size() > kMaxPasswordBytes) throw MatrixError::invalid_param("Password too long");
}

// POST /account/password without an access token: a password reset, authorised by the
// m.login.email.identity stage (a validated /account/password/email/requestToken session) for an
// address of the account. Logs out every device unless logout_devices is false.
http::Reply reset_password_by_email(service::Homeserver& hs, const object& body) {
  if (!hs.config.email.enabled) throw MatrixError(401, "M_MISSING_TOKEN", "Missing access token");
  object flows{{"flows", array{object{{"stages", array{"m.login.email.identity"}}}}},
               {"params", object{}},
               {"session", core::random_string(24)}};
  const auto* auth = body.if_contains("auth");
  if (!auth || !auth->is_object()) return http::Reply{http::Response::json(flows, 401)};
  const auto* type = auth->as_object().if_contains("type");
  if (!type || !type->is_string() || type->as_string() != "m.login.email.identity") {
    throw MatrixError(401, "M_FORBIDDEN", "Unsupported authentication type", flows);
  }
  auto threepid = validated_threepid(hs, auth->as_object(), flows);
  auto user = hs.threepids.user_for(threepid.first, threepid.second);
  if (!user) throw MatrixError(400, "M_THREEPID_NOT_FOUND", "No account has this address");
  std::string new_password = required_string(body, "new_password");
  check_password(new_password);
  if (new_password.empty()) throw MatrixError(400, "M_WEAK_PASSWORD", "Password must not be empty");
  service::Requester owner;
  owner.user_id = *user;
  hs.accounts.change_password(owner, new_password, optional_bool(body, "logout_devices").value_or(true));
  return ok();
}

}  // namespace

void add_account_routes(http::Router& r, service::Homeserver& hs) {
  // With email configured, registration also offers a flow of m.login.email.identity alone.
  if (hs.config.email.enabled) {
    hs.registration.add_stage("m.login.email.identity", [&hs](const object& auth, const std::string&) {
      registration_threepid(hs, auth, object{});
    });
    hs.registration.add_flow({"m.login.email.identity"});
  }
  r.client("POST", "/register", Auth::none, [&hs](http::Request& req, const service::Requester&) {
    if (auto kind = req.query_param("kind"); kind && *kind == "guest") {
      // Guests need neither auth nor a username; registration may be closed to full accounts.
      auto body = req.json_object(true);
      auto display_name = optional_string(body, "initial_device_display_name");
      if (!hs.config.allow_guest_access) throw MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled");
      hs.accounts.registration_limiter().take(req.remote_address);
      return ok(session_json(hs.accounts.register_guest(display_name), hs.config.server_name));
    } else if (kind && *kind != "user") {
      throw MatrixError::invalid_param("Invalid kind");
    }
    auto body = req.json_object();
    auto username = optional_string(body, "username");
    auto password = optional_string(body, "password");
    auto device_id = optional_string(body, "device_id");
    auto display_name = optional_string(body, "initial_device_display_name");
    bool inhibit_login = optional_bool(body, "inhibit_login").value_or(false);
    wants_refresh_token(body);  // 400 unless a boolean
    check_password(password);
    if (is_appservice_login(body)) {
      // Appservices register password-less users in their namespace, whatever the
      // registration settings; `type` may sit at the top level (the spec's example) or in `auth`.
      const auto& as = hs.accounts.authenticate_appservice(access_token(req));
      if (!username) throw MatrixError::missing_param("Missing 'username'");
      if (as.rate_limited) hs.accounts.registration_limiter().take(req.remote_address);
      auto s = hs.accounts.register_user(*username, std::nullopt, device_id, display_name, inhibit_login, as.id, false,
                                         wants_refresh_token(body));
      return ok(session_reply(hs, req, s));
    }
    if (!hs.config.enable_registration) throw MatrixError::forbidden("Registration has been disabled");
    if (auto guest_token = optional_string(body, "guest_access_token")) {
      // Upgrading a guest: the username must be the guest's own localpart; only the dummy stage.
      if (!username) throw MatrixError::missing_param("Upgrading a guest needs its 'username'");
      hs.accounts.guest_upgrade_target(*guest_token, *username);
      if (hs.config.registration_requires_token) {
        // As in Synapse, an upgrade goes through the registration flows: the token first.
        auto sid = hs.registration.authenticate_guest_upgrade(body, req.remote_address);
        hs.accounts.registration_limiter().take(req.remote_address);
        auto s = hs.accounts.upgrade_guest(*guest_token, *username, password, device_id, display_name, inhibit_login);
        hs.registration.finish_guest_upgrade(sid);
        return ok(session_reply(hs, req, s));
      }
      auto* auth = body.if_contains("auth");
      if (!auth || !auth->is_object()) return http::Reply{http::Response::json(dummy_flows(), 401)};
      auto* type = auth->as_object().if_contains("type");
      if (!type || !type->is_string() || type->as_string() != "m.login.dummy") {
        throw MatrixError(401, "M_FORBIDDEN", "Unsupported authentication type", dummy_flows());
      }
      hs.accounts.registration_limiter().take(req.remote_address);
      auto s = hs.accounts.upgrade_guest(*guest_token, *username, password, device_id, display_name, inhibit_login);
      return ok(session_reply(hs, req, s));
    }
    // A captcha is checked at the captcha service: off the workers.
    return offload_if(hs.registration.calls_out(body), [&hs, body, remote = req.remote_address] {
      auto s = hs.registration.register_user(body, remote);
      // The address an m.login.email.identity stage proved becomes the account's.
      if (auto* auth = body.if_contains("auth"); auth && auth->is_object()) {
        auto* type = auth->as_object().if_contains("type");
        if (type && type->is_string() && type->as_string() == "m.login.email.identity") {
          auto threepid = registration_threepid(hs, auth->as_object(), object{});
          hs.threepids.add_threepid(s.user_id, threepid.first, threepid.second);
        }
      }
      if (s.device_id) hs.accounts.record_device_seen(s.user_id, *s.device_id, remote, true);
      return ok(session_json(s, hs.config.server_name));
    });
  });

  r.client("GET", "/register/available", Auth::none, [&hs](http::Request& req, const service::Requester&) {
    auto username = req.query_param("username");
    if (!username) throw MatrixError::missing_param("Missing 'username'");
    hs.accounts.check_new_localpart(*username);
    return ok(object{{"available", true}});
  });

  r.client("GET", "/login", Auth::none, [&hs](http::Request&, const service::Requester&) {
    array flows{object{{"type", "m.login.password"}}, object{{"type", "m.login.application_service"}}};
    if (hs.sso.cas_enabled()) {
      flows.push_back(object{{"type", "m.login.sso"},
                             {"identity_providers", array{object{{"id", "cas"}, {"name", "CAS"}}}}});
      flows.push_back(object{{"type", "m.login.cas"}});  // the older name, as Synapse lists it
    }
    // Login tokens come from single sign-on, or from a logged-in client (POST /login/get_token).
    const bool get_login_token = hs.config.login_via_existing_session.enabled;
    if (hs.sso.cas_enabled() || get_login_token) {
      object token_flow{{"type", "m.login.token"}};
      if (get_login_token) token_flow["get_login_token"] = true;
      flows.push_back(std::move(token_flow));
    }
    return ok(object{{"flows", std::move(flows)}});
  });

  r.client("POST", "/login", Auth::none, [&hs](http::Request& req, const service::Requester&) {
    auto body = req.json_object();
    std::string type = required_string(body, "type");
    const bool refresh = wants_refresh_token(body);
    const service::AppService* as = nullptr;
    if (type == "m.login.application_service") as = &hs.accounts.authenticate_appservice(access_token(req));
    if (!as || as->rate_limited) hs.accounts.login_limiter().take(req.remote_address);
    if (type == "m.login.token") {
      // A login token single sign-on or POST /login/get_token handed out (each works once).
      auto user = hs.sso.consume_login_token(required_string(body, "token"), core::steady_ms());
      if (!user) throw MatrixError(403, "M_FORBIDDEN", "Invalid login token");
      auto s = hs.accounts.login_verified_user(*user, optional_string(body, "device_id"),
                                               optional_string(body, "initial_device_display_name"), refresh);
      return ok(session_reply(hs, req, s));
    }
    if (type != "m.login.password" && !as) throw MatrixError(400, "M_UNKNOWN", "Unknown login type " + type);
    std::string user;
    if (auto* ident = body.if_contains("identifier")) {
      if (!ident->is_object()) throw MatrixError::bad_json("'identifier' must be an object");
      std::string id_type = required_string(ident->as_object(), "type");
      if (id_type == "m.id.thirdparty" && !as) {
        user = login_threepid_user(hs, ident->as_object());
      } else if (id_type != "m.id.user") {
        throw MatrixError(400, "M_UNKNOWN", "Unsupported identifier type " + id_type);
      } else {
        user = required_string(ident->as_object(), "user");
      }
    } else if (body.contains("medium") && !as) {
      user = login_threepid_user(hs, body);  // deprecated top-level medium/address
    } else if (auto u = optional_string(body, "user")) {
      user = *u;  // deprecated top-level form, still sent by older clients
    } else {
      throw MatrixError::missing_param("Missing 'identifier'");
    }
    if (as) {
      auto s = hs.accounts.login_appservice(*as, user, optional_string(body, "device_id"),
                                            optional_string(body, "initial_device_display_name"), refresh);
      return ok(session_reply(hs, req, s));
    }
    std::string password = required_string(body, "password");
    check_password(password);
    auto s = hs.accounts.login_password(user, password, optional_string(body, "device_id"),
                                        optional_string(body, "initial_device_display_name"), refresh);
    return ok(session_reply(hs, req, s));
  });

  // Authenticated by the refresh token in the body, not an access token (spec: refresh.yaml).
  r.client("POST", "/refresh", Auth::none, [&hs](http::Request& req, const service::Requester&) {
    auto body = req.json_object();
    auto t = hs.accounts.refresh(required_string(body, "refresh_token"));
    object o{{"access_token", t.access_token}, {"refresh_token", t.refresh_token}};
    if (t.expires_in_ms) o["expires_in_ms"] = *t.expires_in_ms;
    return ok(o);
  });

  r.client("POST", "/logout", Auth::required, [&hs](http::Request&, const service::Requester& who) {
    hs.accounts.logout(who);
    return ok();
  });
  r.client("POST", "/logout/all", Auth::required, [&hs](http::Request&, const service::Requester& who) {
    hs.accounts.logout_all(who);
    return ok();
  });

  r.client("GET", "/account/whoami", Auth::required, [](http::Request&, const service::Requester& who) {
    object o{{"user_id", who.user_id}, {"is_guest", who.is_guest}};
    if (who.device_id) o["device_id"] = *who.device_id;
    return ok(o);
  });

  r.client("POST", "/account/password", Auth::optional, [&hs](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    if (!who.authenticated()) return reset_password_by_email(hs, body);
    hs.accounts.require_password_uia(who, body, "POST /account/password");
    std::string new_password = required_string(body, "new_password");
    check_password(new_password);
    if (new_password.empty()) throw MatrixError(400, "M_WEAK_PASSWORD", "Password must not be empty");
    hs.accounts.change_password(who, new_password, optional_bool(body, "logout_devices").value_or(true));
    hs.push.password_changed(who.user_id, who.device_id);  // pushers of other access tokens go
    return ok();
  });

  r.client("POST", "/account/deactivate", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    auto body = req.json_object(true);
    hs.accounts.require_deactivation_auth(who, body);
    // Leaves every room, so the account does not linger as a member (shared with the admin API).
    service::admin::deactivate_account(hs, who.user_id, optional_bool(body, "erase").value_or(false));
    // Unbinding at identity servers waits on them: off the workers.
    return offload_if(true, [&hs, user = who.user_id, id_server = optional_string(body, "id_server")] {
      return ok(object{{"id_server_unbind_result", hs.threepids.on_deactivate(user, id_server)}});
    });
  });
}

}  // namespace trestle::api
