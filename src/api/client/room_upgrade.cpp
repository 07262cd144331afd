// Room upgrades (spec: room_upgrades.yaml). The work is in service/room_upgrade.
#include "api/handler_util.hpp"
#include "api/routes.hpp"
#include "core/identifiers.hpp"

namespace trestle::api {

void add_room_upgrade_routes(http::Router& r, service::Homeserver& hs) {
  r.client("POST", "/rooms/{}/upgrade", http::Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    std::string new_version = required_string(body, "new_version");
    if (!core::is_valid_room_id(req.params[0])) throw MatrixError::not_found("Unknown room " + req.params[0]);
    auto replacement = hs.room_upgrade.upgrade(who, req.params[0], new_version);
    return ok(boost::json::object{{"replacement_room", replacement}});
  });
}

}  // namespace trestle::api
