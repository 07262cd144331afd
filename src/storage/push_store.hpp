#pragma once
// Push notifications (task pushpres): the pushers' cursor into the event stream, the stored
// notifications of GET /notifications and the durable queue of push gateway requests.
#include "storage/database.hpp"

#include <climits>
#include <cstdint>
#include <optional>
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

// Bumped by every write to the push_rules or pushers tables (here and in user_data_store): the
// push evaluator keeps which members of a room have their own rules or a pusher until it moves.
// Bumped inside the writing transaction; a bump whose write rolls back only costs a recount.
uint64_t rules_or_pushers_generation();
void rules_or_pushers_changed();

// Every pusher of the user (all kinds).
std::vector<Pusher> pushers_of_user(Connection& c, const std::string& user_id);
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

// The events whose notification rows are stored: rows_from < stream_ordering <= last_stream.
struct RowCoverage {
  int64_t rows_from = 0;
  int64_t last_stream = 0;
};
std::optional<RowCoverage> row_coverage(Connection& c);

// The push evaluator's stored decisions for one user in one room (unread counts): each event
// with the room's row, the user's own row, or both. Events with neither did not notify the user.
struct StoredDecision {
  int64_t stream_ordering = 0;
  std::string sender;  // with a room row
  bool room_row = false;
  std::string room_thread;
  bool room_highlight = false;
  bool own_row = false;
  bool own_notify = false;
  bool own_highlight = false;
  std::string own_thread;
};
struct StoredDecisions {
  std::vector<StoredDecision> rows;  // oldest first
  int64_t upto = 0;                  // read up to here (short of `upto` when the room's rows hit `limit`)
};
// The decisions with after < stream_ordering <= upto, at most `limit` room rows.
StoredDecisions stored_decisions(Connection& c, const std::string& user_id, const std::string& room_id, int64_t after,
                                 int64_t upto, int64_t limit);
// A redacted event notifies no one any more (as Synapse drops its push actions): its room row goes.
void delete_room_notification(Connection& c, int64_t stream_ordering);

// Notifications (migration 26). An event notifies a user when the user's own row says so
// (`notify`), or, without an own row, when the event has a room row, the user was joined when it
// was sent and did not send it. Room rows carry the decision shared by the members on the
// default rules whom the event does not single out; own rows exist only where a decision differs.
struct RoomNotification {
  int64_t stream_ordering = 0;
  std::string room_id, event_id, sender, thread_id;  // thread: "main" or a thread root's event ID
  std::string actions_json;
  bool highlight = false;
  int64_t ts = 0;
};
void add_room_notification(Connection& c, const RoomNotification& n);
// One event's own rows, one per user in the order given, all in the event's thread.
struct UserNotification {
  std::string_view user_id;
  std::string_view actions_json;
  bool highlight = false;
  bool notify = true;  // false: not notified, though the room's row says otherwise
};
void add_notifications(Connection& c, const std::string& room_id, const std::string& event_id,
                       int64_t stream_ordering, int64_t ts, const std::string& thread_id,
                       const std::vector<UserNotification>& rows);

// The stream ranges in which the user was a joined member of the room, from their membership
// events: an event at position s was sent while they were joined when after < s < before.
struct JoinedRange {
  int64_t after = 0;
  int64_t before = INT64_MAX;
};
std::vector<JoinedRange> joined_ranges(Connection& c, const std::string& room_id, const std::string& user_id);

// A user's notifications in one room with after < stream_ordering <= upto. Room rows count only
// inside `joined` (empty: the room's rows never apply to this user).
struct NotificationQuery {
  std::string user_id, room_id;
  std::vector<JoinedRange> joined;
  int64_t after = 0;
  int64_t upto = INT64_MAX;
  std::optional<std::string> thread_id;  // only this thread
  bool only_highlight = false;
};
struct Notification {
  int64_t stream_ordering = 0;
  std::string room_id, event_id, thread_id, actions_json;
  bool highlight = false;
  int64_t ts = 0;
};
// Newest first, at most `limit`.
std::vector<Notification> notifications(Connection& c, const NotificationQuery& q, int64_t limit);
int64_t count_notifications(Connection& c, const NotificationQuery& q);

// The joined members of the room who need more than the room's shared decision: those with
// their own push rules or a pusher.
std::vector<std::string> joined_users_with_rules_or_pushers(Connection& c, const std::string& room_id);
// Whether the user has their own push rules or a pusher (the test above, for one user).
bool has_rules_or_pusher(Connection& c, const std::string& user_id);

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
bool is_queued(Connection& c, int64_t id);
void reschedule(Connection& c, int64_t id, int64_t attempts, int64_t next_try_ts);
int64_t queue_size(Connection& c);

}  // namespace trestle::storage::push
