#pragma once
// What Synapse's admin API for rooms reads and writes (storage/room_admin_store): room statistics
// for the room list and details, blocked rooms, deleting a whole room's data (purge) or the
// timeline before a point (purge history), and the event reports admins read.
#include "storage/database.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace trestle::storage::room_admin {

// One room as the admin room list shows it (Synapse's room_stats_state + room_stats_current).
struct RoomStats {
  std::string room_id;
  std::optional<std::string> name;
  std::optional<std::string> canonical_alias;
  int64_t joined_members = 0;
  int64_t joined_local_members = 0;
  std::string version;
  std::string creator;
  std::optional<std::string> encryption;
  bool federatable = true;
  bool is_public = false;
  std::optional<std::string> join_rules;
  std::optional<std::string> guest_access;
  std::optional<std::string> history_visibility;
  int64_t state_events = 0;
  std::optional<std::string> room_type;
};

struct RoomQuery {
  int64_t offset = 0;
  int64_t limit = 100;
  std::string order_by = "name";  // one of Synapse's RoomSortOrder values (checked by the caller)
  bool reverse = false;           // dir=b
  std::optional<std::string> search_term;
  std::optional<bool> public_rooms;
  std::optional<bool> empty_rooms;
};

// The page of rooms and the total the query matches. `server_name` tells local users apart.
std::pair<std::vector<RoomStats>, int64_t> list_rooms(Connection& c, const std::string& server_name,
                                                      const RoomQuery& q);
std::optional<RoomStats> room_stats(Connection& c, const std::string& server_name, const std::string& room_id);
// Devices of the room's joined (local) users.
int64_t joined_local_devices(Connection& c, const std::string& room_id);
// Whether every local user has forgotten the room (true when no local user has a membership).
bool locally_forgotten(Connection& c, const std::string& server_name, const std::string& room_id);
std::vector<std::string> joined_users(Connection& c, const std::string& room_id);
// Local users with any membership in the room, with it.
std::vector<std::pair<std::string, std::string>> local_members(Connection& c, const std::string& server_name,
                                                               const std::string& room_id);
bool local_users_joined(Connection& c, const std::string& server_name, const std::string& room_id);

// Blocked rooms: who blocked the room, if it is blocked.
std::optional<std::string> blocked_by(Connection& c, const std::string& room_id);
void block_room(Connection& c, const std::string& room_id, const std::string& user_id);
void unblock_room(Connection& c, const std::string& room_id);

// Deletes every row of the room from every table that holds rooms (not blocked_rooms, nor the
// content reports, which are for abuse management, as Synapse keeps them).
void purge_room(Connection& c, const std::string& room_id);

// Deletes the room's non-state events before stream position `before` (exclusive), with their
// relations, search entries, notifications and transaction ids; events of local senders only when
// `delete_local`. Returns how many events were deleted.
int64_t purge_history(Connection& c, const std::string& server_name, const std::string& room_id, int64_t before,
                      bool delete_local);
// The stream position of the room's last event with origin_server_ts below `ts`, if any.
std::optional<int64_t> last_event_before_ts(Connection& c, const std::string& room_id, int64_t ts);

// Event reports as the admin API lists them.
struct EventReportRow {
  int64_t id = 0;
  int64_t received_ts = 0;
  std::string room_id;
  std::string event_id;
  std::string user_id;
  std::optional<std::string> reason;
  std::string content_json;
  std::optional<std::string> sender;  // of the reported event, while it is stored
  std::optional<std::string> name;
  std::optional<std::string> canonical_alias;
};
struct ReportQuery {
  int64_t offset = 0;
  int64_t limit = 100;
  bool newest_first = true;
  std::optional<std::string> user_id;
  std::optional<std::string> room_id;
  std::optional<std::string> event_sender_user_id;
};
std::pair<std::vector<EventReportRow>, int64_t> list_event_reports(Connection& c, const ReportQuery& q);
std::optional<EventReportRow> get_event_report(Connection& c, int64_t id);
bool delete_event_report(Connection& c, int64_t id);

}  // namespace trestle::storage::room_admin
