// Server administration endpoints of the Client-Server API (spec: admin.yaml).
#include "api/handler_util.hpp"
#include "api/routes.hpp"
#include "core/identifiers.hpp"

namespace trestle::api {

using boost::json::array;
using boost::json::object;
using http::Auth;

void add_admin_routes(http::Router& r, service::Homeserver& hs) {
  // Who is connecting as a user, from which addresses: for server admins and the user themself.
  r.client("GET", "/admin/whois/{}", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    const std::string& user_id = req.params[0];
    if (!core::parse_user_id(user_id)) throw MatrixError::invalid_param("Invalid user ID");
    if (user_id != who.user_id) {
      auto me = hs.accounts.get_user(who.user_id);
      if (!me || !me->is_admin) throw MatrixError::forbidden("You are not a server admin");
    }
    if (!hs.accounts.user_exists(user_id)) throw MatrixError::not_found("Unknown user");
    object devices;
    for (const auto& d : hs.accounts.list_devices(user_id)) {
      devices[d.device_id] = object{{"sessions", array{object{{"connections", array{}}}}}};
    }
    for (const auto& c : hs.client_ips.connections(user_id)) {
      auto* dev = devices.if_contains(c.device_id);
      if (!dev) continue;  // a device deleted since
      auto& connections = dev->as_object()["sessions"].as_array()[0].as_object()["connections"].as_array();
      connections.push_back(object{{"ip", c.ip}, {"last_seen", c.last_seen_ms}, {"user_agent", c.user_agent}});
    }
    return ok(object{{"user_id", user_id}, {"devices", std::move(devices)}});
  });
}

}  // namespace trestle::api
