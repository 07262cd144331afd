// Client-Server endpoints for appservices: ping (appservice_ping.yaml), third-party lookups
// (third_party_lookup.yaml), appservice room directories (appservice_room_directory.yaml), and
// Trestle's delivery status for operators.
#include "api/appservice/offload.hpp"
#include "api/handler_util.hpp"
#include "api/routes.hpp"
#include "core/identifiers.hpp"

#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include <set>

namespace trestle::api {

using boost::json::array;
using boost::json::object;
using http::Auth;

namespace {

const service::AppService& require_appservice(const service::Requester& who) {
  if (!who.appservice) throw MatrixError::forbidden("This endpoint is only for application services");
  return *who.appservice;
}

std::string encode(const std::string& s) { return boost::urls::encode(s, boost::urls::unreserved_chars); }

// The request's query string minus authentication, re-encoded, for forwarding.
std::string forwarded_query(const http::Request& req) {
  std::string q;
  for (const auto& [k, v] : req.query) {
    if (k == "access_token") continue;
    q += (q.empty() ? "?" : "&") + encode(k) + "=" + encode(v);
  }
  return q;
}

}  // namespace

void add_appservice_routes(http::Router& r, service::Homeserver& hs) {
  r.add("POST", "/_matrix/client/v1/appservice/{}/ping", Auth::required,
        [&hs](http::Request& req, const service::Requester& who) {
          const auto& as = require_appservice(who);
          if (as.id != req.params[0]) throw MatrixError::forbidden("Appservice ID does not match the as_token");
          auto body = req.json_object(true);
          const service::AppService* asp = &as;
          return offload_if(true, [&hs, asp, txn = optional_string(body, "transaction_id")] {
            auto duration = hs.appservice_queries.ping(*asp, txn);
            hs.appservice_sender.poke(asp->id);
            return ok(object{{"duration_ms", duration}});
          });
        });

  // Every third-party lookup waits on appservices: each runs on the outbound pool (offload.hpp).
  r.client("GET", "/thirdparty/protocols", Auth::required, [&hs](http::Request&, const service::Requester&) {
    return offload_if(true, [&hs] {
      object out;
      std::set<std::string> asked;
      for (const auto& as : hs.appservices.all()) {
        for (const auto& p : as->protocols) {
          if (!asked.insert(p).second) continue;
          if (auto meta = hs.appservice_queries.protocol(p)) out[p] = std::move(*meta);
        }
      }
      return ok(out);
    });
  });
  r.client("GET", "/thirdparty/protocol/{}", Auth::required, [&hs](http::Request& req, const service::Requester&) {
    return offload_if(true, [&hs, protocol = req.params[0]] {
      auto meta = hs.appservice_queries.protocol(protocol);
      if (!meta) throw MatrixError::not_found("Unknown protocol");
      return ok(*meta);
    });
  });
  for (const std::string kind : {"location", "user"}) {
    r.client("GET", "/thirdparty/" + kind + "/{}", Auth::required,
             [&hs, kind](http::Request& req, const service::Requester&) -> http::Reply {
               std::string protocol = req.params[0];
               std::string path = "/_matrix/app/v1/thirdparty/" + kind + "/" + encode(protocol) + forwarded_query(req);
               return offload_if(true, [&hs, protocol, path]() -> http::Reply {
                 return http::Response::json(hs.appservice_queries.thirdparty(protocol, path, true));
               });
             });
    r.client("GET", "/thirdparty/" + kind, Auth::required,
             [&hs, kind](http::Request& req, const service::Requester&) -> http::Reply {
               std::string path = "/_matrix/app/v1/thirdparty/" + kind + forwarded_query(req);
               return offload_if(true, [&hs, path]() -> http::Reply {
                 return http::Response::json(hs.appservice_queries.thirdparty("", path, true));
               });
             });
  }

  r.client("PUT", "/directory/list/appservice/{}/{}", Auth::required,
           [&hs](http::Request& req, const service::Requester& who) {
             const auto& as = require_appservice(who);
             auto body = req.json_object();
             auto visibility = required_string(body, "visibility");
             if (!core::is_valid_room_id(req.params[1])) throw MatrixError::invalid_param("Invalid room ID");
             hs.rooms.directory.set_appservice_room_visibility(as.id, req.params[0], req.params[1], visibility);
             return ok();
           });
  // Not in the spec, but Synapse's (and SyTest's): DELETE unpublishes, as PUT with "private".
  r.client("DELETE", "/directory/list/appservice/{}/{}", Auth::required,
           [&hs](http::Request& req, const service::Requester& who) {
             const auto& as = require_appservice(who);
             if (!core::is_valid_room_id(req.params[1])) throw MatrixError::invalid_param("Invalid room ID");
             hs.rooms.directory.set_appservice_room_visibility(as.id, req.params[0], req.params[1], "private");
             return ok();
           });

  // Delivery status for operators: each appservice may read its own with its as_token.
  r.add("GET", "/_trestle/admin/v1/appservices/{}/status", Auth::required,
        [&hs](http::Request& req, const service::Requester& who) {
          const auto& as = require_appservice(who);
          if (as.id != req.params[0]) throw MatrixError::forbidden("Appservice ID does not match the as_token");
          for (const auto& s : hs.appservice_sender.status()) {
            if (s.appservice_id != as.id) continue;
            return ok(object{{"appservice_id", s.appservice_id},
                             {"last_stream", s.last_stream},
                             {"stream_lag", s.stream_lag},
                             {"queued_txns", s.queued_txns},
                             {"delivered_txns", s.delivered_txns},
                             {"delivered_events", s.delivered_events},
                             {"backoff_ms", s.backoff_ms},
                             {"last_success_ts", s.last_success_ts},
                             {"last_error", s.last_error},
                             {"skipped_events", s.skipped_events},
                             {"last_skipped", s.last_skipped}});
          }
          return ok(object{{"appservice_id", as.id}, {"url", nullptr}});
        });
}

}  // namespace trestle::api
