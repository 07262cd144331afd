// Server-side key backups (spec: key_backup.yaml): /room_keys/version and /room_keys/keys.
#include "api/handler_util.hpp"
#include "api/routes.hpp"

namespace trestle::api {

using boost::json::object;
using http::Auth;

void add_key_backup_routes(http::Router& r, service::Homeserver& hs) {
  auto& kb = hs.key_backup;
  r.client("POST", "/room_keys/version", Auth::required, [&kb](http::Request& req, const service::Requester& who) {
    return ok(object{{"version", kb.create_version(who.user_id, req.json_object())}});
  });
  r.client("GET", "/room_keys/version", Auth::required, [&kb](http::Request&, const service::Requester& who) {
    return ok(kb.get_version(who.user_id, std::nullopt));
  });
  r.client("GET", "/room_keys/version/{}", Auth::required, [&kb](http::Request& req, const service::Requester& who) {
    return ok(kb.get_version(who.user_id, req.params[0]));
  });
  r.client("PUT", "/room_keys/version/{}", Auth::required, [&kb](http::Request& req, const service::Requester& who) {
    kb.update_version(who.user_id, req.params[0], req.json_object());
    return ok();
  });
  r.client("DELETE", "/room_keys/version/{}", Auth::required, [&kb](http::Request& req, const service::Requester& who) {
    kb.delete_version(who.user_id, req.params[0]);
    return ok();
  });

  // The three levels of /room_keys/keys: every room, one room, one session.
  for (const char* tail : {"/room_keys/keys", "/room_keys/keys/{}", "/room_keys/keys/{}/{}"}) {
    auto room = [](const http::Request& req) {
      return req.params.size() > 0 ? std::optional<std::string>(req.params[0]) : std::nullopt;
    };
    auto session = [](const http::Request& req) {
      return req.params.size() > 1 ? std::optional<std::string>(req.params[1]) : std::nullopt;
    };
    r.client("PUT", tail, Auth::required, [&kb, room, session](http::Request& req, const service::Requester& who) {
      return ok(kb.put_keys(who.user_id, req.query_param("version"), room(req), session(req), req.json_object()));
    });
    r.client("GET", tail, Auth::required, [&kb, room, session](http::Request& req, const service::Requester& who) {
      return ok(kb.get_keys(who.user_id, req.query_param("version"), room(req), session(req)));
    });
    r.client("DELETE", tail, Auth::required, [&kb, room, session](http::Request& req, const service::Requester& who) {
      return ok(kb.delete_keys(who.user_id, req.query_param("version"), room(req), session(req)));
    });
  }
}

}  // namespace trestle::api
