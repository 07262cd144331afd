#include "api/routes.hpp"

#include "api/admin/admin_routes.hpp"
#include "api/handler_util.hpp"
#include "api/schema/request_schemas.hpp"
#include "service/guest_access.hpp"

namespace trestle::api {

void add_all_routes(http::Router& r, service::Homeserver& hs) {
  r.set_authenticator([&hs](const http::Request& req, bool required) -> service::Requester {
    auto token = access_token(req);
    if (!token && !required) return {};
    // Identity assertion parameters (only an appservice's as_token honours them). Deployed
    // bridges send MSC3202's unstable device_id name, often alongside the stable one.
    auto device_id = req.query_param("device_id");
    auto unstable_device_id = req.query_param("org.matrix.msc3202.device_id");
    if (device_id && unstable_device_id && *device_id != *unstable_device_id) {
      throw MatrixError::invalid_param("device_id and org.matrix.msc3202.device_id disagree");
    }
    if (!device_id) device_id = unstable_device_id;
    auto requester = hs.accounts.authenticate(token, req.query_param("user_id"), device_id);
    // A locked account may only log out (spec: account locking).
    if (requester.locked && !req.route.ends_with("/logout") && !req.route.ends_with("/logout/all")) {
      throw MatrixError(401, "M_USER_LOCKED", "This account has been locked", {{"soft_logout", true}});
    }
    // Guests may call the spec's short list (and endpoints that need no token at all).
    if (requester.is_guest && required && !service::guest_may_call(req.method, req.route)) {
      throw MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access not allowed");
    }
    if (requester.device_id) hs.accounts.record_device_seen(requester.user_id, *requester.device_id, req.remote_address);
    if (!requester.appservice && requester.device_id) {
      hs.client_ips.record(requester.user_id, *requester.device_id, req.remote_address, req.user_agent, core::now_ms());
    }
    // Any request from an appservice shows it is alive: end a delivery backoff at once.
    if (requester.appservice) hs.appservice_sender.poke(requester.appservice->id);
    return requester;
  });
  // Every JSON request body is checked against the spec's schema before its handler runs.
  r.set_body_checks(schema::body_check_for);
  add_server_routes(r, hs);
  add_account_routes(r, hs);
  add_profile_routes(r, hs);
  add_device_routes(r, hs);
  add_room_routes(r, hs);
  add_room_upgrade_routes(r, hs);
  add_directory_routes(r, hs);
  add_sync_routes(r, hs);
  add_user_data_routes(r, hs);
  add_push_routes(r, hs);
  add_user_routes(r, hs);
  add_appservice_routes(r, hs);
  add_media_routes(r, hs);
  add_to_device_routes(r, hs);
  add_key_backup_routes(r, hs);
  add_keys_routes(r, hs);
  add_threepid_routes(r, hs);
  add_openid_routes(r, hs);
  add_admin_routes(r, hs);
  add_sso_routes(r, hs);
  add_account_moderation_routes(r, hs);
  add_login_token_routes(r, hs);
  add_legacy_routes(r, hs);
  add_search_routes(r, hs);
  add_reporting_routes(r, hs);
  add_timestamp_routes(r, hs);
  add_space_routes(r, hs);
  add_relation_routes(r, hs);
  add_registration_token_client_routes(r, hs);
  admin::add_routes(r, hs);  // /_synapse/admin (Synapse's admin API)
  add_replication_routes(r, hs);  // between the processes of one deployment
}

}  // namespace trestle::api
