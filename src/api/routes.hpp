#pragma once
// Registers every endpoint. One function per spec area, each in its own file under api/client.
#include "http/router.hpp"
#include "service/homeserver.hpp"

namespace trestle::api {

void add_server_routes(http::Router& r, service::Homeserver& hs);   // versions, capabilities, well-known
void add_account_routes(http::Router& r, service::Homeserver& hs);  // register, login, logout, account
void add_profile_routes(http::Router& r, service::Homeserver& hs);
void add_device_routes(http::Router& r, service::Homeserver& hs);
void add_room_routes(http::Router& r, service::Homeserver& hs);     // create, membership, send, state, history
void add_room_upgrade_routes(http::Router& r, service::Homeserver& hs);  // POST /rooms/{roomId}/upgrade
void add_directory_routes(http::Router& r, service::Homeserver& hs);
void add_sync_routes(http::Router& r, service::Homeserver& hs);
void add_user_data_routes(http::Router& r, service::Homeserver& hs);  // account data, receipts, typing, filters
void add_push_routes(http::Router& r, service::Homeserver& hs);
void add_user_routes(http::Router& r, service::Homeserver& hs);  // presence, user directory, voip
void add_appservice_routes(http::Router& r, service::Homeserver& hs);  // ping, third party, AS directory
void add_media_routes(http::Router& r, service::Homeserver& hs);  // upload, download, thumbnails, config
void add_to_device_routes(http::Router& r, service::Homeserver& hs);  // sendToDevice
void add_key_backup_routes(http::Router& r, service::Homeserver& hs);  // /room_keys (server-side key backup)
void add_keys_routes(http::Router& r, service::Homeserver& hs);   // E2EE keys and cross-signing
void add_threepid_routes(http::Router& r, service::Homeserver& hs);  // email 3PIDs, identity servers, onbind
void add_openid_routes(http::Router& r, service::Homeserver& hs);  // openid request_token, federation userinfo
void add_admin_routes(http::Router& r, service::Homeserver& hs);   // admin/whois
void add_sso_routes(http::Router& r, service::Homeserver& hs);     // SSO/CAS login, m.login.token
void add_account_moderation_routes(http::Router& r, service::Homeserver& hs);  // admin lock / suspend (v1.18)
void add_login_token_routes(http::Router& r, service::Homeserver& hs);          // POST /login/get_token (v1.7)
void add_legacy_routes(http::Router& r, service::Homeserver& hs);  // r0 /events, /initialSync, POST send
void add_search_routes(http::Router& r, service::Homeserver& hs);  // POST /search (full-text)
void add_reporting_routes(http::Router& r, service::Homeserver& hs);  // report events, rooms, users
void add_timestamp_routes(http::Router& r, service::Homeserver& hs);  // v1 timestamp_to_event
void add_space_routes(http::Router& r, service::Homeserver& hs);   // hierarchy, room summary, mutual rooms

// All of the above plus the authenticator.
void add_relation_routes(http::Router& r, service::Homeserver& hs);  // /relations, /threads
void add_registration_token_client_routes(http::Router& r, service::Homeserver& hs);  // token /validity (v1.2)
// POST /_trestle/replication/v1/send_event on `replication` listeners (api/replication)
void add_replication_routes(http::Router& r, service::Homeserver& hs);
void add_all_routes(http::Router& r, service::Homeserver& hs);

}  // namespace trestle::api
