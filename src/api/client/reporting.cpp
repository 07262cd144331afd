// Reporting content (spec: report_content.yaml): events, rooms (v1.13) and users (v1.14).
#include "api/handler_util.hpp"
#include "api/routes.hpp"
#include "core/identifiers.hpp"

namespace trestle::api {

using http::Auth;

void add_reporting_routes(http::Router& r, service::Homeserver& hs) {
  r.client("POST", "/rooms/{}/report/{}", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    std::optional<std::string> reason;
    if (auto* v = body.if_contains("reason"); v && !v->is_null()) {
      if (!v->is_string()) throw MatrixError::bad_json("Param 'reason' must be a string");
      reason = std::string(v->as_string());
    }
    // `score` was removed in v1.18; older clients still send it (-100 to 0 then): an integer.
    std::optional<int64_t> score;
    if (auto* v = body.if_contains("score"); v && !v->is_null()) {
      if (!v->is_int64()) throw MatrixError::bad_json("Param 'score' must be an integer");
      score = v->as_int64();
    }
    hs.reports.report_event(who, req.params[0], req.params[1], reason, score);
    return ok();
  });
  r.client("POST", "/rooms/{}/report", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    hs.reports.report_room(who, req.params[0], required_string(body, "reason"));
    return ok();
  });
  r.client("POST", "/users/{}/report", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    hs.reports.report_user(who, req.params[0], required_string(body, "reason"));
    return ok();
  });
}

}  // namespace trestle::api
