#pragma once
// Synapse's admin API for rooms (docs/admin_api/rooms.md, purge_history_api.md, event_reports.md):
// listing and inspecting rooms, blocking them, deleting them (shut down: local members leave,
// optionally into a replacement room; then the room's data is purged), purging history before a
// point, joining local users to rooms, and the event reports users sent.
//
// Deletions and history purges run on one background thread, in the order asked; their status is
// kept in memory (as Synapse's is, until restart) for 24 hours after they end.
#include "config/config.hpp"
#include "service/accounts.hpp"
#include "service/rooms/rooms.hpp"
#include "storage/database.hpp"
#include "storage/room_admin_store.hpp"

#include <boost/json/object.hpp>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace trestle::service {

struct RoomDeleteParams {
  std::string requester_user_id;  // the admin
  std::optional<std::string> new_room_user_id;
  std::optional<std::string> room_name;
  std::optional<std::string> message;
  bool block = false;
  bool purge = true;
  bool force_purge = false;
};

class RoomAdminService {
public:
  RoomAdminService(const config::Config& cfg, storage::Database& db, Rooms& rooms, AccountService& accounts);
  ~RoomAdminService();  // finishes the running task, drops the queued ones
  RoomAdminService(const RoomAdminService&) = delete;

  // GET /v1/rooms. order_by must be one of Synapse's sort orders (400 M_INVALID_PARAM otherwise).
  boost::json::object list_rooms(const storage::room_admin::RoomQuery& q);
  // GET /v1/rooms/{roomId}, /members, /state: 404 M_NOT_FOUND "Room not found" for unknown rooms.
  boost::json::object room_details(const std::string& room_id);
  boost::json::object members(const std::string& room_id);
  boost::json::object state(const std::string& room_id, const std::optional<std::string>& type);
  // GET /v1/rooms/{roomId}/messages and /context/{eventId}: as the client API, every event shown
  // (an admin need not be in the room; history visibility does not apply).
  boost::json::object messages(const std::string& room_id, const std::optional<std::string>& from,
                               const std::optional<std::string>& to, const std::string& dir, int64_t limit,
                               const boost::json::object& filter);
  boost::json::object context(const std::string& room_id, const std::string& event_id, int64_t limit,
                              const boost::json::object& filter);

  // Block: any valid room ID, known here or not (400 for an invalid one).
  boost::json::object block_status(const std::string& room_id);
  void set_blocked(const std::string& room_id, bool block, const std::string& admin_user_id);
  // Whether joins and invites to the room are refused.
  bool is_blocked(const std::string& room_id);

  // DELETE /v2/rooms/{roomId}: starts the deletion in the background, returns its delete_id.
  std::string start_delete(const std::string& room_id, const RoomDeleteParams& p);
  // DELETE /v1/rooms/{roomId}: the same, done before answering; the shutdown result.
  boost::json::object delete_now(const std::string& room_id, const RoomDeleteParams& p);
  boost::json::object delete_status_by_room(const std::string& room_id);
  boost::json::object delete_status(const std::string& delete_id);

  // POST /v1/purge_history/{roomId}[/{eventId}]: returns the purge_id.
  std::string start_purge_history(const std::string& room_id, const std::optional<std::string>& event_id,
                                  const boost::json::object& body);
  boost::json::object purge_history_status(const std::string& purge_id);

  // POST /v1/join/{roomIdOrAlias}: joins a local user (invited first by the admin when the room
  // needs an invite and the admin can give one). Returns the room ID.
  std::string join_user(const std::string& room_id_or_alias, const std::string& user_id,
                        const std::string& admin_user_id);
  // POST /v1/rooms/{roomIdOrAlias}/make_room_admin.
  void make_room_admin(const std::string& room_id_or_alias, const std::string& user_id);

  // Event reports.
  boost::json::object event_reports(const storage::room_admin::ReportQuery& q);
  boost::json::object event_report(int64_t id);
  void delete_event_report(int64_t id);

private:
  struct Task {
    std::string id;
    std::string room_id;
    std::string kind;    // "delete" or "purge_history"
    std::string status;  // "scheduled"/"active"/"complete"/"failed" ("active" for a purge not done)
    std::optional<std::string> error;
    boost::json::object shutdown_room;  // deletions: kicked_users, failed_to_kick_users, ...
    int64_t finished_ts = 0;
  };
  // Shuts the room down and purges it; updates the task's result as it goes.
  void run_delete(const std::string& task_id, const std::string& room_id, const RoomDeleteParams& p);
  boost::json::object shutdown(const std::string& room_id, const RoomDeleteParams& p,
                               const std::function<void(const boost::json::object&)>& progress);
  void purge(const std::string& room_id, bool force);
  void validate_delete(const std::string& room_id, const RoomDeleteParams& p);
  std::string new_task(const std::string& room_id, const std::string& kind);
  void update_task(const std::string& id, const std::function<void(Task&)>& fn);
  boost::json::object task_json(const Task& t) const;
  void enqueue(std::function<void()> job);
  void worker_loop();
  void forget_old_tasks();  // under mu_

  const config::Config& cfg_;
  storage::Database& db_;
  Rooms& rooms_;
  AccountService& accounts_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::map<std::string, Task> tasks_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace trestle::service
