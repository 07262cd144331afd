#pragma once
// Content reports (spec: report_content.yaml): users report events, rooms and users to the
// server's admins. Reports are stored (storage/report_store) for the admin API; nothing is sent.
#include "config/config.hpp"
#include "service/rate_limiter.hpp"
#include "service/requester.hpp"
#include "storage/database.hpp"

#include <boost/json/object.hpp>
#include <optional>
#include <string>

namespace trestle::service {

class ReportService {
public:
  ReportService(const config::Config& cfg, storage::Database& db);

  // POST /rooms/{roomId}/report/{eventId}. 404 M_NOT_FOUND, the same answer whether the event
  // does not exist, is in another room, is redacted, or the reporter is not joined or may not see
  // it (the spec: nothing about the event's existence is revealed).
  void report_event(const Requester& r, const std::string& room_id, const std::string& event_id,
                    const std::optional<std::string>& reason, std::optional<int64_t> score);
  // POST /rooms/{roomId}/report: any user, joined or not; 404 for rooms this server does not know.
  void report_room(const Requester& r, const std::string& room_id, const std::string& reason);
  // POST /users/{userId}/report. Like Synapse (and as the spec allows), 200 whether or not the
  // user exists: a report about a user of another server or an unknown user is not stored.
  void report_user(const Requester& r, const std::string& target_user_id, const std::string& reason);

  // Longest reason accepted, in characters (Synapse's limit for user reports).
  static constexpr size_t kMaxReasonChars = 1000;

private:
  void check_reason(const std::string& reason) const;

  const config::Config& cfg_;
  storage::Database& db_;
  RateLimiter limiter_;
};

}  // namespace trestle::service
