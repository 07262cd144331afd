// GET /versions, /capabilities, /.well-known/matrix/client.
#include "api/handler_util.hpp"
#include "api/routes.hpp"
#include "room/room_version.hpp"

namespace trestle::api {

using boost::json::array;
using boost::json::object;
using http::Auth;

void add_server_routes(http::Router& r, service::Homeserver& hs) {
  r.add("GET", "/_matrix/client/versions", Auth::none, [](http::Request&, const service::Requester&) {
    // Only versions whose required endpoints we serve.
    return ok(object{{"versions", array{"r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6"}},
                     {"unstable_features", object{}}});
  });
  r.client("GET", "/capabilities", Auth::required, [&hs](http::Request&, const service::Requester&) {
    object available;
    for (const auto& v : room::supported_room_versions()) available[v] = "stable";
    return ok(object{{"capabilities",
                      object{{"m.change_password", object{{"enabled", true}}},
                             {"m.room_versions", object{{"default", room::default_room_version().id},
                                                        {"available", available}}},
                             {"m.set_displayname", object{{"enabled", true}}},
                             {"m.set_avatar_url", object{{"enabled", true}}},
                             {"m.3pid_changes", object{{"enabled", hs.config.email.enabled}}},  // adding validates by mail
                             {"m.get_login_token", object{{"enabled", false}}}}}});
  });
  r.add("GET", "/.well-known/matrix/client", Auth::none, [&hs](http::Request&, const service::Requester&) {
    std::string base = hs.config.public_baseurl;
    if (base.empty()) base = "http://" + hs.config.server_name;
    return ok(object{{"m.homeserver", object{{"base_url", base}}}});
  });
}

}  // namespace trestle::api
