// Synapse's registration token admin API (docs/admin_api/registration_tokens.md):
// /_synapse/admin/v1/registration_tokens[/new|/{token}]. Logic in service/registration_tokens.
#include "api/admin/admin_routes.hpp"
#include "api/admin/admin_util.hpp"

namespace trestle::api::admin {

using boost::json::array;
using boost::json::object;

namespace {

// Synapse's parse_boolean: "true" or "false", anything else 400.
std::optional<bool> valid_filter(const http::Request& req) {
  auto v = req.query_param("valid");
  if (!v) return std::nullopt;
  if (*v == "true") return true;
  if (*v == "false") return false;
  throw MatrixError::invalid_param("Boolean query parameter 'valid' must be one of ['true', 'false']");
}

}  // namespace

void add_registration_token_routes(http::Router& r, service::Homeserver& hs) {
  route(r, hs, "GET", "/v1/registration_tokens", [&hs](http::Request& req, const service::Requester&) {
    array tokens;
    for (const auto& t : hs.registration_tokens.list(valid_filter(req))) {
      tokens.push_back(service::RegistrationTokenService::to_json(t));
    }
    return ok(object{{"registration_tokens", std::move(tokens)}});
  });
  route(r, hs, "POST", "/v1/registration_tokens/new", [&hs](http::Request& req, const service::Requester&) {
    return ok(service::RegistrationTokenService::to_json(hs.registration_tokens.create(req.json_object())));
  });
  route(r, hs, "GET", "/v1/registration_tokens/{}", [&hs](http::Request& req, const service::Requester&) {
    return ok(service::RegistrationTokenService::to_json(hs.registration_tokens.get(req.params.at(0))));
  });
  route(r, hs, "PUT", "/v1/registration_tokens/{}", [&hs](http::Request& req, const service::Requester&) {
    auto body = req.json_object();
    return ok(service::RegistrationTokenService::to_json(hs.registration_tokens.update(req.params.at(0), body)));
  });
  route(r, hs, "DELETE", "/v1/registration_tokens/{}", [&hs](http::Request& req, const service::Requester&) {
    hs.registration_tokens.remove(req.params.at(0));
    return ok();
  });
}

}  // namespace trestle::api::admin
