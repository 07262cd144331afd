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
  c.prepare("INSERT INTO appservice_state (appservice_id, last_stream, next_txn_id) VALUES (?, ?, 1) "
            "ON CONFLICT DO NOTHING")
      .bind(appservice_id, start_stream)
      .run();
  return *get_state(c, appservice_id);
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

std::optional<int64_t> try_acquire_lease(Connection& c, const std::string& appservice_id, const std::string& me,
                                         bool preferred, int64_t now, int64_t lease_ms) {
  // A new row: the preferred instance's, or no one's for one lease time. An existing one changes
  // hands only under the WHERE; RETURNING gives nothing when it does not.
  auto st = c.prepare(
      "INSERT INTO appservice_leases (appservice_id, owner, epoch, expires_ts) VALUES (?, ?, ?, ?) "
      "ON CONFLICT (appservice_id) DO UPDATE SET owner = ?, epoch = appservice_leases.epoch + 1, expires_ts = ? "
      "WHERE appservice_leases.owner = ? OR appservice_leases.expires_ts <= ? OR ? = 1 "
      "RETURNING owner, epoch");
  std::optional<std::string> new_owner;
  if (preferred) new_owner = me;
  const int64_t until = now + lease_ms;
  const int64_t preferred_flag = preferred ? 1 : 0;  // also the first holding's epoch
  st.bind(appservice_id, new_owner, preferred_flag, until, me, until, me, now, preferred_flag);
  if (!st.step() || st.opt_text(0) != me) return std::nullopt;
  return st.int64(1);
}

bool renew_lease(Connection& c, const std::string& appservice_id, const std::string& me, int64_t epoch, int64_t now,
                 int64_t lease_ms) {
  c.prepare("UPDATE appservice_leases SET expires_ts = ? WHERE appservice_id = ? AND owner = ? AND epoch = ?")
      .bind(now + lease_ms, appservice_id, me, epoch)
      .run();
  return c.changes() == 1;
}

void release_lease(Connection& c, const std::string& appservice_id, const std::string& me, int64_t epoch) {
  c.prepare("UPDATE appservice_leases SET owner = NULL, expires_ts = 0 WHERE appservice_id = ? AND owner = ? AND "
            "epoch = ?")
      .bind(appservice_id, me, epoch)
      .run();
}

bool holds_lease(Connection& c, const std::string& appservice_id, const std::string& me, int64_t epoch) {
  // SQLite's write transaction excludes every other writer already; PostgreSQL's row lock makes a
  // takeover (its UPDATE of this row) wait for our commit.
  auto st = c.prepare(std::string("SELECT 1 FROM appservice_leases WHERE appservice_id = ? AND owner = ? AND epoch = ?") +
                      (c.dialect() == Dialect::postgres ? " FOR SHARE" : ""));
  st.bind(appservice_id, me, epoch);
  return st.step();
}

void check_lease(Connection& c, const std::string& appservice_id, const std::string& me, int64_t epoch) {
  if (!holds_lease(c, appservice_id, me, epoch)) {
    throw LeaseLost("appservice " + appservice_id + ": " + me + " no longer holds the sender's lease (epoch " +
                    std::to_string(epoch) + ")");
  }
}

std::optional<Lease> get_lease(Connection& c, const std::string& appservice_id) {
  auto st = c.prepare("SELECT owner, epoch, expires_ts FROM appservice_leases WHERE appservice_id = ?");
  st.bind(appservice_id);
  if (!st.step()) return std::nullopt;
  return Lease{st.opt_text(0), st.int64(1), st.int64(2)};
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
