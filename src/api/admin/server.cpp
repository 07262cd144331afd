// The server's own admin routes: its version, and shared-secret registration (the
// registration_shared_secret HMAC authenticates it, no access token).
#include "api/admin/admin_routes.hpp"
#include "api/admin/admin_util.hpp"
#include "core/version.hpp"
#include "service/admin/shared_secret_registration.hpp"

#include <memory>

namespace trestle::api::admin {

using boost::json::object;

void add_server_routes(http::Router& r, service::Homeserver& hs) {
  // As Synapse: no access token needed (synadm `version`).
  r.add("GET", "/_synapse/admin/v1/server_version", http::Auth::none,
        [](http::Request&, const service::Requester&) { return ok(object{{"server_version", core::kServerVersion}}); });

  // The nonces live as long as the routes (the process).
  auto shared = std::make_shared<service::admin::SharedSecretRegistration>(hs.accounts, hs.db);
  r.add("GET", "/_synapse/admin/v1/register", http::Auth::none,
        [shared](http::Request&, const service::Requester&) { return ok(object{{"nonce", shared->new_nonce()}}); });
  r.add("POST", "/_synapse/admin/v1/register", http::Auth::none,
        [shared, &hs](http::Request& req, const service::Requester&) {
          // Synapse answers "not enabled" before reading the body.
          if (hs.config.registration_shared_secret.empty()) {
            throw MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled");
          }
          auto s = shared->register_user(req.json_object());
          object o{{"user_id", s.user_id}, {"home_server", hs.config.server_name}};
          if (s.access_token) o["access_token"] = *s.access_token;
          if (s.device_id) o["device_id"] = *s.device_id;
          if (s.refresh_token) o["refresh_token"] = *s.refresh_token;
          if (s.expires_in_ms) o["expires_in_ms"] = *s.expires_in_ms;
          if (s.device_id) hs.accounts.record_device_seen(s.user_id, *s.device_id, req.remote_address);
          return ok(o);
        });
}

}  // namespace trestle::api::admin
