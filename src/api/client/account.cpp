// Registration, login, logout and account management (spec: registration.yaml, login.yaml,
// logout.yaml, password_management.yaml, account_deactivation.yaml, whoami).
#include "api/handler_util.hpp"
#include "api/routes.hpp"
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
  return o;
}

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

void check_password(const std::optional<std::string>& pw) {
  if (pw && pw->size() > kMaxPasswordBytes) throw MatrixError::invalid_param("Password too long");
}

}  // namespace

void add_account_routes(http::Router& r, service::Homeserver& hs) {
  r.client("POST", "/register", Auth::none, [&hs](http::Request& req, const service::Requester&) {
    if (auto kind = req.query_param("kind"); kind && *kind == "guest") {
      throw MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled");
    } else if (kind && *kind != "user") {
      throw MatrixError::invalid_param("Invalid kind");
    }
    auto body = req.json_object();
    auto username = optional_string(body, "username");
    auto password = optional_string(body, "password");
    auto device_id = optional_string(body, "device_id");
    auto display_name = optional_string(body, "initial_device_display_name");
    bool inhibit_login = optional_bool(body, "inhibit_login").value_or(false);
    check_password(password);
    if (is_appservice_login(body)) {
      // Appservices register password-less users in their namespace, whatever the
      // registration settings; `type` may sit at the top level (the spec's example) or in `auth`.
      const auto& as = hs.accounts.authenticate_appservice(access_token(req));
      if (!username) throw MatrixError::missing_param("Missing 'username'");
      if (as.rate_limited) hs.accounts.registration_limiter().take(req.remote_address);
      auto s = hs.accounts.register_user(*username, std::nullopt, device_id, display_name, inhibit_login, as.id);
      return ok(session_json(s, hs.config.server_name));
    }
    if (!hs.config.enable_registration) throw MatrixError::forbidden("Registration has been disabled");
    // Like Synapse, a taken or invalid name is reported before the client is sent through auth.
    std::string localpart = username.value_or("");
    if (username) hs.accounts.check_new_localpart(*username);
    auto* auth = body.if_contains("auth");
    // The first 401 carries only flows/params/session: errcode/error mean a failed stage attempt,
    // and clients (matrix-js-sdk's InteractiveAuth) show them to the user as an error.
    if (!auth || !auth->is_object()) return http::Reply{http::Response::json(dummy_flows(), 401)};
    auto* type = auth->as_object().if_contains("type");
    if (!type || !type->is_string() || type->as_string() != "m.login.dummy") {
      throw MatrixError(401, "M_FORBIDDEN", "Unsupported authentication type", dummy_flows());
    }
    hs.accounts.registration_limiter().take(req.remote_address);
    if (!username) {
      // No name asked for: pick a random lower-case one (valid under the strict grammar).
      localpart = core::random_string(12);
      std::transform(localpart.begin(), localpart.end(), localpart.begin(), ::tolower);
    }
    auto s = hs.accounts.register_user(localpart, password, device_id, display_name, inhibit_login);
    return ok(session_json(s, hs.config.server_name));
  });

  r.client("GET", "/register/available", Auth::none, [&hs](http::Request& req, const service::Requester&) {
    auto username = req.query_param("username");
    if (!username) throw MatrixError::missing_param("Missing 'username'");
    hs.accounts.check_new_localpart(*username);
    return ok(object{{"available", true}});
  });

  r.client("GET", "/login", Auth::none, [](http::Request&, const service::Requester&) {
    return ok(object{{"flows", array{object{{"type", "m.login.password"}}, object{{"type", "m.login.application_service"}}}}});
  });

  r.client("POST", "/login", Auth::none, [&hs](http::Request& req, const service::Requester&) {
    auto body = req.json_object();
    std::string type = required_string(body, "type");
    const service::AppService* as = nullptr;
    if (type == "m.login.application_service") as = &hs.accounts.authenticate_appservice(access_token(req));
    if (!as || as->rate_limited) hs.accounts.login_limiter().take(req.remote_address);
    if (type != "m.login.password" && !as) throw MatrixError(400, "M_UNKNOWN", "Unknown login type " + type);
    std::string user;
    if (auto* ident = body.if_contains("identifier")) {
      if (!ident->is_object()) throw MatrixError::bad_json("'identifier' must be an object");
      std::string id_type = required_string(ident->as_object(), "type");
      if (id_type != "m.id.user") throw MatrixError(400, "M_UNKNOWN", "Unsupported identifier type " + id_type);
      user = required_string(ident->as_object(), "user");
    } else if (auto u = optional_string(body, "user")) {
      user = *u;  // deprecated top-level form, still sent by older clients
    } else {
      throw MatrixError::missing_param("Missing 'identifier'");
    }
    if (as) {
      auto s = hs.accounts.login_appservice(*as, user, optional_string(body, "device_id"),
                                            optional_string(body, "initial_device_display_name"));
      return ok(session_json(s, hs.config.server_name));
    }
    std::string password = required_string(body, "password");
    check_password(password);
    auto s = hs.accounts.login_password(user, password, optional_string(body, "device_id"),
                                        optional_string(body, "initial_device_display_name"));
    return ok(session_json(s, hs.config.server_name));
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
    object o{{"user_id", who.user_id}, {"is_guest", false}};
    if (who.device_id) o["device_id"] = *who.device_id;
    return ok(o);
  });

  r.client("POST", "/account/password", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
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
    hs.accounts.require_password_uia(who, body, "POST /account/deactivate");
    // Leave every room first, so the account does not linger as a member.
    for (const auto& room : hs.rooms.joined_rooms(who.user_id)) {
      try {
        hs.rooms.leave(who, std::string(room.as_string()), std::nullopt);
      } catch (const MatrixError&) {
      }
    }
    hs.accounts.deactivate(who.user_id);
    return ok(object{{"id_server_unbind_result", "no-support"}});
  });

  r.client("GET", "/account/3pid", Auth::required, [](http::Request&, const service::Requester&) {
    return ok(object{{"threepids", array{}}});
  });
}

}  // namespace trestle::api
