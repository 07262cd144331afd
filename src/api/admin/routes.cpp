#include "api/admin/admin_routes.hpp"

namespace trestle::api::admin {

void add_routes(http::Router& r, service::Homeserver& hs) {
  add_server_routes(r, hs);
  add_user_routes(r, hs);
  add_room_routes(r, hs);
  add_event_report_routes(r, hs);
  add_media_routes(r, hs);
  add_registration_token_routes(r, hs);
}

}  // namespace trestle::api::admin
