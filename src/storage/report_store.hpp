#pragma once
// Content reports (spec: report_content.yaml) kept for the server's admins. The tables follow
// Synapse's event_reports, room_reports and user_reports so its admin API can be served over them.
#include "storage/database.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace trestle::storage::reports {

struct EventReport {
  int64_t id = 0;
  int64_t received_ts = 0;
  std::string room_id;
  std::string event_id;
  std::string user_id;  // the reporter
  std::optional<std::string> reason;
  std::string content_json;  // the request body as sent (reason, and the deprecated score)
};

struct RoomReport {
  int64_t id = 0;
  int64_t received_ts = 0;
  std::string room_id;
  std::string user_id;
  std::string reason;
};

struct UserReport {
  int64_t id = 0;
  int64_t received_ts = 0;
  std::string target_user_id;
  std::string user_id;
  std::string reason;
};

int64_t add_event_report(Connection& c, const EventReport& r);
int64_t add_room_report(Connection& c, const RoomReport& r);
int64_t add_user_report(Connection& c, const UserReport& r);

// Newest first, ids below `before_id` (0: from the newest), at most `limit`.
std::vector<EventReport> event_reports(Connection& c, int64_t before_id, int64_t limit);
std::vector<RoomReport> room_reports(Connection& c, int64_t before_id, int64_t limit);
std::vector<UserReport> user_reports(Connection& c, int64_t before_id, int64_t limit);

}  // namespace trestle::storage::reports
