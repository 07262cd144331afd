// GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event (spec: room_event_by_timestamp.yaml, v1.6).
#include "api/handler_util.hpp"
#include "api/routes.hpp"

namespace trestle::api {

using boost::json::object;
using http::Auth;

void add_timestamp_routes(http::Router& r, service::Homeserver& hs) {
  r.add("GET", "/_matrix/client/v1/rooms/{}/timestamp_to_event", Auth::required,
        [&hs](http::Request& req, const service::Requester& who) {
          auto ts_text = req.query_param("ts");
          if (!ts_text) throw MatrixError::missing_param("Missing integer query parameter 'ts'");
          auto ts = query_int(req, "ts");
          if (!ts || *ts < 0) throw MatrixError::invalid_param("ts must be a non-negative integer");
          auto dir = req.query_param("dir");
          if (!dir) throw MatrixError::missing_param("Missing query parameter 'dir'");
          if (*dir != "f" && *dir != "b") throw MatrixError::invalid_param("dir must be 'f' or 'b'");
          auto match = hs.timestamps.closest(who, req.params[0], *ts, *dir == "f");
          return ok(object{{"event_id", match.event_id}, {"origin_server_ts", match.origin_server_ts}});
        });
}

}  // namespace trestle::api
