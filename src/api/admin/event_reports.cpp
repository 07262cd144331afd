// Synapse's admin API for event reports (docs/admin_api/event_reports.md): list, read, delete.
#include "api/admin/admin_routes.hpp"
#include "api/admin/admin_util.hpp"

#include <algorithm>
#include <cctype>

namespace trestle::api::admin {

namespace {

int64_t report_id(const std::string& s) {
  const char* msg = "The report_id parameter must be a string representing a positive integer.";
  if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), [](unsigned char ch) { return std::isdigit(ch); })) {
    throw MatrixError::invalid_param(msg);
  }
  return std::stoll(s);
}

}  // namespace

void add_event_report_routes(http::Router& r, service::Homeserver& hs) {
  auto& admin = hs.room_admin;
  route(r, hs, "GET", "/v1/event_reports", [&admin](http::Request& req, const service::Requester&) {
    storage::room_admin::ReportQuery q;
    q.offset = query_int(req, "from").value_or(0);
    q.limit = query_int(req, "limit").value_or(100);
    q.newest_first = query_backwards(req, true);
    q.user_id = req.query_param("user_id");
    q.room_id = req.query_param("room_id");
    q.event_sender_user_id = req.query_param("event_sender_user_id");
    return ok(admin.event_reports(q));
  });
  route(r, hs, "GET", "/v1/event_reports/{}", [&admin](http::Request& req, const service::Requester&) {
    return ok(admin.event_report(report_id(req.params[0])));
  });
  route(r, hs, "DELETE", "/v1/event_reports/{}", [&admin](http::Request& req, const service::Requester&) {
    admin.delete_event_report(report_id(req.params[0]));
    return ok();
  });
}

}  // namespace trestle::api::admin
