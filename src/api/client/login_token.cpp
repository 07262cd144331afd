// POST /_matrix/client/v1/login/get_token (spec v1.7, login_token.yaml): a logged-in client gets a
// single-use, short-lived m.login.token to sign another client in. Served only when Synapse's
// login_via_existing_session.enabled is set (otherwise 404 M_UNRECOGNIZED, as in Synapse).
#include "api/handler_util.hpp"
#include "api/routes.hpp"
#include "core/clock.hpp"
#include "service/rate_limiter.hpp"

#include <memory>

namespace trestle::api {

using boost::json::object;
using http::Auth;

void add_login_token_routes(http::Router& r, service::Homeserver& hs) {
  const auto& cfg = hs.config.login_via_existing_session;
  if (!cfg.enabled) return;
  // Per user, with the login rate: each token is a new login (the spec suggests a strict limit).
  auto limiter = std::make_shared<service::RateLimiter>(hs.config.rc_login);
  r.add("POST", "/_matrix/client/v1/login/get_token", Auth::required,
        [&hs, &cfg, limiter](http::Request& req, const service::Requester& who) {
          auto body = req.json_object();
          // The spec: always re-prompt, so a completed session authorises one token only.
          if (cfg.require_ui_auth) hs.accounts.require_password_uia(who, body, "POST /login/get_token", true);
          limiter->take(who.user_id);
          std::string token = hs.sso.issue_login_token(who.user_id, core::steady_ms(), cfg.token_timeout_ms);
          return ok(object{{"login_token", token}, {"expires_in_ms", cfg.token_timeout_ms}});
        });
}

}  // namespace trestle::api
