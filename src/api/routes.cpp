#include "api/routes.hpp"

#include "api/handler_util.hpp"

namespace trestle::api {

void add_all_routes(http::Router& r, service::Homeserver& hs) {
  r.set_authenticator([&hs](const http::Request& req, bool required) -> service::Requester {
    auto token = access_token(req);
    if (!token && !required) return {};
    return hs.accounts.authenticate(token);
  });
  add_server_routes(r, hs);
  add_account_routes(r, hs);
  add_profile_routes(r, hs);
  add_device_routes(r, hs);
  add_room_routes(r, hs);
  add_directory_routes(r, hs);
  add_sync_routes(r, hs);
  add_user_data_routes(r, hs);
  add_push_routes(r, hs);
}

}  // namespace trestle::api
