// GET /_matrix/client/v1/register/m.login.registration_token/validity (spec v1.2,
// registration_tokens.yaml): whether a registration token is valid now. Rate limited per client
// address (Synapse's rc_registration_token_validity), 403 when registration is disabled, as in
// Synapse: first the rate limit, then the registration check, then the token.
#include "api/handler_util.hpp"
#include "api/routes.hpp"
#include "service/rate_limiter.hpp"

#include <memory>

namespace trestle::api {

using boost::json::object;
using http::Auth;

void add_registration_token_client_routes(http::Router& r, service::Homeserver& hs) {
  auto limiter = std::make_shared<service::RateLimiter>(hs.config.rc_registration_token_validity);
  r.add("GET", "/_matrix/client/v1/register/m.login.registration_token/validity", Auth::none,
        [&hs, limiter](http::Request& req, const service::Requester&) {
          limiter->take(req.remote_address);
          if (!hs.config.enable_registration) throw MatrixError::forbidden("Registration has been disabled");
          auto token = req.query_param("token");
          if (!token) throw MatrixError::missing_param("Missing string query parameter token");
          return ok(object{{"valid", hs.registration_tokens.is_valid(*token)}});
        });
}

}  // namespace trestle::api
