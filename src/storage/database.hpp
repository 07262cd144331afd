#pragma once
// The database: connections, transactions and prepared statements, behind one interface with two
// engines: SQLite in WAL mode (storage/sqlite/, the embedded default) and PostgreSQL through libpq
// (storage/postgres/). The stores above speak only Connection/Statement, in SQL both engines
// accept; Connection::dialect() tells them the engine where the two really differ (full-text
// search, JSON operators).
//
// Concurrency: every write runs under one writer (SQLite allows one writer anyway), which also
// orders the global stream: ids are allocated inside the write transaction, so readers always
// see a gap-free prefix up to committed_position(). Reads borrow a connection from a pool (opened
// ahead at start-up, grown on demand) and run in a snapshot transaction.
//
// Failures keep their cause: a ROLLBACK that fails (SQLite may already have rolled back after
// SQLITE_FULL or an I/O error) never replaces the original error, and messages carry the OS error
// ("No space left on device", "Too many open files") where SQLite has one.
#include "storage/channel.hpp"

#include <atomic>
#include <condition_variable>
#include <exception>
#include <vector>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace trestle::storage {

namespace sqlite {
class WalCheckpointer;
}

enum class Dialect { sqlite, postgres };

// What a NULL parameter stands for: PostgreSQL types every parameter of a prepared statement.
enum class NullType { unknown, integer, text };

// One prepared statement of an engine, owned by its connection's cache; a Statement borrows it
// for one execution. Parameters are bound in order; step() executes on its first call.
class StatementImpl {
public:
  virtual ~StatementImpl() = default;
  virtual void bind_int64(int64_t v) = 0;
  virtual void bind_text(std::string_view v) = 0;
  virtual void bind_null(NullType type) = 0;
  virtual bool step() = 0;
  // Executes to completion, its rows unread. An engine may send it without waiting for the answer
  // (PostgreSQL's pipeline, inside a write): its error then comes from the connection's next
  // statement or flush().
  virtual void run() {
    while (step()) {
    }
  }
  virtual int64_t int64(int col) const = 0;
  virtual std::string text(int col) const = 0;
  virtual bool is_null(int col) const = 0;
  virtual void reset() noexcept = 0;  // parameters and results cleared, ready for the next use
};

class Statement {
public:
  explicit Statement(StatementImpl* impl) : impl_(impl) {}
  Statement(const Statement&) = delete;
  Statement(Statement&& o) noexcept : impl_(o.impl_) { o.impl_ = nullptr; }
  ~Statement() {
    if (impl_) impl_->reset();
  }

  // Binds the arguments in order to the statement's '?' parameters.
  template <typename... Args>
  Statement& bind(const Args&... args) {
    (bind_one(args), ...);
    return *this;
  }
  bool step() { return impl_->step(); }  // true while a row is available
  void run() { impl_->run(); }           // steps to completion (INSERT/UPDATE/DELETE)

  int64_t int64(int col) const { return impl_->int64(col); }
  std::string text(int col) const { return impl_->text(col); }
  std::optional<std::string> opt_text(int col) const {
    if (is_null(col)) return std::nullopt;
    return text(col);
  }
  bool is_null(int col) const { return impl_->is_null(col); }

private:
  void bind_one(int64_t v) { impl_->bind_int64(v); }
  void bind_one(int v) { bind_one(static_cast<int64_t>(v)); }
  void bind_one(uint64_t v) { bind_one(static_cast<int64_t>(v)); }
  void bind_one(bool v) { bind_one(static_cast<int64_t>(v)); }
  void bind_one(std::string_view v) { impl_->bind_text(v); }
  void bind_one(const std::string& v) { bind_one(std::string_view(v)); }
  void bind_one(const char* v) { bind_one(std::string_view(v)); }
  void bind_one(std::nullptr_t) { impl_->bind_null(NullType::unknown); }
  void bind_one(const std::optional<std::string>& v) {
    if (v) bind_one(std::string_view(*v));
    else impl_->bind_null(NullType::text);
  }
  void bind_one(const std::optional<int64_t>& v) {
    if (v) bind_one(*v);
    else impl_->bind_null(NullType::integer);
  }

  StatementImpl* impl_;
};

// One connection of either engine. Not thread-safe: one thread uses it at a time.
class Connection {
public:
  virtual ~Connection() = default;
  virtual Dialect dialect() const = 0;
  virtual Statement prepare(const std::string& sql) = 0;  // cached per connection
  virtual void exec(const std::string& sql) = 0;          // one or more statements, no results
  virtual int64_t changes() const = 0;                    // rows changed by the last statement
  virtual bool in_transaction() const = 0;
  // Rolls back the open transaction, if any. Never throws: it runs while another error is being
  // reported, and that error is the one that matters (a failure is logged).
  virtual void rollback() noexcept = 0;
  // A read snapshot; the writer's transaction (SQLite takes its write lock at once); commit.
  virtual void begin_read() = 0;
  virtual void begin_write() = 0;
  virtual void commit() = 0;
  // Waits for every statement sent without waiting (StatementImpl::run) and throws the first
  // one's error. The writer calls it at the end of each write, so an error is that write's.
  virtual void flush() {}
  // False once the engine says the connection is gone (PostgreSQL restarted): the pool drops it.
  virtual bool usable() const { return true; }
};

// Which engine, and where: Synapse's `database:` section, parsed by config.
struct DatabaseOptions {
  Dialect engine = Dialect::sqlite;
  std::string sqlite_path;     // name: sqlite3
  std::string pg_conninfo;     // name: psycopg2 (libpq keyword=value)
  size_t readers_ahead = 4;    // connections opened at start (Synapse's cp_min)
  size_t readers_max = 0;      // 0: no limit (SQLite); Synapse's cp_max
  // PostgreSQL: a database whose collation is not C sorts text unlike SQLite (and unlike the
  // ids' byte order that pagination relies on); refused unless this is set (Synapse's key).
  bool allow_unsafe_locale = false;
  // This process allocates stream positions (the main process, or the only one). A worker's
  // database does not: next_stream_position() throws there.
  bool stream_writer = true;
  // PostgreSQL, several writers of the one stream (rooms' events sharded over event writers):
  // each group takes its turn (an advisory lock held from its first position to its COMMIT) and
  // continues from the position the database holds, so the stream stays gap-free and in commit
  // order, and a reader's rule (everything at or below the committed position is visible) holds.
  bool shared_stream = false;
  std::string describe() const;  // for messages: the file, or the PostgreSQL database (no password)
};

class Database {
public:
  // Opens (creating if needed) and migrates the schema, and opens `readers_ahead` read
  // connections, so that reads need no new file descriptors later. Throws std::runtime_error
  // naming the database file and the cause.
  explicit Database(const std::string& path, size_t readers_ahead = 4);
  explicit Database(DatabaseOptions options);
  ~Database();

  Dialect dialect() const { return options_.engine; }
  const DatabaseOptions& options() const { return options_; }

  // Runs fn(Connection&) in a read snapshot on a pooled connection. When every pooled connection
  // is busy and a new one cannot be opened (out of file descriptors), waits a little for one to be
  // free, then throws MatrixError 503 M_UNKNOWN ("try again later") rather than a 500.
  template <typename F>
  auto read(F&& fn) {
    ReaderLease lease(*this);
    Connection& c = *lease.conn;
    c.begin_read();
    try {
      if constexpr (std::is_void_v<decltype(fn(c))>) {
        fn(c);
        c.commit();
      } else {
        auto r = fn(c);
        c.commit();
        return r;
      }
    } catch (...) {
      c.rollback();
      throw;
    }
  }

  // Read connections currently open (pooled or in use); for tests.
  size_t reader_count() const;

  // Runs fn(Connection&) in a write transaction; returns once it is committed (durable against a
  // crash of the process), rethrows fn's exception after rolling back fn's changes alone.
  //
  // Group commit: writes that arrive while another group is being written queue up, and the next
  // thread to lead writes all of them in one transaction, each inside its own savepoint. One
  // COMMIT then serves many requests, instead of one per request.
  template <typename F>
  auto write(F&& fn) {
    using R = decltype(fn(std::declval<Connection&>()));
    WriteJob job;
    if constexpr (std::is_void_v<R>) {
      job.run = [&](Connection& c) { fn(c); };
      submit(job);
    } else {
      std::optional<R> result;
      job.run = [&](Connection& c) { result.emplace(fn(c)); };
      submit(job);
      return std::move(*result);
    }
  }

  // write() without a waiting thread: fn runs in the next group like any write, and `done` is
  // called once that group committed (nullptr) or fn failed or the group failed (the error),
  // on the thread that led the group, outside every lock, before the next group starts: keep it
  // short (hand the result on), and never write() from it (that write would wait for itself).
  // The group is led by a waiting write()'s thread when there is one, else by the database's own
  // writer thread, so a burst of these costs no thread per write.
  void write_async(std::function<void(Connection&)> fn, std::function<void(std::exception_ptr)> done);

  // Only valid inside write(): runs fn after every write of the current group, outside their
  // savepoints, just before the COMMIT, if and only if the calling write succeeds; in the order
  // queued. For rows of a virtual table that would otherwise be flushed at every savepoint
  // (SQLite's FTS5 writes its pending index at each one: a segment per event). If fn throws,
  // the whole group fails.
  void before_commit(std::function<void(Connection&)> fn) { job_deferred_.push_back(std::move(fn)); }

  // Work that follows every group's new rows in the same transaction, instead of a transaction of
  // its own after the commit (push evaluation, appservice transactions of the group's events: one
  // commit, not two). `run(c, upto)` runs once per group that allocated stream positions, after its
  // writes and their before_commit work, just before the COMMIT, inside a savepoint of its own: if
  // it throws, only its changes are undone, the error is logged and the group commits all the same.
  // `done(true)` follows a successful COMMIT, `done(false)` a group that failed after `run` ran (or
  // `run` itself failing). Hooks run in the order they were added, on the writer's thread.
  struct GroupHook {
    std::function<void(Connection&, int64_t upto)> run;
    std::function<void(bool committed)> done;
  };
  int add_group_hook(GroupHook hook);
  // Once it returns, the hook is not running and never runs again.
  void remove_group_hook(int id);

  // Allocates the next position of the global stream (events, account data, receipts, ...).
  // Only valid inside write().
  // Only the stream writer (DatabaseOptions::stream_writer) allocates: elsewhere it throws
  // MatrixError 500, so a write routed to a worker fails whole instead of forking the stream.
  int64_t next_stream_position() {
    if (!options_.stream_writer) not_stream_writer();
    if (options_.shared_stream && !stream_turn_) take_stream_turn();
    return ++pending_position_;
  }
  // Everything at or below this position is committed and visible to new read snapshots.
  int64_t committed_position() const { return committed_position_.load(); }
  // A worker: the stream writer (another process) committed up to `position` (its wake-ups say
  // so). Never moves the position back.
  void advance_position(int64_t position);
  // Messages between the processes sharing this database (storage/channel.hpp), on `name`;
  // nullptr on SQLite (one process).
  std::unique_ptr<Channel> open_channel(const std::string& name, ChannelHandlers handlers) const;
  // Reads the committed position from the database (a worker after a gap in the wake-ups, or
  // given a token from ahead of what it has heard) and advances to it; returns the position.
  int64_t refresh_position();

private:
  struct WriteJob {
    std::function<void(Connection&)> run;
    std::exception_ptr error;
    bool done = false;
    // Its own: a finished group wakes only its writers and the next leader, not every waiter.
    std::condition_variable cv;
    // write_async: called instead of waking a thread; the job is owned by the queue (deleted after).
    std::function<void(std::exception_ptr)> on_done;
  };
  // A read connection borrowed from the pool for one read(); returned on destruction.
  struct ReaderLease {
    explicit ReaderLease(Database& db) : db(db), conn(db.acquire_reader()) {}
    ~ReaderLease() { db.release_reader(std::move(conn)); }
    ReaderLease(const ReaderLease&) = delete;
    Database& db;
    std::unique_ptr<Connection> conn;
  };
  std::unique_ptr<Connection> acquire_reader();
  void release_reader(std::unique_ptr<Connection> c);
  void migrate();
  void submit(WriteJob& job);                // queues the job; returns when its group committed
  // Runs the group `group` (taken from the queue by the caller, who set group_in_progress_), then
  // finishes its jobs and hands the lead on. Called with `lock` held; returns with it held.
  void lead_group(std::vector<WriteJob*>& group, std::unique_lock<std::mutex>& lock);
  void hand_on_lead();  // queue_mu_ held: wakes the next leader, if the queue holds work
  void run_async_leader();
  void write_group(std::vector<WriteJob*>& group) noexcept;
  // Inside write_group, before the COMMIT; `ran[i]` says whether hook i's run succeeded.
  void run_group_hooks(Connection& c, std::vector<bool>& ran);
  // Runs fn while no write group runs and none starts (the WAL checkpointer's tail copy).
  void between_groups(const std::function<void()>& fn);
  std::unique_ptr<Connection> open_connection();
  std::unique_ptr<Connection> open_writer();  // open_connection, with a shared stream's timeouts
  void commit_locked();  // persists the stream position with the transaction, then commits

  DatabaseOptions options_;
  bool schema_created_ = false;  // migrate() made a new database
  std::unique_ptr<Connection> writer_;
  mutable std::mutex readers_mu_;
  std::condition_variable readers_cv_;
  std::vector<std::unique_ptr<Connection>> idle_readers_;
  size_t open_readers_ = 0;
  std::mutex queue_mu_;
  std::vector<WriteJob*> queue_;
  bool group_in_progress_ = false;
  std::atomic<int64_t> committed_position_{0};
  // before_commit() work of the running job, and of the group's jobs that succeeded (leader only).
  std::vector<std::function<void(Connection&)>> job_deferred_, group_deferred_;
  int64_t pending_position_ = 0;
  int64_t group_base_ = 0;  // the committed position when the running group began
  [[noreturn]] void not_stream_writer() const;
  // shared_stream: waits for the stream's advisory lock, then continues from the stored position.
  void take_stream_turn();
  bool stream_turn_ = false;  // the running group holds the stream's lock
  std::mutex hooks_mu_;  // held by the writer while the hooks run and until their done()
  std::vector<std::pair<int, GroupHook>> group_hooks_;
  int next_hook_id_ = 0;
  // Guarded by queue_mu_: between_groups() is running; no group starts meanwhile, and
  // group_end_cv_ tells it that the running group ended.
  bool between_groups_running_ = false;
  std::condition_variable group_end_cv_;
  // SQLite: copies committed pages from the WAL into the database file (storage/sqlite/).
  std::unique_ptr<sqlite::WalCheckpointer> checkpointer_;
  // Leads groups made only of write_async jobs (no thread of theirs waits to lead them).
  std::condition_variable async_cv_;
  bool async_stopping_ = false;
  std::thread async_leader_;
};

}  // namespace trestle::storage
