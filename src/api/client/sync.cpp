// GET /sync (spec: sync.yaml).
#include "api/client/long_poll_reply.hpp"
#include "api/handler_util.hpp"
#include "core/json_depth.hpp"
#include "api/routes.hpp"
#include "service/filter.hpp"

#include <boost/json/parse.hpp>

namespace trestle::api {

using http::Auth;

void add_sync_routes(http::Router& r, service::Homeserver& hs) {
  r.client("GET", "/sync", Auth::required, [&hs](http::Request& req, const service::Requester& who) -> http::Reply {
    service::SyncRequest sr;
    sr.since = req.query_param("since");
    sr.timeout_ms = query_int(req, "timeout").value_or(0);
    sr.full_state = req.query_param("full_state").value_or("false") == "true";
    sr.use_state_after = req.query_param("use_state_after").value_or("false") == "true";
    if (auto f = req.query_param("filter"); f && !f->empty()) {
      if ((*f)[0] == '{') {
        boost::system::error_code ec;
        auto v = boost::json::parse(*f, ec, {}, core::json_parse_options());
        if (ec || !v.is_object()) throw MatrixError::invalid_param("filter is not valid JSON");
        service::validate_filter(v.as_object());
        sr.filter = v.as_object();
      } else {
        sr.filter = hs.user_data.get_filter(who.user_id, *f);
      }
    }
    // Syncing marks the user online unless the client says otherwise (spec: set_presence).
    // `offline` leaves presence as it is (Synapse: a client that does not count as activity).
    if (auto set = req.query_param("set_presence").value_or("online"); set != "offline") hs.presence.touch(who.user_id, set);
    return to_reply(hs.sync.sync(who, sr));
  });
}

}  // namespace trestle::api
