// Rooms: creation, membership, sending, state and history (spec: create_room.yaml, joining.yaml,
// knocking.yaml,
// inviting.yaml, leaving.yaml, kicking.yaml, banning.yaml, room_send.yaml, room_state.yaml,
// rooms.yaml, message_pagination.yaml, event_context.yaml, redaction.yaml, list_joined_rooms.yaml).
#include "api/appservice/offload.hpp"
#include "api/handler_util.hpp"
#include "api/routes.hpp"
#include "core/identifiers.hpp"


namespace trestle::api {

using boost::json::array;
using boost::json::object;
using http::Auth;

namespace {

const std::string& room_param(const http::Request& req) {
  if (!core::is_valid_room_id(req.params[0])) throw MatrixError::invalid_param("Invalid room ID");
  return req.params[0];
}

// Timestamp massaging: only appservices may set origin_server_ts with `ts`; others' is ignored.
std::optional<int64_t> massaged_ts(const http::Request& req, const service::Requester& who) {
  if (!who.appservice) return std::nullopt;
  auto ts = query_int(req, "ts");
  constexpr int64_t kMaxSafeInteger = (int64_t{1} << 53) - 1;  // origin_server_ts is a canonical JSON integer
  if (ts && (*ts < 0 || *ts > kMaxSafeInteger)) throw MatrixError::invalid_param("ts is out of range");
  return ts;
}

}  // namespace

void add_room_routes(http::Router& r, service::Homeserver& hs) {
  auto& rooms = hs.rooms;

  r.client("POST", "/createRoom", Auth::required, [&hs, &rooms](http::Request& req, const service::Requester& who) {
    auto body = req.json_object(true);
    if (auto* name = body.if_contains("room_alias_name"); name && name->is_string()) {
      service::check_alias_namespace(hs.appservices, who,
                                     "#" + std::string(name->as_string()) + ":" + hs.config.server_name);
    }
    // Unknown invitees in an appservice's namespace are asked about: off the workers (offload.hpp).
    bool calls_out = false;
    if (auto* inv = body.if_contains("invite"); inv && inv->is_array()) {
      for (const auto& u : inv->as_array()) {
        if (!u.is_string()) continue;
        std::string user_id(u.as_string());
        calls_out = calls_out || (hs.appservice_queries.may_query_user(user_id) && !hs.accounts.user_exists(user_id));
      }
    }
    const auto* invite_3pid = body.if_contains("invite_3pid");
    service::ThirdPartyInviteService::check_invite_3pid(invite_3pid);
    calls_out = calls_out || (invite_3pid && !invite_3pid->as_array().empty());
    return offload_if(calls_out, [&hs, &rooms, who, body] {
      auto room_id = rooms.creation.create_room(who, body);
      // Third-party invites go out once the room exists (they ask the identity server).
      if (const auto* list = body.if_contains("invite_3pid")) {
        for (const auto& entry : list->as_array()) hs.third_party_invites.invite_from_create(who, room_id, entry);
      }
      return ok(object{{"room_id", room_id}});
    });
  });

  auto join_handler = [&hs, &rooms](http::Request& req, const service::Requester& who) {
    auto body = req.json_object(true);
    std::string target = req.params[0];
    // Joining by an alias an appservice may create on demand asks it: off the workers.
    bool calls_out = target.starts_with("#") && hs.appservice_queries.may_query_alias(target);
    return offload_if(calls_out, [&rooms, who, target, reason = optional_string(body, "reason"), body] {
      auto room_id = rooms.membership.join(who, target, reason, body);
      return ok(object{{"room_id", room_id}});
    });
  };
  r.client("POST", "/join/{}", Auth::required, join_handler);
  r.client("POST", "/rooms/{}/join", Auth::required, join_handler);

  // knocking.yaml: `via` / `server_name` name servers to knock through; every room we can knock on
  // is one this server is in, so they are not needed.
  r.client("POST", "/knock/{}", Auth::required, [&hs, &rooms](http::Request& req, const service::Requester& who) {
    auto body = req.json_object(true);
    std::string target = req.params[0];
    bool calls_out = target.starts_with("#") && hs.appservice_queries.may_query_alias(target);
    return offload_if(calls_out, [&rooms, who, target, reason = optional_string(body, "reason")] {
      return ok(object{{"room_id", rooms.membership.knock(who, target, reason)}});
    });
  });

  r.client("POST", "/rooms/{}/invite", Auth::required, [&hs, &rooms](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    std::string room_id = room_param(req);
    if (!body.contains("user_id") && (body.contains("id_server") || body.contains("medium") || body.contains("address"))) {
      // Third-party invite: asks the identity server, off the workers.
      std::string id_server = required_string(body, "id_server");
      std::string id_token = required_string(body, "id_access_token");
      std::string medium = required_string(body, "medium");
      std::string address = required_string(body, "address");
      return offload_if(true, [&hs, who, room_id, id_server, id_token, medium, address] {
        hs.third_party_invites.invite(who, room_id, id_server, id_token, medium, address);
        return ok();
      });
    }
    std::string target = required_string(body, "user_id");
    // An unknown user in an appservice's namespace is asked about: off the workers.
    bool calls_out = hs.appservice_queries.may_query_user(target) && !hs.accounts.user_exists(target);
    return offload_if(calls_out, [&rooms, who, room_id, target, reason = optional_string(body, "reason")] {
      rooms.membership.invite(who, room_id, target, reason);
      return ok();
    });
  });
  r.client("POST", "/rooms/{}/leave", Auth::required, [&rooms](http::Request& req, const service::Requester& who) {
    auto body = req.json_object(true);
    rooms.membership.leave(who, room_param(req), optional_string(body, "reason"));
    return ok();
  });
  r.client("POST", "/rooms/{}/forget", Auth::required, [&rooms](http::Request& req, const service::Requester& who) {
    rooms.membership.forget(who, room_param(req));
    return ok();
  });
  r.client("POST", "/rooms/{}/kick", Auth::required, [&rooms](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    rooms.membership.kick(who, room_param(req), required_string(body, "user_id"), optional_string(body, "reason"));
    return ok();
  });
  r.client("POST", "/rooms/{}/ban", Auth::required, [&rooms](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    rooms.membership.ban(who, room_param(req), required_string(body, "user_id"), optional_string(body, "reason"));
    return ok();
  });
  r.client("POST", "/rooms/{}/unban", Auth::required, [&rooms](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    rooms.membership.unban(who, room_param(req), required_string(body, "user_id"), optional_string(body, "reason"));
    return ok();
  });

  r.client("GET", "/joined_rooms", Auth::required, [&rooms](http::Request&, const service::Requester& who) {
    return ok(object{{"joined_rooms", rooms.history.joined_rooms(who.user_id)}});
  });
  r.client("GET", "/rooms/{}/joined_members", Auth::required,
           [&rooms](http::Request& req, const service::Requester& who) { return ok(rooms.history.joined_members(who, room_param(req))); });
  r.client("GET", "/rooms/{}/members", Auth::required, [&rooms](http::Request& req, const service::Requester& who) {
    return ok(object{{"chunk", rooms.history.members(who, room_param(req), req.query_param("membership"),
                                             req.query_param("not_membership"))}});
  });

  r.client("GET", "/rooms/{}/state", Auth::required, [&rooms](http::Request& req, const service::Requester& who) {
    return http::Response::json(rooms.history.state(who, room_param(req)));
  });
  auto get_state = [&rooms](http::Request& req, const service::Requester& who) {
    std::string state_key = req.params.size() > 2 ? req.params[2] : "";
    bool full = req.query_param("format").value_or("content") == "event";
    return ok(rooms.history.state_event(who, room_param(req), req.params[1], state_key, full));
  };
  r.client("GET", "/rooms/{}/state/{}", Auth::required, get_state);
  r.client("GET", "/rooms/{}/state/{}/{}", Auth::required, get_state);
  auto put_state = [&rooms](http::Request& req, const service::Requester& who) {
    std::string state_key = req.params.size() > 2 ? req.params[2] : "";
    auto body = req.json_object();
    auto event_id = rooms.sending.set_state(who, room_param(req), req.params[1], state_key, body, massaged_ts(req, who));
    return ok(object{{"event_id", event_id}});
  };
  r.client("PUT", "/rooms/{}/state/{}", Auth::required, put_state);
  r.client("PUT", "/rooms/{}/state/{}/{}", Auth::required, put_state);

  r.client("PUT", "/rooms/{}/send/{}/{}", Auth::required, [&rooms](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    // rate_limited limits the masqueraded users only: the sender is excluded (registration spec).
    if (!who.appservice || (who.appservice->rate_limited && who.user_id != who.appservice->sender)) {
      rooms.sending.message_limiter().take(who.user_id);
    }
    // Answered when the send's group commits, with no thread waiting for it meanwhile.
    return http::Deferred{[&rooms, who, room_id = room_param(req), type = req.params[1], txn_id = req.params[2],
                           body = std::move(body), ts = massaged_ts(req, who)](auto complete) {
      try {
        rooms.sending.send_message_async(who, room_id, type, txn_id, body, ts,
                                         [complete](std::string event_id, std::exception_ptr error) {
                                           if (error) return complete(http::error_response(error));
                                           complete(http::Response::json(object{{"event_id", event_id}}));
                                         });
      } catch (...) {  // nothing was queued: answer the error now
        complete(http::error_response(std::current_exception()));
      }
    }};
  }, http::Runs::on_io_thread);
  r.client("PUT", "/rooms/{}/redact/{}/{}", Auth::required, [&rooms](http::Request& req, const service::Requester& who) {
    auto body = req.json_object(true);
    auto event_id = rooms.sending.redact(who, room_param(req), req.params[1], req.params[2], optional_string(body, "reason"));
    return ok(object{{"event_id", event_id}});
  });

  r.client("GET", "/rooms/{}/event/{}", Auth::required, [&rooms](http::Request& req, const service::Requester& who) {
    return ok(rooms.history.event(who, room_param(req), req.params[1]));
  });
  r.client("GET", "/rooms/{}/messages", Auth::required, [&rooms](http::Request& req, const service::Requester& who) {
    auto dir = req.query_param("dir").value_or("b");
    auto limit = query_int(req, "limit").value_or(10);
    return ok(rooms.history.messages(who, room_param(req), req.query_param("from"), req.query_param("to"), dir, limit,
                             query_json_object(req, "filter")));
  });
  r.client("GET", "/rooms/{}/context/{}", Auth::required, [&rooms](http::Request& req, const service::Requester& who) {
    auto limit = query_int(req, "limit").value_or(10);
    return ok(rooms.history.context(who, room_param(req), req.params[1], limit, query_json_object(req, "filter")));
  });
}

}  // namespace trestle::api
