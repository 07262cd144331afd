#pragma once
// Appservice delivery state: the stream cursor and the queue of built transactions.
#include "storage/database.hpp"
#include "storage/event_store.hpp"

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace trestle::storage::appservices {

struct State {
  int64_t last_stream = 0;
  int64_t next_txn_id = 1;
};
struct QueuedTxn {
  int64_t txn_id = 0;
  std::string body;
  int64_t event_count = 0;
  int64_t created_ts = 0;
};

// Creates the state row at `start_stream` on first sight of an appservice (a row another process
// made first stays as it is).
State get_or_create_state(Connection& c, const std::string& appservice_id, int64_t start_stream);
std::optional<State> get_state(Connection& c, const std::string& appservice_id);
void set_state(Connection& c, const std::string& appservice_id, const State& s);
void enqueue(Connection& c, const std::string& appservice_id, const QueuedTxn& t);
// Every stored transaction of the appservice, in txn id order.
std::vector<QueuedTxn> queued_txns(Connection& c, const std::string& appservice_id);
void delete_txn(Connection& c, const std::string& appservice_id, int64_t txn_id);
int64_t queued_count(Connection& c, const std::string& appservice_id);

// Which process sends to an appservice (issue 13: several processes on one database). One holder
// at a time: a lease until `expires_ts`, renewed by its holder; `epoch` grows with each new
// holding, and every write of the sender checks (owner, epoch) in the same transaction
// (check_lease), so a holder that lost the lease (paused past its expiry, or taken over) stores
// nothing more. Each function is one statement: no read-then-write race between processes.
struct Lease {
  std::optional<std::string> owner;  // nullopt: released, or not claimed yet
  int64_t epoch = 0;
  int64_t expires_ts = 0;
};
// `me` takes the lease until now + lease_ms and gets its epoch (one more than the last holding's)
// when it is already its own (a restarted process), expired, or `preferred` (the instance named
// to send: it takes the lease at once, from anyone; the holder it replaced finds out at its next
// renewal and stores nothing before, by the fence). Otherwise nullopt; a lease no one ever held is
// then claimed for no one until now + lease_ms, so that the preferred instance, starting a little
// later, gets it first.
std::optional<int64_t> try_acquire_lease(Connection& c, const std::string& appservice_id, const std::string& me,
                                         bool preferred, int64_t now, int64_t lease_ms);
// Extends the holding (me, epoch) to now + lease_ms; false when it is no longer ours.
bool renew_lease(Connection& c, const std::string& appservice_id, const std::string& me, int64_t epoch, int64_t now,
                 int64_t lease_ms);
// Gives the holding (me, epoch) up (a clean stop): any process may take it at once.
void release_lease(Connection& c, const std::string& appservice_id, const std::string& me, int64_t epoch);
// Inside a write: whether (me, epoch) still holds the lease. On PostgreSQL it also locks the row
// until the transaction ends, so a takeover waits for this write to commit and then sees it.
bool holds_lease(Connection& c, const std::string& appservice_id, const std::string& me, int64_t epoch);
struct LeaseLost : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// holds_lease, or throws LeaseLost (the write then stores nothing).
void check_lease(Connection& c, const std::string& appservice_id, const std::string& me, int64_t epoch);
std::optional<Lease> get_lease(Connection& c, const std::string& appservice_id);

// A user's membership just after stream position `at`, from their member event `event_id` (the
// current one) back along replaces_state; nullopt when they had none then. An appservice's
// interest in an event is judged as of the event, not when the event is queued.
std::optional<std::string> membership_as_of(Connection& c, std::string event_id, int64_t at);

}  // namespace trestle::storage::appservices
