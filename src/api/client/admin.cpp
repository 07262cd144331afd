// Server administration endpoints of the Client-Server API (spec: admin.yaml).
#include "api/handler_util.hpp"
#include "api/routes.hpp"
#include "core/identifiers.hpp"
#include "service/admin/user_admin.hpp"

namespace trestle::api {

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
    return ok(service::admin::whois(hs, user_id));
  });
}

}  // namespace trestle::api
