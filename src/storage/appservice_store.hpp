#pragma once
// Appservice delivery state: the stream cursor and the queue of built transactions.
#include "storage/database.hpp"
#include "storage/event_store.hpp"

#include <optional>
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

// Creates the state row at `start_stream` on first sight of an appservice.
State get_or_create_state(Connection& c, const std::string& appservice_id, int64_t start_stream);
std::optional<State> get_state(Connection& c, const std::string& appservice_id);
void set_state(Connection& c, const std::string& appservice_id, const State& s);
void enqueue(Connection& c, const std::string& appservice_id, const QueuedTxn& t);
// Every stored transaction of the appservice, in txn id order.
std::vector<QueuedTxn> queued_txns(Connection& c, const std::string& appservice_id);
void delete_txn(Connection& c, const std::string& appservice_id, int64_t txn_id);
int64_t queued_count(Connection& c, const std::string& appservice_id);


// A user's membership just after stream position `at`, from their member event `event_id` (the
// current one) back along replaces_state; nullopt when they had none then. An appservice's
// interest in an event is judged as of the event, not when the event is queued.
std::optional<std::string> membership_as_of(Connection& c, std::string event_id, int64_t at);

}  // namespace trestle::storage::appservices
