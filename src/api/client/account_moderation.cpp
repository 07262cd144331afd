// Account moderation by server admins (spec v1.18, admin.yaml): GET/PUT
// /_matrix/client/v1/admin/lock/{userId} and /_matrix/client/v1/admin/suspend/{userId}.
#include "api/handler_util.hpp"
#include "api/routes.hpp"

namespace trestle::api {

using boost::json::object;
using http::Auth;

void add_account_moderation_routes(http::Router& r, service::Homeserver& hs) {
  struct Kind {
    const char* path;
    const char* key;
    service::Moderation moderation;
  };
  for (const Kind& k : {Kind{"lock", "locked", service::Moderation::lock},
                        Kind{"suspend", "suspended", service::Moderation::suspend}}) {
    const std::string path = std::string("/_matrix/client/v1/admin/") + k.path + "/{}";
    r.add("GET", path, Auth::required, [&hs, k](http::Request& req, const service::Requester& who) {
      return ok(object{{k.key, hs.accounts.moderation_status(who, req.params[0], k.moderation)}});
    });
    r.add("PUT", path, Auth::required, [&hs, k](http::Request& req, const service::Requester& who) {
      auto body = req.json_object();
      auto value = optional_bool(body, k.key);
      if (!value) throw MatrixError::missing_param(std::string("Missing '") + k.key + "'");
      return ok(object{{k.key, hs.accounts.set_moderation(who, req.params[0], k.moderation, *value)}});
    });
  }
}

}  // namespace trestle::api
