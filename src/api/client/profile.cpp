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
    return with_profile_user(hs, req.params[0], [&hs](const storage::accounts::User& u) { return ok(hs.profile.profile(u)); });
  });
  // One field (v1.16: any key). displayname and avatar_url keep routes of their own so their
  // request schemas (a string or null) apply; every key takes the same code path.
  for (const std::string tail : {"displayname", "avatar_url", "{}"}) {
    auto key_of = [tail](const http::Request& req) { return tail == "{}" ? req.params[1] : tail; };
    r.client("GET", "/profile/{}/" + tail, Auth::optional, [&hs, key_of](http::Request& req, const service::Requester&) {
      std::string key = key_of(req);
      service::ProfileService::check_key(key);
      return with_profile_user(hs, req.params[0], [&hs, key](const storage::accounts::User& u) {
        auto v = hs.profile.field(u, key);
        if (!v) throw MatrixError::not_found("Profile field not set");
        return ok(object{{key, *v}});
      });
    });
    r.client("PUT", "/profile/{}/" + tail, Auth::required, [&hs, key_of](http::Request& req, const service::Requester& who) {
      std::string key = key_of(req);
      service::ProfileService::check_key(key);
      hs.profile.set_field(who, req.params[0], key, req.json_object());
      return ok();
    });
    r.client("DELETE", "/profile/{}/" + tail, Auth::required, [&hs, key_of](http::Request& req, const service::Requester& who) {
      hs.profile.delete_field(who, req.params[0], key_of(req));
      return ok();
    });
  }
}

}  // namespace trestle::api
