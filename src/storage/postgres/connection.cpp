#include "storage/postgres/connection.hpp"

#include "core/error.hpp"

#include <libpq-fe.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

namespace trestle::storage::postgres {

namespace {

// PostgreSQL's type oids for the parameters we bind (pg_type.h).
constexpr Oid kInt8 = 20, kText = 25, kUnknown = 0;

std::string quote_sql(std::string_view sql) {
  constexpr size_t kMax = 120;
  return "'" + std::string(sql.size() <= kMax ? sql : sql.substr(0, kMax)) + (sql.size() <= kMax ? "'" : "...'");
}

std::string trim(const char* message) {
  std::string m = message ? message : "";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

// libpq's messages for the log, on one line ("...unexpectedly\n\tThis probably means...").
std::string one_line(const char* message) {
  std::string m = trim(message);
  std::string out;
  for (char ch : m) {
    if (ch == '\n' || ch == '\t') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += ch;
    }
  }
  return out;
}

void ignore_notice(void*, const char*) {}

// Every connection's session: what the statements of the stores assume.
constexpr const char* kSessionSettings =
    "SET client_encoding = 'UTF8'; SET standard_conforming_strings = on; SET TIME ZONE 'UTC'";

// libpq waits for a connection without limit unless told: a server that does not answer (a host
// that is down, behind TCP) would hold every request that needs a new connection (and the
// notification threads, and so a SIGTERM). The conninfo's own connect_timeout wins.
constexpr const char* kDefaultConnectTimeout = "10";

const char* sqlstate(const PGresult* r) { return r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr; }

// Whether a failed command's error says that the connection is gone, rather than the command
// being wrong: libpq found it closed; an error of libpq's own (no SQLSTATE: the socket failed);
// a connection exception (class 08); the server ending the session (57P01 admin_shutdown, a fast
// shutdown; 57P02 crash_shutdown, an immediate one; 57P03 cannot_connect_now, starting or stopping).
bool connection_lost(pg_conn* conn, const char* state) {
  if (PQstatus(conn) != CONNECTION_OK || !state || !*state) return true;
  std::string_view s(state);
  return s.starts_with("08") || s == "57P01" || s == "57P02" || s == "57P03";
}

// While the server is down every request fails, each on its own connection: the log gets one line
// a second about it, with the count of the others.
void warn_unavailable(const std::string& what) {
  static std::atomic<int64_t> last_second{-1};
  static std::atomic<int64_t> quiet{0};
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::steady_clock::now().time_since_epoch()).count();
  int64_t last = last_second.load();
  if (last == now || !last_second.compare_exchange_strong(last, now)) {
    ++quiet;
    return;
  }
  int64_t others = quiet.exchange(0);
  if (others > 0) {
    spdlog::warn("database: {} (and {} more since the last such line)", what, others);
  } else {
    spdlog::warn("database: {}", what);
  }
}

}  // namespace

std::string describe_conninfo(const std::string& conninfo) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
  if (!options) {
    std::string out = std::string("PostgreSQL (unreadable settings: ") + (error ? trim(error) : "out of memory") + ")";
    PQfreemem(error);
    return out;
  }
  std::string out;
  for (auto* o = options; o->keyword; ++o) {
    if (!o->val || std::strcmp(o->keyword, "password") == 0) continue;
    out += (out.empty() ? "" : " ") + std::string(o->keyword) + "=" + o->val;
  }
  PQconninfoFree(options);
  return "PostgreSQL (" + out + ")";
}

std::string number_placeholders(std::string_view sql, int& count) {
  std::string out;
  out.reserve(sql.size() + 16);
  count = 0;
  for (size_t i = 0; i < sql.size(); ++i) {
    char ch = sql[i];
    if (ch == '\'' || ch == '"') {  // a literal or a quoted name: copied to its closing quote
      size_t end = sql.find(ch, i + 1);
      if (end == std::string_view::npos) end = sql.size() - 1;
      out.append(sql.substr(i, end - i + 1));
      i = end;
    } else if (ch == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      size_t end = sql.find('\n', i);
      if (end == std::string_view::npos) end = sql.size() - 1;
      out.append(sql.substr(i, end - i + 1));
      i = end;
    } else if (ch == '?') {
      // ?NNN (SQLite's numbered parameter, bound once, used many times) stays that number.
      size_t digits = i + 1;
      while (digits < sql.size() && sql[digits] >= '0' && sql[digits] <= '9') ++digits;
      out += '$';
      if (digits > i + 1) {
        int n = 0;
        std::from_chars(sql.data() + i + 1, sql.data() + digits, n);
        count = std::max(count, n);
        out.append(sql.substr(i + 1, digits - i - 1));
        i = digits - 1;
      } else {
        out += std::to_string(++count);
      }
    } else {
      out += ch;
    }
  }
  return out;
}

class PgStatement final : public StatementImpl {
public:
  PgStatement(PgConnection& conn, const std::string& sql) : conn_(conn), original_(sql) {
    sql_ = number_placeholders(sql, param_count_);
  }
  ~PgStatement() override { PQclear(result_); }

  void bind_int64(int64_t v) override {
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    push(std::string(buf, end), kInt8, false);
  }
  void bind_text(std::string_view v) override { push(std::string(v), kText, false); }
  void bind_null(NullType type) override {
    push({}, type == NullType::integer ? kInt8 : type == NullType::text ? kText : kUnknown, true);
  }

  bool step() override {
    if (!result_) execute();
    return ++row_ < rows_;
  }
  void run() override {
    if (!conn_.pipelining_ || result_) {
      while (step()) {
      }
      return;
    }
    check_count();
    conn_.send_pipelined(prepared_name(), params(), &original_);
  }
  int64_t int64(int col) const override {
    const char* v = PQgetvalue(result_, row_, col);
    if (v[0] == 't' && v[1] == '\0') return 1;  // a boolean
    if (v[0] == 'f' && v[1] == '\0') return 0;
    int64_t out = 0;
    std::from_chars(v, v + std::strlen(v), out);  // NULL is "": 0, as SQLite's
    return out;
  }
  std::string text(int col) const override {
    return std::string(PQgetvalue(result_, row_, col), static_cast<size_t>(PQgetlength(result_, row_, col)));
  }
  bool is_null(int col) const override { return PQgetisnull(result_, row_, col) != 0; }
  // The connection was made anew: its prepared statements are gone with the old session.
  void forget_prepared() { names_.clear(); }
  void reset() noexcept override {
    PQclear(result_);
    result_ = nullptr;
    values_.clear();
    types_.clear();
    nulls_.clear();
    row_ = -1;
    rows_ = 0;
  }

private:
  void push(std::string value, Oid type, bool null) {
    values_.push_back(std::move(value));
    types_.push_back(type);
    nulls_.push_back(null);
  }

  // Prepared on first use with the types bound then; another combination of types (a NULL of
  // unknown type where a text came before) is prepared again under a name of its own. PQprepare
  // waits for its answer, so pipelined statements are answered first.
  const std::string& prepared_name() {
    std::string signature(types_.size(), 'u');
    for (size_t i = 0; i < types_.size(); ++i) signature[i] = types_[i] == kInt8 ? 'i' : types_[i] == kText ? 't' : 'u';
    auto it = names_.find(signature);
    if (it != names_.end()) return it->second;
    conn_.drain(true);
    std::string name = "t" + std::to_string(++conn_.next_name_);
    PGresult* r = PQprepare(conn_.conn_, name.c_str(), sql_.c_str(), static_cast<int>(types_.size()), types_.data());
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      std::string message = PQresultErrorMessage(r);
      std::string state = sqlstate(r) ? sqlstate(r) : "";
      PQclear(r);
      conn_.fail("prepare " + quote_sql(original_), message.c_str(), state.c_str());
    }
    PQclear(r);
    return names_.emplace(std::move(signature), std::move(name)).first->second;
  }

  void check_count() const {
    if (static_cast<int>(values_.size()) != param_count_) {
      throw std::runtime_error("statement " + quote_sql(original_) + " has " + std::to_string(param_count_) +
                               " parameters, " + std::to_string(values_.size()) + " bound");
    }
  }
  std::vector<const char*> params() const {
    std::vector<const char*> out(values_.size());
    for (size_t i = 0; i < values_.size(); ++i) out[i] = nulls_[i] ? nullptr : values_[i].c_str();
    return out;
  }

  void execute() {
    check_count();
    const std::string& name = prepared_name();
    auto values = params();
    if (!conn_.pending_.empty()) {
      // Behind pipelined statements: sent with them, all answered in one round trip.
      conn_.send_pipelined(name, values, &original_);
      conn_.drain(true, &result_);
    } else {
      result_ = PQexecPrepared(conn_.conn_, name.c_str(), static_cast<int>(values.size()), values.data(), nullptr,
                               nullptr, 0);
    }
    auto status = PQresultStatus(result_);
    if (status == PGRES_TUPLES_OK) {
      rows_ = PQntuples(result_);
    } else if (status == PGRES_COMMAND_OK) {
      rows_ = 0;
    } else {
      std::string message = PQresultErrorMessage(result_);
      std::string state = sqlstate(result_) ? sqlstate(result_) : "";
      PQclear(result_);
      result_ = nullptr;
      conn_.fail("step " + quote_sql(original_), message.c_str(), state.c_str());
    }
    const char* tuples = PQcmdTuples(result_);
    conn_.changes_ = tuples && *tuples ? std::strtoll(tuples, nullptr, 10) : 0;
    row_ = -1;
  }

  PgConnection& conn_;
  std::string original_, sql_;
  int param_count_ = 0;
  std::unordered_map<std::string, std::string> names_;
  std::vector<std::string> values_;
  std::vector<Oid> types_;
  std::vector<bool> nulls_;
  PGresult* result_ = nullptr;
  int row_ = -1, rows_ = 0;
};

pg_conn* connect_with_defaults(const std::string& conninfo) {
  // Keywords later in the list override earlier ones: the conninfo (expanded from `dbname`) may
  // set connect_timeout itself.
  const char* keywords[] = {"connect_timeout", "dbname", nullptr};
  const char* values[] = {kDefaultConnectTimeout, conninfo.c_str(), nullptr};
  return PQconnectdbParams(keywords, values, 1);
}

PgConnection::PgConnection(const std::string& conninfo) {
  conn_ = connect_with_defaults(conninfo);
  if (!conn_ || PQstatus(conn_) != CONNECTION_OK) {
    std::string message = conn_ ? trim(PQerrorMessage(conn_)) : "out of memory";
    PQfinish(conn_);
    conn_ = nullptr;
    throw std::runtime_error("cannot connect to PostgreSQL: " + message);
  }
  PQsetNoticeProcessor(conn_, &ignore_notice, nullptr);
  exec(kSessionSettings);
}

PgConnection::~PgConnection() {
  cache_.clear();
  PQfinish(conn_);
}

void PgConnection::fail(const std::string& what, const char* message, const char* state) {
  if (broken_ || connection_lost(conn_, state)) {
    broken_ = true;
    warn_unavailable("the PostgreSQL connection is gone (" + what + "): " + one_line(message));
    throw MatrixError(503, "M_UNKNOWN", "The database is unavailable right now; try again later");
  }
  throw std::runtime_error(what + ": " + trim(message));
}

void PgConnection::reconnect() {
  pending_.clear();
  pipelining_ = false;
  for (auto& [sql, statement] : cache_) statement->forget_prepared();
  PQreset(conn_);  // the same settings, the same notice processor
  if (PQstatus(conn_) != CONNECTION_OK) {
    broken_ = true;
    warn_unavailable("cannot reconnect to PostgreSQL: " + one_line(PQerrorMessage(conn_)));
    throw MatrixError(503, "M_UNKNOWN", "The database is unavailable right now; try again later");
  }
  broken_ = false;
  spdlog::info("database: reconnected to PostgreSQL");
  exec(kSessionSettings);
}

void PgConnection::begin(const char* sql) {
  if (!usable()) {
    reconnect();
  } else {
    try {
      exec(sql);
      return;
    } catch (const MatrixError&) {  // the connection is gone (fail()): the BEGIN did nothing
    }
    reconnect();
  }
  exec(sql);
}

Statement PgConnection::prepare(const std::string& sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) it = cache_.emplace(sql, std::make_unique<PgStatement>(*this, sql)).first;
  return Statement(it->second.get());
}

// At most this many statements wait in a pipeline: their answers must fit the socket's buffers
// (the server blocks writing them while we block writing more statements otherwise).
constexpr size_t kMaxPipelined = 256;

void PgConnection::send_pipelined(const std::string& name, const std::vector<const char*>& params,
                                  const std::string* what) {
  if (pending_.size() >= kMaxPipelined) drain(true);
  if (PQpipelineStatus(conn_) == PQ_PIPELINE_OFF && PQenterPipelineMode(conn_) != 1) {
    fail("entering pipeline mode", PQerrorMessage(conn_));
  }
  if (PQsendQueryPrepared(conn_, name.c_str(), static_cast<int>(params.size()), params.data(), nullptr, nullptr, 0) != 1) {
    fail("send " + quote_sql(*what), PQerrorMessage(conn_));  // libpq's own error: the socket
  }
  pending_.push_back(what);
}

void PgConnection::drain(bool throw_errors, PGresult** keep) {
  if (pending_.empty()) return;
  std::string error, error_what, error_state;
  bool lost = false;
  if (PQpipelineSync(conn_) != 1) {
    lost = true;
    error = PQerrorMessage(conn_);
  }
  for (size_t i = 0; i < pending_.size() && !lost; ++i) {
    // Each query's results, then a NULL.
    while (PGresult* r = PQgetResult(conn_)) {
      auto status = PQresultStatus(r);
      if (status == PGRES_FATAL_ERROR && error.empty()) {
        error = PQresultErrorMessage(r);
        error_what = *pending_[i];
        error_state = sqlstate(r) ? sqlstate(r) : "";
      } else if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
        const char* tuples = PQcmdTuples(r);
        changes_ = tuples && *tuples ? std::strtoll(tuples, nullptr, 10) : 0;
      }
      if (keep && !*keep && i + 1 == pending_.size() && (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK)) {
        *keep = r;
        continue;
      }
      PQclear(r);
    }
    if (PQstatus(conn_) != CONNECTION_OK) lost = true;
  }
  if (!lost) {
    PGresult* sync = PQgetResult(conn_);  // PGRES_PIPELINE_SYNC
    PQclear(sync);
    if (PQexitPipelineMode(conn_) != 1) lost = PQstatus(conn_) != CONNECTION_OK;
  }
  pending_.clear();
  if (lost && error.empty()) error = PQerrorMessage(conn_);
  if (error.empty()) return;
  if (keep && *keep) {
    PQclear(*keep);
    *keep = nullptr;
  }
  pipeline_error_ = error;
  if (throw_errors || lost) fail("step " + quote_sql(error_what), error.c_str(), lost ? nullptr : error_state.c_str());
}

int64_t PgConnection::changes() const {
  if (!pending_.empty()) const_cast<PgConnection*>(this)->drain(true);
  return changes_;
}

void PgConnection::exec(const std::string& sql) {
  // A failed pipelined statement has already aborted the transaction: this command fails too,
  // and the message names the first failure.
  pipeline_error_.clear();
  drain(false);
  PGresult* r = PQexec(conn_, sql.c_str());
  auto status = PQresultStatus(r);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    std::string message = pipeline_error_.empty() ? std::string(PQresultErrorMessage(r)) : pipeline_error_;
    std::string state = sqlstate(r) ? sqlstate(r) : "";
    PQclear(r);
    fail("exec " + quote_sql(sql), message.c_str(), state.c_str());
  }
  const char* tuples = PQcmdTuples(r);
  changes_ = tuples && *tuples ? std::strtoll(tuples, nullptr, 10) : 0;
  PQclear(r);
}

bool PgConnection::in_transaction() const {
  if (!pending_.empty()) return true;
  auto s = PQtransactionStatus(conn_);
  return s == PQTRANS_INTRANS || s == PQTRANS_INERROR || s == PQTRANS_ACTIVE;
}

void PgConnection::rollback() noexcept {
  pipelining_ = false;
  try {
    drain(false);
  } catch (const std::exception&) {  // the connection is gone: nothing to roll back
    return;
  }
  if (!in_transaction()) return;
  PGresult* r = PQexec(conn_, "ROLLBACK");
  if (PQresultStatus(r) != PGRES_COMMAND_OK) spdlog::error("database: ROLLBACK failed: {}", trim(PQresultErrorMessage(r)));
  PQclear(r);
}

// A read sees one snapshot for all its statements, as SQLite's read transaction.
void PgConnection::begin_read() { begin("BEGIN ISOLATION LEVEL REPEATABLE READ"); }
void PgConnection::begin_write() {
  begin("BEGIN");
  pipelining_ = true;
}

// How long a COMMIT whose connection was lost waits for the server to say whether it took effect
// (a restart takes seconds), before it fails with its outcome unknown.
constexpr auto kCommitOutcomeWait = std::chrono::seconds(5);

void PgConnection::commit() {
  // A write's transaction id, answered with its pipelined statements (no round trip of its own):
  // if the connection is lost during the COMMIT, the server can tell later whether it took effect.
  int64_t xid = 0;
  if (pipelining_) {
    auto st = prepare("SELECT txid_current_if_assigned()");
    if (st.step() && !st.is_null(0)) xid = st.int64(0);
  }
  pipelining_ = false;
  drain(true);
  PGresult* r = PQexec(conn_, "COMMIT");
  auto status = PQresultStatus(r);
  // A transaction that failed answers COMMIT with "ROLLBACK" and no error: nothing was written.
  bool rolled_back = status == PGRES_COMMAND_OK && std::strcmp(PQcmdStatus(r), "ROLLBACK") == 0;
  std::string message = PQresultErrorMessage(r);
  std::string state = sqlstate(r) ? sqlstate(r) : "";
  PQclear(r);
  if (status != PGRES_COMMAND_OK) {
    // The server may have committed before the connection went: a 503 would then say "not done"
    // of what is done (and the stream positions it used would be handed out again).
    if (xid != 0 && connection_lost(conn_, state.c_str()) && committed_after_all(xid, one_line(message.c_str()))) return;
    fail("COMMIT", message.c_str(), state.c_str());
  }
  if (rolled_back) throw std::runtime_error("COMMIT: the transaction had failed and was rolled back");
}

bool PgConnection::committed_after_all(int64_t xid, const std::string& why) {
  spdlog::warn("database: the PostgreSQL connection was lost during a COMMIT ({}); asking the server whether it "
               "took effect", why);
  auto deadline = std::chrono::steady_clock::now() + kCommitOutcomeWait;
  std::string outcome;
  while (true) {
    try {
      reconnect();
      auto st = prepare("SELECT txid_status(?)");
      st.bind(xid);
      outcome = st.step() && !st.is_null(0) ? st.text(0) : "unknown";
    } catch (const std::exception& e) {  // not back yet
      outcome = e.what();
    }
    if (outcome == "committed" || outcome == "aborted" || outcome == "unknown") break;
    // Still down, or "in progress": the old session has not ended yet.
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (outcome == "committed") {
    spdlog::info("database: the COMMIT of transaction {} had taken effect", xid);
    return true;
  }
  if (outcome == "aborted") {
    spdlog::info("database: the COMMIT of transaction {} had not taken effect", xid);
  } else {
    spdlog::error("database: whether the COMMIT of transaction {} took effect cannot be told ({}): it is reported "
                  "as failed",
                  xid, outcome);
  }
  broken_ = true;  // its error is reported as a lost connection's (503), whatever this one's state
  return false;
}

bool PgConnection::usable() const { return !broken_ && PQstatus(conn_) == CONNECTION_OK; }

}  // namespace trestle::storage::postgres
