#pragma once
// Push notifications (task pushpres): the pushers' cursor into the event stream, the stored
// notifications of GET /notifications and the durable queue of push gateway requests.
#include "storage/database.hpp"

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace trestle::storage::push {

struct Pusher {
  std::string user_id, app_id, pushkey;
  std::string data_json;  // the stored pusher object (kind, data, lang, ...)
  std::optional<std::string> device_id;
  int64_t created_ts = 0;
};

// Every pusher of the user (all kinds).
std::vector<Pusher> pushers_of_user(Connection& c, const std::string& user_id);
// The users that have at least one pusher (all kinds).
std::set<std::string> users_with_pushers(Connection& c);
// Records which device made the pusher and when (after user_data::put_pusher).
void set_pusher_origin(Connection& c, const std::string& user_id, const std::string& app_id,
                       const std::string& pushkey, const std::optional<std::string>& device_id, int64_t ts);
// Removes the pushers of `user_id` made by a device other than `keep_device`, with their queues.
void delete_pushers_of_other_devices(Connection& c, const std::string& user_id, const std::string& keep_device);
bool pusher_exists(Connection& c, const std::string& user_id, const std::string& app_id, const std::string& pushkey);
// Removes one pusher and its queue.
void delete_pusher(Connection& c, const std::string& user_id, const std::string& app_id, const std::string& pushkey);

// The stream position up to which events were turned into notifications (nullopt: never ran).
std::optional<int64_t> cursor(Connection& c);
void set_cursor(Connection& c, int64_t position);

struct Notification {
  int64_t id = 0;
  std::string room_id, event_id;
  int64_t stream_ordering = 0;
  std::string actions_json;
  bool highlight = false;
  int64_t ts = 0;
};
// One event's notifications, one row per user in the order given, all in the event's thread
// ("main" or a thread root's event ID).
struct UserNotification {
  std::string_view user_id;
  std::string_view actions_json;
  bool highlight = false;
};
void add_notifications(Connection& c, const std::string& room_id, const std::string& event_id,
                       int64_t stream_ordering, int64_t ts, const std::string& thread_id,
                       const std::vector<UserNotification>& rows);
// Newest first, ids below `before` (0: from the newest).
std::vector<Notification> notifications(Connection& c, const std::string& user_id, int64_t before, int64_t limit,
                                        bool only_highlight);
// Rooms where the user has notifications after `after_stream`... (used with each room's receipt).
std::vector<std::string> notification_rooms(Connection& c, const std::string& user_id);
int64_t count_notifications_after(Connection& c, const std::string& user_id, const std::string& room_id,
                                  int64_t after_stream);

struct QueuedPush {
  int64_t id = 0;
  std::string user_id, app_id, pushkey, body;
  int64_t attempts = 0;
  int64_t next_try_ts = 0;
};
void enqueue(Connection& c, const QueuedPush& p);
// The oldest queued request of each pusher.
std::vector<QueuedPush> queue_heads(Connection& c, int64_t limit);
void dequeue(Connection& c, int64_t id);
void reschedule(Connection& c, int64_t id, int64_t attempts, int64_t next_try_ts);
int64_t queue_size(Connection& c);

}  // namespace trestle::storage::push
