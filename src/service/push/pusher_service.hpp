#pragma once
// Push notifications (spec: client-server-api modules/push.md, push-gateway-api): every write
// group evaluates its new events against the push rules of the room's members in the same
// transaction (a worker thread catches up after a start or a failure), stores the notifications
// (GET /notifications: one room row per event plus rows for the members
// whose decision differs, see evaluate_batch) and queues a request per http pusher in SQLite;
// a second worker sends the queue to the gateways (POST data.url) in order per pusher, retrying
// with exponential backoff. Everything queued survives a restart. Pushkeys the gateway rejects
// lose their pusher.
#include "service/appservice/sender.hpp"  // OutboundHttp
#include "service/push/push_rules.hpp"
#include "storage/database.hpp"
#include "storage/push_store.hpp"

#include <boost/json/object.hpp>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

namespace trestle::service {

class PushService {
public:
  static constexpr int64_t kEventsPerBatch = 100;
  static constexpr int64_t kInitialBackoffMs = 1000;
  static constexpr int64_t kMaxBackoffMs = 5 * 60 * 1000;
  static constexpr int kRequestTimeoutMs = 10000;
  // Gateway requests in flight at once, each for a different pusher (a pusher's own requests go
  // in order, one at a time): a gateway that hangs holds up only its own pushers.
  static constexpr int kSenderThreads = 8;
  // A request that keeps failing is dropped after this many attempts (about a day at the cap),
  // as Synapse gives up on a pusher's backlog: a dead gateway must not grow the queue forever.
  static constexpr int64_t kMaxAttempts = 300;

  PushService(storage::Database& db, OutboundHttp http, const AppServiceRegistry& appservices);
  ~PushService();
  void start();
  void stop();
  // Events were committed by another process (an event writer of a shared stream): the evaluator
  // thread takes them now rather than within its next second.
  void poke();

  // GET /notifications: newest first; `from` is a next_token of an earlier answer.
  boost::json::object notifications(const std::string& user_id, const std::optional<std::string>& from, int64_t limit,
                                    bool only_highlight);
  // After POST /pushers/set: remembers which device made the pusher (password changes keep only
  // the pushers of the device that changed it).
  void pusher_set(const std::string& user_id, const std::string& app_id, const std::string& pushkey,
                  const std::optional<std::string>& device_id);
  // The user's read receipt or marker moved: each of their http pushers gets a badge-only
  // notification (`counts.unread`, no event), so a phone can clear its badge (as Synapse does).
  void badge_changed(const std::string& user_id);
  // A password change: pushers created by other devices (access tokens) are removed.
  void password_changed(const std::string& user_id, const std::optional<std::string>& device_id);

private:
  void run_evaluator();
  void run_sender();
  bool evaluate_batch();  // false when caught up
  // Evaluates the events after the cursor up to `upto` (at most kEventsPerBatch), moves the
  // cursor; true when more are left. `queued`: a gateway request was queued.
  // `in_group`: called by the write group hook, whose transaction holds exactly the events up
  // to `upto` (the evaluator thread's may hold later ones).
  bool evaluate_range(storage::Connection& c, int64_t upto, bool& queued, bool in_group);
  // The write group hook (Database::add_group_hook): the group's events in its own transaction.
  void evaluate_in_group(storage::Connection& c, int64_t upto);
  void group_done(bool committed);
  // Users an appservice owns exclusively get no push rules evaluated (bridged users).
  bool owned_by_appservice(const std::string& user_id) const;
  // The badge of a pushed notification (the user's unread notifications, this one included).
  // Counting it reads every room the user is in, so it is counted once and then kept: each
  // notification adds one; a receipt (badge_changed) or a membership change of the user drops it.
  int64_t badge_after_notification(storage::Connection& c, const std::string& user_id);
  void forget_badge(const std::string& user_id);
  // What evaluating an event needs to know about its room, read from the room's current state.
  struct RoomFacts {
    push::EvaluationContext ctx;  // without the user fields
    std::vector<std::string> creators;
    std::set<std::string> attention;  // joined, with their own rules or a pusher
    // The facts hold every event up to here (read by the group hook); 0: not known, so any
    // later state event drops them.
    int64_t read_at = 0;
  };
  // A later state event or redaction in a room whose facts are kept: a membership change is
  // applied to them, anything else drops them. False: they were dropped.
  bool follow_state_event(storage::Connection& c, RoomFacts& facts, const storage::events::StoredEvent& e);
  // The facts of the rooms seen, kept across batches: reading them reads every member of the
  // room (the joined count, who has rules or a pusher), which in a 10,000-member room costs
  // more than the rest of the evaluation. A membership event later than the facts updates them
  // (follow_state_event); another state event or a redaction in the room drops the room's entry;
  // a push rule or pusher written (the generation) or a failed evaluation (it may have read a
  // transaction that rolled back) drops them all. Used only by evaluate_range, which runs inside
  // a write (one at a time).
  static constexpr size_t kMaxCachedRooms = 10000;
  std::unordered_map<std::string, RoomFacts> room_facts_;
  uint64_t room_facts_generation_ = 0;
  std::atomic<bool> room_facts_stale_{false};  // set on a failure; cleared by evaluate_range
  bool send_due(int64_t& next_due_ms);  // false when nothing was sent
  void send_one(const storage::push::QueuedPush& h, int64_t& next_due_ms);

  storage::Database& db_;
  OutboundHttp http_;
  const AppServiceRegistry& appservices_;
  std::mutex mu_;
  std::condition_variable events_cv_, queue_cv_;
  bool stopping_ = false;
  bool events_poked_ = false, queue_poked_ = false;
  static constexpr size_t kMaxCachedBadges = 100000;
  std::mutex badge_mu_;
  std::unordered_map<std::string, int64_t> badges_;
  std::set<std::string> in_flight_;  // pushers (user|app|pushkey) a sender thread is serving
  std::atomic<bool> inline_enabled_{false};  // from start(): the cursor exists
  int group_hook_ = 0;
  bool group_queued_ = false, group_more_ = false;  // the running write group's (one at a time)
  std::thread evaluator_;
  std::vector<std::thread> senders_;
};

}  // namespace trestle::service
