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
    // v1.16: the new room's creators besides the requester (room versions with privileged creators).
    std::vector<std::string> additional_creators;
    if (auto* ac = body.if_contains("additional_creators")) {
      if (!ac->is_array()) throw MatrixError::bad_json("additional_creators must be a list of user IDs");
      for (const auto& u : ac->as_array()) {
        if (!u.is_string()) throw MatrixError::bad_json("additional_creators must be a list of user IDs");
        if (!core::parse_user_id(u.as_string())) throw MatrixError::invalid_param("Invalid user ID in additional_creators");
        additional_creators.emplace_back(u.as_string());
      }
    }
    auto replacement = hs.room_upgrade.upgrade(who, req.params[0], new_version, additional_creators);
    return ok(boost::json::object{{"replacement_room", replacement}});
  });
}

}  // namespace trestle::api
