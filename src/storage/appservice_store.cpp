#include "storage/appservice_store.hpp"

#include "storage/sql_dialect.hpp"

#include <boost/json/parse.hpp>

namespace trestle::storage::appservices {

std::optional<State> get_state(Connection& c, const std::string& appservice_id) {
  auto st = c.prepare("SELECT last_stream, next_txn_id FROM appservice_state WHERE appservice_id = ?");
  st.bind(appservice_id);
  if (!st.step()) return std::nullopt;
  return State{st.int64(0), st.int64(1)};
}

State get_or_create_state(Connection& c, const std::string& appservice_id, int64_t start_stream) {
  if (auto s = get_state(c, appservice_id)) return *s;
  State s{start_stream, 1};
  c.prepare("INSERT INTO appservice_state (appservice_id, last_stream, next_txn_id) VALUES (?, ?, ?)")
      .bind(appservice_id, s.last_stream, s.next_txn_id)
      .run();
  return s;
}

void set_state(Connection& c, const std::string& appservice_id, const State& s) {
  c.prepare("UPDATE appservice_state SET last_stream = ?, next_txn_id = ? WHERE appservice_id = ?")
      .bind(s.last_stream, s.next_txn_id, appservice_id)
      .run();
}

void enqueue(Connection& c, const std::string& appservice_id, const QueuedTxn& t) {
  c.prepare("INSERT INTO appservice_txns (appservice_id, txn_id, body, event_count, created_ts) VALUES (?, ?, ?, ?, ?)")
      .bind(appservice_id, t.txn_id, t.body, t.event_count, t.created_ts)
      .run();
}

std::vector<QueuedTxn> queued_txns(Connection& c, const std::string& appservice_id) {
  auto st = c.prepare("SELECT txn_id, body, event_count, created_ts FROM appservice_txns WHERE appservice_id = ? "
                      "ORDER BY txn_id");
  st.bind(appservice_id);
  std::vector<QueuedTxn> out;
  while (st.step()) out.push_back(QueuedTxn{st.int64(0), st.text(1), st.int64(2), st.int64(3)});
  return out;
}

void delete_txn(Connection& c, const std::string& appservice_id, int64_t txn_id) {
  c.prepare("DELETE FROM appservice_txns WHERE appservice_id = ? AND txn_id = ?").bind(appservice_id, txn_id).run();
}

int64_t queued_count(Connection& c, const std::string& appservice_id) {
  auto st = c.prepare("SELECT COUNT(*) FROM appservice_txns WHERE appservice_id = ?");
  st.bind(appservice_id);
  st.step();
  return st.int64(0);
}


std::optional<std::string> membership_as_of(Connection& c, std::string event_id, int64_t at) {
  while (true) {
    auto st = c.prepare("SELECT stream_ordering, replaces_state, " +
                        sql::json_value(c.dialect(), "json", {"content", "membership"}) +
                        " FROM events WHERE event_id = ?");
    st.bind(event_id);
    if (!st.step()) return std::nullopt;
    if (st.int64(0) <= at) return st.opt_text(2);
    auto previous = st.opt_text(1);
    if (!previous) return std::nullopt;
    event_id = *previous;
  }
}

}  // namespace trestle::storage::appservices
