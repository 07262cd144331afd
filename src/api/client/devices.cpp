// Device management (spec: device_management.yaml).
#include "api/handler_util.hpp"
#include "api/routes.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace trestle::api {

using boost::json::array;
using boost::json::object;
using http::Auth;

namespace {
object device_json(const storage::accounts::Device& d) {
  object o{{"device_id", d.device_id}};
  o["display_name"] = d.display_name ? boost::json::value(*d.display_name) : boost::json::value(nullptr);
  // Always present, null when unknown, as Synapse answers (matrix-nio requires both keys).
  o["last_seen_ts"] = d.last_seen_ts ? boost::json::value(*d.last_seen_ts) : boost::json::value(nullptr);
  o["last_seen_ip"] = d.last_seen_ip ? boost::json::value(*d.last_seen_ip) : boost::json::value(nullptr);
  return o;
}
}  // namespace

void add_device_routes(http::Router& r, service::Homeserver& hs) {
  r.client("GET", "/devices", Auth::required, [&hs](http::Request&, const service::Requester& who) {
    array devices;
    for (const auto& d : hs.accounts.list_devices(who.user_id)) devices.push_back(device_json(d));
    return ok(object{{"devices", std::move(devices)}});
  });
  r.client("GET", "/devices/{}", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    auto d = hs.accounts.get_device(who.user_id, req.params[0]);
    if (!d) throw MatrixError::not_found("Device not found");
    return ok(device_json(*d));
  });
  r.client("PUT", "/devices/{}", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    auto body = req.json_object(true);
    auto name = optional_string(body, "display_name");
    if (who.appservice) {
      // Appservices create their users' devices this way (spec v1.17, MSC4190): 201 when new.
      bool created = hs.accounts.create_device(who.user_id, req.params[0], name);
      return http::Reply(http::Response::json(object{}, created ? 201 : 200));
    }
    if (!hs.accounts.get_device(who.user_id, req.params[0])) throw MatrixError::not_found("Device not found");
    if (body.contains("display_name")) hs.accounts.set_device_display_name(who.user_id, req.params[0], name);
    return ok();
  });
  r.client("DELETE", "/devices/{}", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    auto body = req.json_object(true);
    if (!hs.accounts.get_device(who.user_id, req.params[0])) throw MatrixError::not_found("Device not found");
    // Appservices need no UIA (MSC4190). The UIA session is bound to this one device.
    if (!who.appservice) hs.accounts.require_password_uia(who, body, "DELETE /devices/" + req.params[0]);
    hs.accounts.delete_device(who.user_id, req.params[0]);
    return ok();
  });
  r.client("POST", "/delete_devices", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    auto* devices = body.if_contains("devices");
    if (!devices) throw MatrixError::missing_param("Missing 'devices'");
    if (!devices->is_array()) throw MatrixError::bad_json("'devices' must be a list");
    for (const auto& d : devices->as_array()) {
      if (!d.is_string()) throw MatrixError::bad_json("'devices' must be a list of strings");
    }
    if (!who.appservice) {
      // The UIA session is bound to this set of devices (in any order).
      std::vector<std::string> ids;
      for (const auto& d : devices->as_array()) ids.emplace_back(d.as_string());
      std::sort(ids.begin(), ids.end());
      hs.accounts.require_password_uia(who, body, "POST /delete_devices " + boost::json::serialize(boost::json::value_from(ids)));
    }
    for (const auto& d : devices->as_array()) hs.accounts.delete_device(who.user_id, std::string(d.as_string()));
    return ok();
  });
}

}  // namespace trestle::api
