#pragma once
// Synapse's admin API (/_synapse/admin/...), as synadm and other Synapse tooling speak it, one
// file per area. Every route needs a server admin's access token (403 M_FORBIDDEN otherwise),
// except the shared-secret registration, which authenticates with its HMAC.
#include "http/router.hpp"
#include "service/homeserver.hpp"

namespace trestle::api::admin {

void add_server_routes(http::Router& r, service::Homeserver& hs);  // server_version, shared-secret register
void add_user_routes(http::Router& r, service::Homeserver& hs);    // users, devices, whois, deactivate
void add_room_routes(http::Router& r, service::Homeserver& hs);    // rooms, delete, purge, block
void add_event_report_routes(http::Router& r, service::Homeserver& hs);        // event_reports
void add_media_routes(http::Router& r, service::Homeserver& hs);               // media, quarantine
void add_registration_token_routes(http::Router& r, service::Homeserver& hs);  // registration_tokens

// All of the above.
void add_routes(http::Router& r, service::Homeserver& hs);

}  // namespace trestle::api::admin
