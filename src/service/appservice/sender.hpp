#pragma once
// Durable, ordered delivery of events to appservices (spec: application-service-api.md
// "Pushing events"). Two threads per appservice with a URL: a builder turns the global event
// stream into transactions of at most 100 events and stores each one; a deliverer sends the stored
// ones in txn id order, one at a time, and retries the same txn id with the same body until the
// appservice accepts it. While one is being sent the builder already builds and stores the next
// (one ahead), so a transaction's database write overlaps the previous one's HTTP round trip. A
// slow or dead appservice only ever blocks its own threads.
//
// Several processes on one database (issue 13): each appservice is sent to by one process at a
// time, the holder of its lease (storage/appservice_store.hpp). A lease thread takes the leases this
// process may take (at once for the instance named by notify_appservices_from_worker, "main" when
// unset; after the holder's lease expired for any other) and renews them every kLeaseMs / 3; the
// builder and deliverer of an appservice run only while its lease is held, and stop at once when a
// renewal (or a write's fence) says it is gone. Every write of the sender checks the fence in its
// own transaction (the write group hook's only in a deployment of several processes: alone, the
// process holds every lease it runs), so a process that lost the lease (paused, not dead) stores
// nothing; its deliverer at worst sends an already stored transaction once more, with the same id
// and body. A clean stop releases the leases: another process takes them at once. The instance
// named to send takes its lease back from another holder at once when it starts again.
#include "service/appservice/registration.hpp"
#include <boost/json/object.hpp>
#include "service/notifier.hpp"
#include "storage/appservice_store.hpp"
#include "storage/database.hpp"
#include "storage/event_store.hpp"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace trestle::service {

struct OutboundResponse {
  int status = 0;  // 0: no HTTP response (see error)
  std::string body;
  std::string error;
  bool timed_out = false;
  bool not_sent = false;  // refused before sending (AppServiceQueries' in-flight limit, breaker)
};
// The transport, injected by main so this layer stays free of the HTTP stack.
using OutboundHttp = std::function<OutboundResponse(
    const std::string& method, const std::string& base_url, const std::string& path_and_query,
    const std::vector<std::pair<std::string, std::string>>& headers, const std::string& body, int timeout_ms)>;

struct DeliveryStatus {
  std::string appservice_id;
  int64_t last_stream = 0;      // queued up to here
  int64_t stream_lag = 0;       // committed stream position minus last_stream
  int64_t queued_txns = 0;
  int64_t delivered_txns = 0;   // since start
  int64_t delivered_events = 0; // since start
  int64_t backoff_ms = 0;       // current retry delay, 0 when healthy
  int64_t last_success_ts = 0;
  std::string last_error;       // why delivery is failing or stuck now; empty when it is not
  int64_t skipped_events = 0;   // since start: events that could not be read or formatted
  std::string last_skipped;     // the last of them: event id, stream position, reason
};

class AppServiceSender {
public:
  static constexpr int64_t kMaxEventsPerTxn = 100;
  static constexpr int64_t kMaxToDevicePerTxn = 100;  // MSC4203 to-device messages per transaction
  static constexpr int64_t kInitialBackoffMs = 1000;
  static constexpr int64_t kMaxBackoffMs = 5 * 60 * 1000;
  static constexpr int64_t kMinPokeRetryMs = 250;  // pokes retry at most this often
  static constexpr int kRequestTimeoutMs = 30000;
  static constexpr size_t kBuildAhead = 1;  // stored transactions beyond the one being sent
  static constexpr int64_t kForgetDelayMs = 1000;  // accepted ones left in the queue, waiting for a write
  // How long a lease lasts (renewed every third of it). A test knob overrides it: the environment
  // variable TRESTLE_AS_LEASE_MS (tests/integration/scenarios/appservice_takeover.py).
  static constexpr int64_t kLeaseMs = 10000;

  // `instance`: this process's instance name (cfg.instance_name); `preferred`: the instance that
  // should send (cfg.notify_appservices_from_worker; empty: "main"); `several_processes`
  // (cfg.multi_process()): others may hold a lease, so the write group hook checks the fence too
  // (alone, the process holds every lease it runs: the group's commit stays as cheap as before).
  AppServiceSender(const AppServiceRegistry& registry, storage::Database& db, Notifier& notifier, OutboundHttp http,
                   std::string instance = "main", std::string preferred = "", bool several_processes = false);
  ~AppServiceSender();

  void start();
  void stop();
  // The appservice is alive (it pinged or made a request): end the wait of a backoff and retry
  // now (at most once per kMinPokeRetryMs). A retry a poke started that fails again keeps the
  // delay as it was: a bridge's requests during an outage must not push its backoff to the cap.
  void poke(const std::string& appservice_id);
  // Ephemeral data (MSC2409, receive_ephemeral): typing changed in a room. Typing is read back
  // through `typing_source` when the next transaction is built (best effort, not durable;
  // receipts come from the database and are).
  void on_typing(const std::string& room_id);
  void set_typing_source(std::function<std::vector<std::string>(const std::string& room_id)> f) {
    typing_source_ = std::move(f);
  }
  // Presence changed for a user (MSC2409's m.presence): sent, like typing, to each appservice
  // with receive_ephemeral whose users are that user or share a room with them, as
  // `presence_source` reads it when the next transaction is built (best effort, not durable).
  void on_presence(const std::string& user_id);
  void set_presence_source(std::function<boost::json::object(const std::string& user_id)> f) {
    presence_source_ = std::move(f);
  }
  std::vector<DeliveryStatus> status() const;

private:
  struct Worker;
  struct Built;
  struct Draft;  // a transaction being built
  void run_builder(Worker& w);
  void run_deliverer(Worker& w);
  void deliver_front(Worker& w);  // sends the oldest stored txn (w.ready's front)
  bool queue_next(Worker& w);     // builds and stores the next txn from the stream; false when caught up
  void skip(Worker& w, int64_t stream, const std::string& event_id, const std::string& why);
  // Adds the stream range (d.cursor, to] to the draft; `rows`: the range's events, already read.
  void collect(Worker& w, Draft& d, storage::Connection& c, int64_t to,
               const std::vector<storage::events::StreamRow>* rows, std::map<std::string, bool>& room_cache);
  // In the caller's write: deletes the accepted transactions, stores the draft as the next one
  // (if it holds anything) and moves the cursor to `next`.
  std::optional<storage::appservices::QueuedTxn> store(Worker& w, Draft& d, storage::Connection& c,
                                                       const storage::appservices::State& state,
                                                       const std::vector<int64_t>& accepted,
                                                       storage::appservices::State& next);
  // After that write committed: the worker's view follows, the deliverer gets the transaction.
  void adopt(Worker& w, const storage::appservices::State& before, const storage::appservices::State& next,
             std::optional<storage::appservices::QueuedTxn> built, const std::vector<int64_t>& accepted,
             bool took_to_device,
             std::set<std::string> typing_rooms, std::set<std::string> presence_users);
  // The write group hook (Database::add_group_hook), on the writer's thread.
  void build_in_group(storage::Connection& c, int64_t upto);
  void group_done(bool committed);
  void take_back_ahead(Worker& w);   // un-stores a txn built ahead of a failing one (never sent)
  void forget_delivered(Worker& w);  // deletes accepted transactions from the queue
  // The leases: one round of renewals and acquisitions (one write), and the thread repeating it.
  void lease_round();
  void run_leases();
  void begin_holding(Worker& w, int64_t epoch, int64_t until);  // lease thread; the worker's threads start
  void stop_holding(Worker& w);  // the lease is gone: the worker's threads stop at once (any thread)
  int64_t epoch_of(Worker& w);
  using MemberInterest = std::unordered_map<std::string, bool>;  // room id -> one of ours joined
  static constexpr size_t kMaxMemberInterestRooms = 100000;
  bool interested(const AppService& as, const storage::events::StoredEvent& e, storage::Connection& c,
                  std::map<std::string, bool>& room_cache, MemberInterest* members = nullptr) const;

  const AppServiceRegistry& registry_;
  storage::Database& db_;
  Notifier& notifier_;
  OutboundHttp http_;
  std::function<std::vector<std::string>(const std::string&)> typing_source_;
  std::function<boost::json::object(const std::string&)> presence_source_;
  std::vector<std::unique_ptr<Worker>> workers_;
  int group_hook_ = 0;
  std::vector<Worker*> in_group_;  // claimed by the running group's hook (writer thread only)
  const std::string instance_;
  const bool preferred_;  // this process is the instance that should send
  const bool several_processes_;
  int64_t lease_ms_ = kLeaseMs;
  std::thread lease_thread_;
  std::mutex lease_mu_;
  std::condition_variable lease_cv_;
  bool lease_stopping_ = false;
};

}  // namespace trestle::service
