#include "service/reports.hpp"

#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/identifiers.hpp"
#include "service/visibility.hpp"
#include "storage/account_store.hpp"
#include "storage/event_store.hpp"
#include "storage/report_store.hpp"
#include "storage/room_store.hpp"

#include <boost/json/serialize.hpp>

namespace trestle::service {

namespace ev = storage::events;

namespace {

size_t utf8_chars(const std::string& s) {
  size_t n = 0;
  for (unsigned char ch : s) n += (ch & 0xC0) != 0x80;
  return n;
}

}  // namespace

ReportService::ReportService(const config::Config& cfg, storage::Database& db)
    : cfg_(cfg), db_(db), limiter_(cfg.rc_reports) {}

void ReportService::check_reason(const std::string& reason) const {
  if (utf8_chars(reason) > kMaxReasonChars) {
    throw MatrixError::bad_json("Reason must be at most " + std::to_string(kMaxReasonChars) + " characters");
  }
}

void ReportService::report_event(const Requester& r, const std::string& room_id, const std::string& event_id,
                                 const std::optional<std::string>& reason, std::optional<int64_t> score) {
  if (reason) check_reason(*reason);
  limiter_.take(r.user_id);
  db_.write([&](storage::Connection& c) {
    const MatrixError hidden = MatrixError::not_found("Unable to report event: it does not exist or you aren't able to see it");
    auto m = ev::get_membership(c, room_id, r.user_id);
    if (!m || m->membership != "join") throw hidden;
    auto e = ev::get_event(c, event_id);
    if (!e || e->room_id != room_id || e->redacted_by || !event_visible_to(c, r.user_id, *e)) throw hidden;
    boost::json::object content;
    if (reason) content["reason"] = *reason;
    if (score) content["score"] = *score;
    storage::reports::EventReport rep;
    rep.received_ts = core::now_ms();
    rep.room_id = room_id;
    rep.event_id = event_id;
    rep.user_id = r.user_id;
    rep.reason = reason;
    rep.content_json = boost::json::serialize(content);
    storage::reports::add_event_report(c, rep);
  });
}

void ReportService::report_room(const Requester& r, const std::string& room_id, const std::string& reason) {
  check_reason(reason);
  limiter_.take(r.user_id);
  db_.write([&](storage::Connection& c) {
    if (!storage::rooms::get_room(c, room_id)) throw MatrixError::not_found("Room does not exist");
    storage::reports::add_room_report(c, {0, core::now_ms(), room_id, r.user_id, reason});
  });
}

void ReportService::report_user(const Requester& r, const std::string& target_user_id, const std::string& reason) {
  auto target = core::parse_user_id(target_user_id);
  if (!target) throw MatrixError::invalid_param("Invalid user ID");
  check_reason(reason);
  limiter_.take(r.user_id);
  if (target->server_name != cfg_.server_name) return;  // not ours: nothing an admin here can do
  db_.write([&](storage::Connection& c) {
    if (!storage::accounts::get_user(c, target_user_id)) return;  // do not reveal that they do not exist
    storage::reports::add_user_report(c, {0, core::now_ms(), target_user_id, r.user_id, reason});
  });
}

}  // namespace trestle::service
