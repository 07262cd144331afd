// The replication endpoints the processes of one deployment call on each other (our own prefix,
// /_trestle/replication; Synapse's payloads differ). Served only on listeners whose resources
// include `replication` (Synapse's resource name; instance_map points at them), behind
// worker_replication_secret when it is set.
//
// POST /_trestle/replication/v1/send_event: an event of a room this process writes, created by
// another process (service/event_forwarder.hpp). Written here as if a client had sent it; never
// forwarded again.
#include "api/routes.hpp"
#include "core/crypto.hpp"
#include "core/json_depth.hpp"
#include "service/event_forwarder.hpp"

#include <algorithm>

namespace trestle::api {

using http::Auth;

namespace {

bool listener_serves_replication(const config::Config& cfg, unsigned short port) {
  return std::any_of(cfg.listeners.begin(), cfg.listeners.end(), [&](const config::Listener& l) {
    return l.port == port && std::find(l.resources.begin(), l.resources.end(), "replication") != l.resources.end();
  });
}

// Synapse's worker_replication_secret: "Authorization: Bearer <secret>", compared in constant time.
void check_secret(const config::Config& cfg, const std::string& authorization) {
  if (cfg.worker_replication_secret.empty()) return;
  static constexpr std::string_view kBearer = "Bearer ";
  std::string_view given = authorization;
  bool good = given.starts_with(kBearer) &&
              core::constant_time_equal(given.substr(kBearer.size()), cfg.worker_replication_secret);
  if (!good) throw MatrixError(403, "M_FORBIDDEN", service::replication::kBadSecret);
}

}  // namespace

void add_replication_routes(http::Router& r, service::Homeserver& hs) {
  r.add("POST", service::replication::kSendEventPath, Auth::none,
        [&hs](http::Request& req, const service::Requester&) -> http::Reply {
          if (!listener_serves_replication(hs.config, req.local_port)) {
            throw MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request");
          }
          check_secret(hs.config, req.authorization);
          // Built by another process of ours from a request it accepted: an event's content sits
          // a few levels inside the wire form, so it is read with the stored-JSON margin.
          boost::json::value body;
          try {
            body = core::parse_stored_json(req.body);
          } catch (const std::exception& e) {
            throw MatrixError::not_json(std::string("Content not JSON: ") + e.what());
          }
          if (!body.is_object()) throw MatrixError::bad_json("Content must be a JSON object");
          auto sent = service::replication::parse_send_request(body.as_object());
          auto& writer = hs.rooms.writer;
          // Only the room's own writer writes it; a forward is never forwarded again (no loops).
          if (!writer.writes_room(sent.event.room_id)) {
            throw MatrixError(400, "M_UNKNOWN", "This process is not this room's writer ('" +
                                                    hs.config.event_writer_for(sent.event.room_id) + "' is)");
          }
          if (!sent.txn) {
            return http::Response::json(service::replication::send_answer({writer.send(sent.event), true}));
          }
          // A client transaction: answered when its group commits, with no thread waiting.
          return http::Deferred{[&writer, sent = std::move(sent)](auto complete) mutable {
            try {
              writer.send_once_async(std::move(sent.event), std::move(*sent.txn),
                                     [complete](service::EventWriter::Sent s, std::exception_ptr error) {
                                       if (error) return complete(http::error_response(error));
                                       complete(http::Response::json(service::replication::send_answer(s)));
                                     });
            } catch (...) {  // nothing was queued: answer the error now
              complete(http::error_response(std::current_exception()));
            }
          }};
        });
}

}  // namespace trestle::api
