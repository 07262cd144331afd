// Synapse's admin API for rooms: list, details, members, state, messages, context, block,
// delete (v1 synchronous, v2 in the background with its status), purge history, join a user,
// make a room admin. Logic in service/admin/room_admin.
#include "api/admin/admin_routes.hpp"
#include "api/admin/admin_util.hpp"


namespace trestle::api::admin {

namespace {

bool body_bool(const boost::json::object& body, const char* key, bool fallback, bool optional_msg = true) {
  auto* v = body.if_contains(key);
  if (!v) return fallback;
  if (!v->is_bool()) {
    throw MatrixError::bad_json(std::string("Param '") + key + "' must be a boolean" + (optional_msg ? ", if given" : "."));
  }
  return v->as_bool();
}

service::RoomDeleteParams delete_params(const http::Request& req, const service::Requester& who) {
  auto body = req.json_object();  // "The JSON body must not be empty. The body must be at least {}."
  service::RoomDeleteParams p;
  p.requester_user_id = who.user_id;
  p.block = body_bool(body, "block", false);
  p.purge = body_bool(body, "purge", true);
  p.force_purge = body_bool(body, "force_purge", false);
  p.new_room_user_id = optional_string(body, "new_room_user_id");
  p.room_name = optional_string(body, "room_name");
  p.message = optional_string(body, "message");
  return p;
}

}  // namespace

void add_room_routes(http::Router& r, service::Homeserver& hs) {
  auto& admin = hs.room_admin;
  route(r, hs, "GET", "/v1/rooms", [&admin](http::Request& req, const service::Requester&) {
    storage::room_admin::RoomQuery q;
    q.offset = query_int(req, "from").value_or(0);
    q.limit = query_int(req, "limit").value_or(100);
    q.order_by = req.query_param("order_by").value_or("name");
    q.reverse = query_backwards(req, false);
    q.search_term = req.query_param("search_term");
    q.public_rooms = query_bool(req, "public_rooms");
    q.empty_rooms = query_bool(req, "empty_rooms");
    return ok(admin.list_rooms(q));
  });
  route(r, hs, "GET", "/v1/rooms/{}", [&admin](http::Request& req, const service::Requester&) {
    return ok(admin.room_details(req.params[0]));
  });
  route(r, hs, "DELETE", "/v1/rooms/{}", [&admin](http::Request& req, const service::Requester& who) -> http::Reply {
    auto p = delete_params(req, who);
    std::string room_id = req.params[0];
    // Synchronous, like Synapse's v1: the work runs off the request workers.
    return http::Offload{[&admin, room_id, p] { return http::Response::json(admin.delete_now(room_id, p)); }};
  });
  route(r, hs, "GET", "/v1/rooms/{}/members", [&admin](http::Request& req, const service::Requester&) {
    return ok(admin.members(req.params[0]));
  });
  route(r, hs, "GET", "/v1/rooms/{}/state", [&admin](http::Request& req, const service::Requester&) {
    return ok(admin.state(req.params[0], req.query_param("type")));
  });
  route(r, hs, "GET", "/v1/rooms/{}/messages", [&admin](http::Request& req, const service::Requester&) {
    std::string dir = query_backwards(req, false) ? "b" : "f";
    auto limit = query_int(req, "limit").value_or(10);
    return ok(admin.messages(req.params[0], req.query_param("from"), req.query_param("to"), dir, limit,
                             query_json_object(req, "filter")));
  });
  route(r, hs, "GET", "/v1/rooms/{}/context/{}", [&admin](http::Request& req, const service::Requester&) {
    auto limit = query_int(req, "limit").value_or(10);
    return ok(admin.context(req.params[0], req.params[1], limit, query_json_object(req, "filter")));
  });
  route(r, hs, "GET", "/v1/rooms/{}/block", [&admin](http::Request& req, const service::Requester&) {
    return ok(admin.block_status(req.params[0]));
  });
  route(r, hs, "PUT", "/v1/rooms/{}/block", [&admin](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    if (!body.contains("block")) throw MatrixError::missing_param("Missing params: ['block']");
    bool block = body_bool(body, "block", false, false);
    admin.set_blocked(req.params[0], block, who.user_id);
    return ok({{"block", block}});
  });
  route(r, hs, "POST", "/v1/rooms/{}/make_room_admin", [&admin](http::Request& req, const service::Requester& who) {
    auto body = req.json_object(true);
    auto user_id = optional_string(body, "user_id").value_or(who.user_id);
    admin.make_room_admin(req.params[0], user_id);
    return ok();
  });
  route(r, hs, "POST", "/v1/join/{}", [&admin](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    auto user_id = required_string(body, "user_id");
    return ok({{"room_id", admin.join_user(req.params[0], user_id, who.user_id)}});
  });

  // Deleting in the background (v2). The literal status route first: it also matches /v2/rooms/{}/{}.
  route(r, hs, "GET", "/v2/rooms/delete_status/{}", [&admin](http::Request& req, const service::Requester&) {
    return ok(admin.delete_status(req.params[0]));
  });
  route(r, hs, "GET", "/v2/rooms/{}/delete_status", [&admin](http::Request& req, const service::Requester&) {
    return ok(admin.delete_status_by_room(req.params[0]));
  });
  route(r, hs, "DELETE", "/v2/rooms/{}", [&admin](http::Request& req, const service::Requester& who) {
    auto p = delete_params(req, who);
    return ok({{"delete_id", admin.start_delete(req.params[0], p)}});
  });

  // Purging history.
  route(r, hs, "POST", "/v1/purge_history/{}", [&admin](http::Request& req, const service::Requester&) {
    return ok({{"purge_id", admin.start_purge_history(req.params[0], std::nullopt, req.json_object(true))}});
  });
  route(r, hs, "POST", "/v1/purge_history/{}/{}", [&admin](http::Request& req, const service::Requester&) {
    return ok({{"purge_id", admin.start_purge_history(req.params[0], req.params[1], req.json_object(true))}});
  });
  route(r, hs, "GET", "/v1/purge_history_status/{}", [&admin](http::Request& req, const service::Requester&) {
    return ok(admin.purge_history_status(req.params[0]));
  });
}

}  // namespace trestle::api::admin
