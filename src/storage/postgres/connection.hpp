#pragma once
// PostgreSQL behind storage::Connection, through libpq: statements prepared once per connection
// (server-side, typed by the C++ types bound to them), results in text format.
#include "storage/database.hpp"

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

struct pg_conn;
struct pg_result;
typedef struct pg_result PGresult;

namespace trestle::storage::postgres {

class PgStatement;

class PgConnection final : public Connection {
public:
  // Connects with a libpq conninfo string. Throws std::runtime_error with libpq's reason.
  explicit PgConnection(const std::string& conninfo);
  ~PgConnection() override;

  Dialect dialect() const override { return Dialect::postgres; }
  Statement prepare(const std::string& sql) override;
  void exec(const std::string& sql) override;
  int64_t changes() const override;
  bool in_transaction() const override;
  void rollback() noexcept override;
  void begin_read() override;
  void begin_write() override;
  void commit() override;
  bool usable() const override;
  void flush() override { drain(true); }

private:
  friend class PgStatement;
  // Inside a write transaction, statements whose rows are not read are pipelined (libpq's
  // pipeline mode): sent at once, their answers read at the next statement that needs an answer,
  // in the same round trip. `keep` (optional) is the last pipelined query's result, handed over.
  // With throw_errors, the first failed statement's error is thrown (after the pipeline is read to
  // its end, so the connection is usable again); else it is only remembered for exec's message.
  void send_pipelined(const std::string& name, const std::vector<const char*>& params, const std::string* what);
  void drain(bool throw_errors, PGresult** keep = nullptr);

  // Throws for a failed command: MatrixError 503 when the connection itself is gone (the server
  // restarted, is shutting down or is unreachable; the connection is then unusable, until a BEGIN
  // reconnects it), std::runtime_error with PostgreSQL's message otherwise. `sqlstate` is the
  // failed command's SQLSTATE; null or empty for an error of libpq's own (the socket failed).
  [[noreturn]] void fail(const std::string& what, const char* message, const char* sqlstate = nullptr);

  // BEGIN, on a connection that may have lost its server since its last use (a pooled connection
  // after a PostgreSQL restart): when the BEGIN fails for that reason, nothing was lost, so the
  // connection is made anew (its statements prepared again at their next use) and the BEGIN sent
  // again. Throws MatrixError 503 while the server cannot be reached.
  void begin(const char* sql);
  void reconnect();
  // After a COMMIT lost with its connection: connects again (waiting a few seconds for a server
  // that restarts) and asks whether transaction `xid` committed. False: it did not, or that cannot
  // be told in time (logged as an error: the caller reports a failure that may not be one).
  bool committed_after_all(int64_t xid, const std::string& why);

  pg_conn* conn_ = nullptr;
  bool broken_ = false;  // a command found the connection gone (see fail())
  std::unordered_map<std::string, std::unique_ptr<PgStatement>> cache_;
  int next_name_ = 0;
  mutable int64_t changes_ = 0;
  bool pipelining_ = false;                  // inside begin_write() .. commit()/rollback()
  std::vector<const std::string*> pending_;  // pipelined statements not answered yet (their SQL)
  std::string pipeline_error_;               // the last drain's swallowed error
};

// PQconnectdb with our defaults under the conninfo's own settings: connect_timeout 10 s (libpq
// waits without limit otherwise, for a host that does not answer). Check PQstatus after.
pg_conn* connect_with_defaults(const std::string& conninfo);

// The conninfo for messages and logs: every setting but the password.
std::string describe_conninfo(const std::string& conninfo);

// SQLite's `?` parameters as PostgreSQL's `$1..$n` (and `?N` as `$N`), outside quotes and comments;
// `count` gets n, the number of values to bind.
std::string number_placeholders(std::string_view sql, int& count);

}  // namespace trestle::storage::postgres
