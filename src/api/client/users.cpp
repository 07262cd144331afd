// Presence and the user directory (spec: presence.yaml, users.yaml), plus VoIP's turnServer,
// which answers empty when no TURN server is configured, as Synapse does.
#include "api/handler_util.hpp"
#include "api/routes.hpp"
#include "core/clock.hpp"
#include "core/identifiers.hpp"

namespace trestle::api {

using boost::json::array;
using boost::json::object;
using http::Auth;

void add_user_routes(http::Router& r, service::Homeserver& hs) {
  r.client("GET", "/presence/{}/status", Auth::required, [&hs](http::Request& req, const service::Requester&) {
    if (!core::parse_user_id(req.params[0])) throw MatrixError::invalid_param("Invalid user ID");
    if (!hs.accounts.user_exists(req.params[0])) throw MatrixError::not_found("Unknown user");
    auto p = hs.presence.get(req.params[0]);
    object o{{"presence", p.presence}};
    if (p.last_active_ts) o["last_active_ago"] = core::now_ms() - p.last_active_ts;
    if (p.status_msg) o["status_msg"] = *p.status_msg;
    return ok(o);
  });
  r.client("PUT", "/presence/{}/status", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    if (req.params[0] != who.user_id) throw MatrixError::forbidden("Cannot set another user's presence");
    auto body = req.json_object();
    hs.presence.set(who.user_id, required_string(body, "presence"), optional_string(body, "status_msg"));
    return ok();
  });
  r.client("POST", "/user_directory/search", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    std::string term = required_string(body, "search_term");
    int64_t limit = 10;
    if (auto* l = body.if_contains("limit"); l && l->is_int64()) limit = std::clamp<int64_t>(l->as_int64(), 1, 100);
    auto users = hs.user_directory.search(who.user_id, term, limit + 1);
    array results;
    for (size_t i = 0; i < users.size() && static_cast<int64_t>(i) < limit; ++i) {
      object u{{"user_id", users[i].user_id}};
      if (users[i].display_name) u["display_name"] = *users[i].display_name;
      if (users[i].avatar_url) u["avatar_url"] = *users[i].avatar_url;
      results.push_back(std::move(u));
    }
    return ok(object{{"results", std::move(results)}, {"limited", static_cast<int64_t>(users.size()) > limit}});
  });
  r.client("GET", "/voip/turnServer", Auth::required,
           [](http::Request&, const service::Requester&) { return ok(); });
}

}  // namespace trestle::api
