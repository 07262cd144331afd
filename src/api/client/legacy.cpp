// The deprecated client API (Matrix r0, still used by old clients and SyTest): GET /events,
// GET /initialSync, GET /rooms/{roomId}/initialSync and POST /rooms/{roomId}/send/{eventType}
// (without a transaction ID), and MSC2753 /peek. The logic is in service/legacy_stream.
#include "api/client/long_poll_reply.hpp"
#include "api/handler_util.hpp"
#include "api/routes.hpp"
#include "core/crypto.hpp"
#include "core/identifiers.hpp"
#include "service/legacy_stream.hpp"

namespace trestle::api {

using boost::json::object;
using http::Auth;

namespace {

const std::string& valid_room_id(const std::string& room_id) {
  if (!core::is_valid_room_id(room_id)) throw MatrixError::invalid_param("Invalid room ID");
  return room_id;
}

// `limit` of the initialSync endpoints: 10 unless given, 400 when negative.
int64_t limit_param(const http::Request& req) {
  auto limit = query_int(req, "limit").value_or(10);
  if (limit < 0) throw MatrixError::invalid_param("limit must be 0 or greater");
  return limit;
}

}  // namespace

void add_legacy_routes(http::Router& r, service::Homeserver& hs) {
  r.client("GET", "/events", Auth::required, [&hs](http::Request& req, const service::Requester& who) -> http::Reply {
    service::EventStreamRequest er;
    er.from = req.query_param("from");
    if (auto t = query_int(req, "timeout")) er.timeout_ms = *t;
    if (auto l = query_int(req, "limit")) {
      if (*l < 0) throw MatrixError::invalid_param("limit must be 0 or greater");
      er.limit = *l;
    }
    if (auto room = req.query_param("room_id")) er.room_id = valid_room_id(*room);
    // Guests stream one room at a time (as in Synapse).
    if (who.is_guest && !er.room_id) throw MatrixError::invalid_param("Guest users must specify room_id param");
    // Polling the stream brings an offline user online (as in Synapse); a chosen presence stays.
    if (hs.presence.get(who.user_id).presence == "offline") hs.presence.touch(who.user_id, "online");
    return to_reply(hs.legacy.events(who, er));
  });

  r.client("GET", "/initialSync", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    bool archived = req.query_param("archived").value_or("false") == "true";
    return ok(hs.legacy.initial_sync(who, limit_param(req), archived));
  });

  r.client("GET", "/rooms/{}/initialSync", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    return ok(hs.legacy.room_initial_sync(who, valid_room_id(req.params[0]), limit_param(req)));
  });

  // The r0 form of sending without a txnId: every request sends a new event.
  r.client("POST", "/rooms/{}/send/{}", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    if (!who.appservice || (who.appservice->rate_limited && who.user_id != who.appservice->sender)) {
      hs.rooms.sending.message_limiter().take(who.user_id);
    }
    std::string txn_id = "legacy-post-" + core::random_string(24);
    auto event_id = hs.rooms.sending.send_message(who, valid_room_id(req.params[0]), req.params[1], txn_id, body, std::nullopt);
    return ok(object{{"event_id", event_id}});
  });

  // MSC2753 peeking, by room ID or alias.
  r.client("POST", "/peek/{}", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    req.json_object(true);
    std::string room_id = req.params[0];
    if (room_id.starts_with("#")) {
      room_id = std::string(hs.rooms.directory.resolve_alias(room_id).at("room_id").as_string());
    }
    hs.legacy.peek(who, valid_room_id(room_id));
    return ok(object{{"room_id", room_id}});
  });
  r.client("POST", "/rooms/{}/unpeek", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    hs.legacy.unpeek(who, valid_room_id(req.params[0]));
    return ok();
  });
}

}  // namespace trestle::api
