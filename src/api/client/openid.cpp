// OpenID (spec: client-server openid.yaml, server-server openid.yaml): a token for a third party,
// and the federation API's userinfo that exchanges it for the user's ID.
#include "api/handler_util.hpp"
#include "api/routes.hpp"
#include "core/clock.hpp"

#include <algorithm>

namespace trestle::api {

using boost::json::object;
using http::Auth;

namespace {

// Synapse serves userinfo on listeners with the `openid` or `federation` resource only.
bool listener_serves_openid(const config::Config& cfg, unsigned short port) {
  return std::any_of(cfg.listeners.begin(), cfg.listeners.end(), [&](const config::Listener& l) {
    return l.port == port && std::any_of(l.resources.begin(), l.resources.end(),
                                         [](const std::string& r) { return r == "openid" || r == "federation"; });
  });
}

}  // namespace

void add_openid_routes(http::Router& r, service::Homeserver& hs) {
  r.client("POST", "/user/{}/openid/request_token", Auth::required,
           [&hs](http::Request& req, const service::Requester& who) {
             if (req.params[0] != who.user_id) throw MatrixError::forbidden("Cannot request tokens for other users");
             (void)req.json_object(true);  // a body, if any, must be a JSON object
             auto token = hs.openid.issue(who.user_id, core::steady_ms());
             return ok(object{{"access_token", token},
                              {"token_type", "Bearer"},
                              {"matrix_server_name", hs.config.server_name},
                              {"expires_in", service::OpenIdTokens::kLifetimeMs / 1000}});
           });

  r.add("GET", "/_matrix/federation/v1/openid/userinfo", Auth::none, [&hs](http::Request& req, const service::Requester&) {
    if (!listener_serves_openid(hs.config, req.local_port)) {
      throw MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request");
    }
    auto token = req.query_param("access_token");
    if (!token || token->empty()) throw MatrixError(401, "M_MISSING_TOKEN", "Missing access token");
    auto user = hs.openid.user_for(*token, core::steady_ms());
    if (!user) throw MatrixError(401, "M_UNKNOWN_TOKEN", "Access token unknown or expired");
    return ok(object{{"sub", *user}});
  });
}

}  // namespace trestle::api
