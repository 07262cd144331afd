// Profiles (spec: profile.yaml): display name and avatar, propagated to the user's rooms.
#include "api/appservice/offload.hpp"
#include "api/handler_util.hpp"
#include "api/routes.hpp"
#include "core/identifiers.hpp"
#include "storage/account_store.hpp"

namespace trestle::api {

using boost::json::object;
using http::Auth;

namespace {

storage::accounts::User require_local_profile_user(service::Homeserver& hs, const std::string& user_id) {
  if (!core::parse_user_id(user_id)) throw MatrixError::invalid_param("Invalid user ID");
  auto u = hs.accounts.get_user(user_id);
  if (!u || u->deactivated) throw MatrixError::not_found("Profile not found");
  return *u;
}

// `answer(user)` for the profile of `user_id`. A user we do not know in an appservice's namespace
// may exist on the other side of the bridge: asking the appservice runs on the outbound pool.
template <class F>
http::Reply with_profile_user(service::Homeserver& hs, const std::string& user_id, F answer) {
  if (!core::parse_user_id(user_id)) throw MatrixError::invalid_param("Invalid user ID");
  bool ask = !hs.accounts.get_user(user_id) && hs.appservice_queries.may_query_user(user_id);
  return offload_if(ask, [&hs, user_id, answer, ask]() -> http::Reply {
    if (ask) hs.appservice_queries.query_user(user_id);
    return answer(require_local_profile_user(hs, user_id));
  });
}

}  // namespace

void add_profile_routes(http::Router& r, service::Homeserver& hs) {
  r.client("GET", "/profile/{}", Auth::optional, [&hs](http::Request& req, const service::Requester&) {
    return with_profile_user(hs, req.params[0], [](const storage::accounts::User& u) {
      object o;
      if (u.displayname) o["displayname"] = *u.displayname;
      if (u.avatar_url) o["avatar_url"] = *u.avatar_url;
      return ok(o);
    });
  });
  for (const std::string field : {"displayname", "avatar_url"}) {
    r.client("GET", "/profile/{}/" + field, Auth::optional, [&hs, field](http::Request& req, const service::Requester&) {
      return with_profile_user(hs, req.params[0], [field](const storage::accounts::User& u) {
        const auto& v = field == "displayname" ? u.displayname : u.avatar_url;
        if (!v) throw MatrixError::not_found("Profile field not set");
        return ok(object{{field, *v}});
      });
    });
    r.client("PUT", "/profile/{}/" + field, Auth::required, [&hs, field](http::Request& req, const service::Requester& who) {
      const std::string& user_id = req.params[0];
      require_local_profile_user(hs, user_id);  // one's own profile: no appservice to ask
      if (user_id != who.user_id) throw MatrixError::forbidden("Cannot set another user's profile");
      auto body = req.json_object();
      auto* v = body.if_contains(field);
      std::optional<std::string> value;
      if (v && !v->is_null()) {
        if (!v->is_string()) throw MatrixError::bad_json(field + " must be a string");
        value = std::string(v->as_string());
        if (value->size() > 256 && field == "displayname") throw MatrixError::invalid_param("Display name too long");
        if (value->size() > 1000) throw MatrixError::invalid_param(field + " too long");
      } else if (!v) {
        throw MatrixError::missing_param("Missing '" + field + "'");
      }
      hs.accounts.set_profile_field(user_id, field, value);
      hs.rooms.update_profile_in_rooms(user_id);
      return ok();
    });
  }
}

}  // namespace trestle::api
