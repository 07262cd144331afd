#include "api/admin/admin_routes.hpp"
#include "api/admin/admin_util.hpp"

namespace trestle::api::admin {

void add_server_routes(http::Router& r, service::Homeserver& hs) {
  (void)r;
  (void)hs;
}

}  // namespace trestle::api::admin
