// Account data, receipts, read markers, typing and filters (spec: account-data.yaml,
// receipts.yaml, read_markers.yaml, typing.yaml, filter.yaml).
#include "api/handler_util.hpp"
#include "api/routes.hpp"
#include "core/identifiers.hpp"

namespace trestle::api {

using boost::json::object;
using http::Auth;

namespace {
void require_self(const http::Request& req, const service::Requester& who) {
  if (req.params[0] != who.user_id) throw MatrixError::forbidden("Cannot access another user's data");
}
}  // namespace

void add_user_data_routes(http::Router& r, service::Homeserver& hs) {
  auto& ud = hs.user_data;
  r.client("PUT", "/user/{}/account_data/{}", Auth::required, [&ud](http::Request& req, const service::Requester& who) {
    require_self(req, who);
    ud.put_account_data(who.user_id, "", req.params[1], req.json_object());
    return ok();
  });
  r.client("GET", "/user/{}/account_data/{}", Auth::required, [&ud](http::Request& req, const service::Requester& who) {
    require_self(req, who);
    return ok(ud.get_account_data(who.user_id, "", req.params[1]));
  });
  r.client("PUT", "/user/{}/rooms/{}/account_data/{}", Auth::required,
           [&ud](http::Request& req, const service::Requester& who) {
             require_self(req, who);
             if (!core::is_valid_room_id(req.params[1])) throw MatrixError::invalid_param("Invalid room ID");
             ud.put_account_data(who.user_id, req.params[1], req.params[2], req.json_object());
             return ok();
           });
  r.client("GET", "/user/{}/rooms/{}/account_data/{}", Auth::required,
           [&ud](http::Request& req, const service::Requester& who) {
             require_self(req, who);
             if (!core::is_valid_room_id(req.params[1])) throw MatrixError::invalid_param("Invalid room ID");
             return ok(ud.get_account_data(who.user_id, req.params[1], req.params[2]));
           });

  r.client("GET", "/user/{}/rooms/{}/tags", Auth::required, [&ud](http::Request& req, const service::Requester& who) {
    require_self(req, who);
    return ok(ud.tags(who.user_id, req.params[1]));
  });
  r.client("PUT", "/user/{}/rooms/{}/tags/{}", Auth::required, [&ud](http::Request& req, const service::Requester& who) {
    require_self(req, who);
    if (!core::is_valid_room_id(req.params[1])) throw MatrixError::invalid_param("Invalid room ID");
    ud.set_tag(who.user_id, req.params[1], req.params[2], req.json_object());
    return ok();
  });
  r.client("DELETE", "/user/{}/rooms/{}/tags/{}", Auth::required, [&ud](http::Request& req, const service::Requester& who) {
    require_self(req, who);
    ud.delete_tag(who.user_id, req.params[1], req.params[2]);
    return ok();
  });

  r.client("POST", "/rooms/{}/receipt/{}/{}", Auth::required, [&ud, &hs](http::Request& req, const service::Requester& who) {
    auto body = req.json_object(true);
    std::string thread_id;  // '' = unthreaded
    if (auto* t = body.if_contains("thread_id")) {
      if (!t->is_string() || t->as_string().empty()) {
        throw MatrixError::invalid_param("thread_id field must be a non-empty string");
      }
      thread_id = std::string(t->as_string());
    }
    ud.send_receipt(who, req.params[0], req.params[1], req.params[2], thread_id);
    if (req.params[1] != "m.fully_read") hs.push.badge_changed(who.user_id);
    return ok();
  });
  r.client("POST", "/rooms/{}/read_markers", Auth::required, [&ud, &hs](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    ud.set_read_markers(who, req.params[0], body);
    if (body.contains("m.read") || body.contains("m.read.private")) hs.push.badge_changed(who.user_id);
    return ok();
  });
  r.client("PUT", "/rooms/{}/typing/{}", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    if (req.params[1] != who.user_id) throw MatrixError::forbidden("Cannot set another user's typing state");
    auto body = req.json_object();
    auto* typing = body.if_contains("typing");
    if (!typing) throw MatrixError::missing_param("Missing 'typing'");
    if (!typing->is_bool()) throw MatrixError::bad_json("'typing' must be a boolean");
    int64_t timeout = 30000;
    if (auto* t = body.if_contains("timeout"); t && t->is_int64()) timeout = t->as_int64();
    hs.rooms.history.require_joined(who, req.params[0]);
    hs.user_data.typing().set(req.params[0], who.user_id, typing->as_bool(), timeout);
    return ok();
  });

  r.client("POST", "/user/{}/filter", Auth::required, [&ud](http::Request& req, const service::Requester& who) {
    require_self(req, who);
    return ok(object{{"filter_id", ud.create_filter(who.user_id, req.json_object())}});
  });
  r.client("GET", "/user/{}/filter/{}", Auth::required, [&ud](http::Request& req, const service::Requester& who) {
    require_self(req, who);
    return ok(ud.get_filter(who.user_id, req.params[1]));
  });
}

}  // namespace trestle::api
