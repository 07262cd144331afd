#include "api/admin/admin_util.hpp"

namespace trestle::api::admin {

void require_admin(service::Homeserver& hs, const service::Requester& who) {
  auto user = hs.accounts.get_user(who.user_id);
  if (!user || !user->is_admin) throw MatrixError::forbidden("You are not a server admin");
}

bool query_backwards(const http::Request& req, bool backwards) {
  auto dir = req.query_param("dir");
  if (!dir) return backwards;
  if (*dir != "f" && *dir != "b") throw MatrixError::invalid_param("Query parameter \"dir\" must be one of [\"b\", \"f\"]");
  return *dir == "b";
}

void route(http::Router& r, service::Homeserver& hs, const std::string& method, const std::string& tail,
           http::Handler handler) {
  r.add(method, "/_synapse/admin" + tail, http::Auth::required,
        [&hs, handler = std::move(handler)](http::Request& req, const service::Requester& who) {
          require_admin(hs, who);
          return handler(req, who);
        });
}

}  // namespace trestle::api::admin
