// GET /versions, /capabilities, /.well-known/matrix/client and /.well-known/matrix/support.
#include "api/handler_util.hpp"
#include "api/routes.hpp"
#include "room/room_version.hpp"

namespace trestle::api {

using boost::json::array;
using boost::json::object;
using http::Auth;

void add_server_routes(http::Router& r, service::Homeserver& hs) {
  r.add("GET", "/_matrix/client/versions", Auth::none, [](http::Request&, const service::Requester&) {
    // The versions whose features clients rely on work here. v1.11 brings authenticated media
    // (/_matrix/client/v1/media/*): clients that see it use those endpoints, and clients older
    // than v1.11 need enable_authenticated_media: false to show newly uploaded media. v1.12-v1.19
    // (locking and suspension, reports, room summary, profile fields, state_after, room v12,
    // invite blocking, mutual rooms) are served; what needs another server (federation, policy
    // servers) or an identity provider (OAuth 2.0: auth_metadata answers 404 M_UNRECOGNIZED, the
    // spec's "not supported") is optional there.
    array versions{"r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
                   "v1.1",   "v1.2",   "v1.3",   "v1.4",   "v1.5",   "v1.6",   "v1.7",   "v1.8",
                   "v1.9",   "v1.10",  "v1.11",  "v1.12",  "v1.13",  "v1.14",  "v1.15",  "v1.16",
                   "v1.17",  "v1.18",  "v1.19"};
    // Unstable flags clients test for, for what the server does (MSC3916 authenticated media,
    // MSC2246 async uploads, MSC3202/MSC4190 appservice devices, MSC2409 ephemeral data, MSC3266
    // room summary on nheko's paths, MSC2666 mutual rooms on its unstable path, MSC4133 profile
    // fields on the stable paths).
    object unstable{{"org.matrix.msc3916.stable", true},
                    {"org.matrix.msc2246", true},
                    {"org.matrix.msc3202", true},
                    {"org.matrix.msc4190", true},
                    {"org.matrix.e2e_cross_signing", true},
                    {"im.nheko.summary", true},
                    {"uk.half-shot.msc2666.query_mutual_rooms", true},
                    {"uk.tcpip.msc4133.stable", true}};
    return ok(object{{"versions", std::move(versions)}, {"unstable_features", std::move(unstable)}});
  });
  r.client("GET", "/capabilities", Auth::required, [&hs](http::Request&, const service::Requester& who) {
    object available;
    for (const auto& v : room::supported_room_versions()) available[v] = "stable";
    object caps{{"m.change_password", object{{"enabled", true}}},
                {"m.room_versions", object{{"default", room::default_room_version().id}, {"available", available}}},
                {"m.set_displayname", object{{"enabled", true}}},
                {"m.set_avatar_url", object{{"enabled", true}}},
                {"m.3pid_changes", object{{"enabled", hs.config.email.enabled}}},  // adding validates by mail
                {"m.get_login_token", object{{"enabled", hs.config.login_via_existing_session.enabled}}},
                // v1.16: every profile field may be set (displayname and avatar_url as before)
                {"m.profile_fields", object{{"enabled", true}}}};
    // Only admins may lock and suspend; the spec omits the capability for everyone else.
    if (!who.appservice && hs.accounts.is_admin(who.user_id)) {
      caps["m.account_moderation"] = object{{"lock", true}, {"suspend", true}};
    }
    return ok(object{{"capabilities", std::move(caps)}});
  });
  r.add("GET", "/.well-known/matrix/client", Auth::none, [&hs](http::Request&, const service::Requester&) {
    std::string base = hs.config.public_baseurl;
    if (base.empty()) base = "http://" + hs.config.server_name;
    return ok(object{{"m.homeserver", object{{"base_url", base}}}});
  });
  // MSC1929 / v1.10: who runs this server. 404 when nothing is configured, as the spec says.
  r.add("GET", "/.well-known/matrix/support", Auth::none, [&hs](http::Request&, const service::Requester&) {
    const auto& sc = hs.config.support;
    array contacts;
    if (sc.admin_contact.starts_with("mailto:")) {
      contacts.push_back(object{{"email_address", sc.admin_contact.substr(7)}, {"role", "m.role.admin"}});
    }
    for (const auto& c : sc.contacts) {
      object o{{"role", c.role}};
      if (!c.matrix_id.empty()) o["matrix_id"] = c.matrix_id;
      if (!c.email_address.empty()) o["email_address"] = c.email_address;
      contacts.push_back(std::move(o));
    }
    object out;
    if (!contacts.empty()) out["contacts"] = std::move(contacts);
    if (!sc.support_page.empty()) out["support_page"] = sc.support_page;
    else if (sc.admin_contact.starts_with("https://") || sc.admin_contact.starts_with("http://")) out["support_page"] = sc.admin_contact;
    if (out.empty()) throw MatrixError::not_found("No support information configured");
    return ok(out);
  });
}

}  // namespace trestle::api
