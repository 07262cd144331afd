#include "storage/database.hpp"

#include "core/error.hpp"
#include "core/metrics.hpp"
#include "storage/migrations.hpp"
#include "storage/postgres/connection.hpp"
#include "storage/postgres/notify_channel.hpp"
#include "storage/postgres/schema.hpp"
#include "storage/sqlite/connection.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <stdexcept>

namespace trestle::storage {

namespace {

// How long a read waits for a pooled connection when no new one can be opened.
constexpr auto kReaderWait = std::chrono::seconds(2);

// Every Trestle process migrating one PostgreSQL database takes this lock first (any 64-bit key
// of our own: pg_advisory_xact_lock).
constexpr int64_t kMigrationLock = 0x7472657374'6c65;  // "trestle"

}  // namespace

std::string DatabaseOptions::describe() const {
  if (engine == Dialect::sqlite) return "'" + sqlite_path + "'";
  return postgres::describe_conninfo(pg_conninfo);
}

namespace {
DatabaseOptions sqlite_options(const std::string& path, size_t readers_ahead) {
  DatabaseOptions o;
  o.sqlite_path = path;
  o.readers_ahead = readers_ahead;
  return o;
}
}  // namespace

Database::Database(const std::string& path, size_t readers_ahead) : Database(sqlite_options(path, readers_ahead)) {}

Database::Database(DatabaseOptions options) : options_(std::move(options)) {
  try {
    writer_ = open_writer();
    migrate();
    auto st = writer_->prepare("SELECT value FROM stream_position WHERE name = 'global'");
    if (st.step()) committed_position_ = st.int64(0);
  } catch (const std::exception& e) {
    throw std::runtime_error("database " + options_.describe() + ": " + e.what());
  }
  // Opened now, while descriptors are plentiful: a server later short of them still reads.
  for (size_t i = 0; i < options_.readers_ahead; ++i) idle_readers_.push_back(open_connection());
  open_readers_ = idle_readers_.size();
  if (options_.engine == Dialect::sqlite) {
    checkpointer_ = std::make_unique<sqlite::WalCheckpointer>(
        static_cast<sqlite::SqliteConnection&>(*writer_), options_.sqlite_path,
        [this](const std::function<void()>& fn) { between_groups(fn); });
    // A new database's schema pages (~600 KB) are folded in by the checkpointer thread: the two
    // fsyncs and the truncation (~5 ms) are not start-up's.
    if (schema_created_) checkpointer_->request();
  }
  async_leader_ = std::thread([this] { run_async_leader(); });
}

Database::~Database() {
  {
    std::lock_guard lock(queue_mu_);
    async_stopping_ = true;
  }
  async_cv_.notify_one();
  if (async_leader_.joinable()) async_leader_.join();
  checkpointer_.reset();
}

std::unique_ptr<Connection> Database::open_connection() {
  if (options_.engine == Dialect::postgres) return std::make_unique<postgres::PgConnection>(options_.pg_conninfo);
  return std::make_unique<sqlite::SqliteConnection>(options_.sqlite_path);
}

void Database::between_groups(const std::function<void()>& fn) {
  std::unique_lock q(queue_mu_);
  between_groups_running_ = true;  // no group starts
  group_end_cv_.wait(q, [this] { return !group_in_progress_; });
  q.unlock();
  fn();
  q.lock();
  between_groups_running_ = false;
  hand_on_lead();
}

size_t Database::reader_count() const {
  std::lock_guard lock(readers_mu_);
  return open_readers_;
}

std::unique_ptr<Connection> Database::acquire_reader() {
  std::unique_lock lock(readers_mu_);
  // At the pool's limit (PostgreSQL's cp_max): wait for a connection to come back.
  if (idle_readers_.empty() && options_.readers_max > 0 && open_readers_ >= options_.readers_max) {
    if (!readers_cv_.wait_for(lock, kReaderWait, [&] { return !idle_readers_.empty(); })) {
      throw MatrixError(503, "M_UNKNOWN", "Every database connection is busy; try again later");
    }
  }
  if (idle_readers_.empty()) {
    ++open_readers_;
    lock.unlock();
    try {
      return open_connection();
    } catch (const std::exception& e) {
      lock.lock();
      --open_readers_;
      // Out of descriptors (or similar): wait for a busy connection to come back.
      bool freed = open_readers_ > 0 && readers_cv_.wait_for(lock, kReaderWait, [&] { return !idle_readers_.empty(); });
      if (!freed) {
        spdlog::warn("database: no read connection available: {}", e.what());
        // PostgreSQL: the server is down or restarting, far more likely than a process out of
        // descriptors (whose message libpq's error carries to the log anyway).
        if (options_.engine == Dialect::postgres) {
          throw MatrixError(503, "M_UNKNOWN", "The database is unavailable right now; try again later");
        }
        throw MatrixError(503, "M_UNKNOWN",
                          "The server cannot open a database connection right now (out of resources); try again later");
      }
    }
  }
  auto c = std::move(idle_readers_.back());
  idle_readers_.pop_back();
  return c;
}

void Database::release_reader(std::unique_ptr<Connection> c) {
  if (!c) return;
  std::unique_lock lock(readers_mu_);
  // Its ROLLBACK failed, or the server behind it is gone: never handed out again.
  if (c->in_transaction() || !c->usable()) {
    --open_readers_;
    lock.unlock();
    c.reset();
    return;
  }
  idle_readers_.push_back(std::move(c));
  lock.unlock();
  readers_cv_.notify_one();
}

void Database::submit(WriteJob& job) {
  std::unique_lock lock(queue_mu_);
  queue_.push_back(&job);
  while (!job.done) {
    if (group_in_progress_ || between_groups_running_) {
      job.cv.wait(lock);
      continue;
    }
    // Lead the next group: everything queued so far, this job included.
    group_in_progress_ = true;
    std::vector<WriteJob*> group;
    group.swap(queue_);
    lead_group(group, lock);
  }
  if (job.error) std::rethrow_exception(job.error);
}

void Database::write_async(std::function<void(Connection&)> fn, std::function<void(std::exception_ptr)> done) {
  auto* job = new WriteJob;
  job->run = std::move(fn);
  job->on_done = std::move(done);
  std::lock_guard lock(queue_mu_);
  queue_.push_back(job);
  // A running group's leader hands the lead on when it ends; otherwise the writer thread leads.
  if (!group_in_progress_ && !between_groups_running_ && queue_.size() == 1) async_cv_.notify_one();
}

void Database::lead_group(std::vector<WriteJob*>& group, std::unique_lock<std::mutex>& lock) {
  lock.unlock();
  auto started = std::chrono::steady_clock::now();
  write_group(group);
  static auto& commit_seconds = metrics::registry()
      .histogram("trestle_storage_write_group_seconds", "Time to run and commit one group of writes").labels({});
  static auto& group_size = metrics::registry()
      .histogram("trestle_storage_write_group_size", "Writes committed together in one transaction", {},
                 {1, 2, 4, 8, 16, 32, 64, 128, 256}).labels({});
  commit_seconds.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  group_size.observe(static_cast<double>(group.size()));
  // Asynchronous writes hear of it here, outside the lock and before the next group starts
  // (group_in_progress_ is still set), so their completions cannot write (database.hpp).
  for (auto* j : group) {
    if (!j->on_done) continue;
    try {
      j->on_done(j->error);
    } catch (const std::exception& e) {
      spdlog::error("database: the completion of a write failed: {}", e.what());
    }
  }
  lock.lock();
  for (auto* j : group) {
    if (j->on_done) {
      delete j;
      continue;
    }
    j->done = true;
    j->cv.notify_one();  // the leader's own job too: harmless, nobody waits on it
  }
  group_in_progress_ = false;
  hand_on_lead();
}

void Database::hand_on_lead() {
  if (between_groups_running_) {
    group_end_cv_.notify_one();  // the tail's turn; the next group follows it
    return;
  }
  if (queue_.empty()) return;
  // A waiting write() leads the next group (its thread waits anyway); only asynchronous writes:
  // the writer thread does.
  for (auto* j : queue_) {
    if (!j->on_done) {
      j->cv.notify_one();
      return;
    }
  }
  async_cv_.notify_one();
}

void Database::run_async_leader() {
  std::unique_lock lock(queue_mu_);
  while (true) {
    async_cv_.wait(lock, [this] {
      return async_stopping_ || (!queue_.empty() && !group_in_progress_ && !between_groups_running_);
    });
    // Stopping: what is queued is still written (its callers are told), unless another leads it.
    if (async_stopping_ && (queue_.empty() || group_in_progress_ || between_groups_running_)) return;
    group_in_progress_ = true;
    std::vector<WriteJob*> group;
    group.swap(queue_);
    lead_group(group, lock);
  }
}

void Database::write_group(std::vector<WriteJob*>& group) noexcept {
  // PostgreSQL restarted since the last group: a new connection, or the group fails (503).
  std::exception_ptr unavailable;
  if (!writer_->usable()) {
    try {
      writer_ = open_writer();
      // A COMMIT lost with its connection may have taken effect all the same (the PostgreSQL
      // connection asks the server for 5 s, and past that cannot tell): the stream goes on from
      // the position the database holds, so that none is handed out twice.
      auto st = writer_->prepare("SELECT value FROM stream_position WHERE name = 'global'");
      if (st.step()) advance_position(st.int64(0));
    } catch (const std::exception& e) {
      spdlog::warn("database: cannot reconnect: {}", e.what());
      unavailable = std::make_exception_ptr(
          MatrixError(503, "M_UNKNOWN", "The database is unavailable right now; try again later"));
    }
  }
  Connection& c = *writer_;
  std::unique_lock hooks_lock(hooks_mu_, std::defer_lock);
  std::vector<bool> hooks_ran;
  auto hooks_done = [&](bool committed) {
    for (size_t i = 0; i < hooks_ran.size(); ++i) {
      if (hooks_ran[i] && group_hooks_[i].second.done) group_hooks_[i].second.done(committed);
    }
  };
  // The whole transaction is gone: no job of the group is committed.
  auto fail_group = [&](std::exception_ptr cause) {
    hooks_done(false);
    job_deferred_.clear();
    group_deferred_.clear();
    c.rollback();
    stream_turn_ = false;
    pending_position_ = group_base_;
    for (auto* j : group) {
      if (!j->error) j->error = cause;
    }
  };
  if (unavailable) {
    fail_group(unavailable);
    return;
  }
  try {
    c.begin_write();
  } catch (...) {
    fail_group(std::current_exception());
    return;
  }
  // A worker's committed position moves under it (the main process's wake-ups): the group's own
  // allocations are measured from where it began.
  group_base_ = pending_position_ = committed_position_.load();
  stream_turn_ = false;
  // A savepoint per job keeps a failed job's changes apart from the others'; a group of one job
  // needs none (its failure rolls the transaction back): two statements fewer per write, which on
  // PostgreSQL are two more commands for the server to run.
  const bool savepoints = group.size() > 1;
  for (auto* j : group) {
    int64_t position_before = pending_position_;
    const bool turn_before = stream_turn_;
    try {
      if (savepoints) c.prepare("SAVEPOINT job").run();
    } catch (...) {
      fail_group(std::current_exception());
      return;
    }
    job_deferred_.clear();
    try {
      j->run(c);
      c.flush();  // the job's own errors are the job's
      if (savepoints) c.prepare("RELEASE job").run();
      for (auto& fn : job_deferred_) group_deferred_.push_back(std::move(fn));
      job_deferred_.clear();
    } catch (...) {
      job_deferred_.clear();
      j->error = std::current_exception();
      pending_position_ = position_before;  // its stream positions were never used
      if (stream_turn_ && !turn_before) {
        // It took the stream's turn: the ROLLBACK TO releases that lock (taken after the
        // savepoint), and the group's positions start again from where the turn began.
        stream_turn_ = false;
        pending_position_ = group_base_;
      }
      if (!savepoints) {
        fail_group(j->error);  // the whole transaction was this job's
        return;
      }
      bool undone = false;
      if (c.in_transaction()) {  // SQLite may have rolled the whole transaction back (disk full)
        try {
          c.exec("ROLLBACK TO job");
          c.exec("RELEASE job");
          undone = true;
        } catch (const std::exception& e) {
          spdlog::error("database: cannot undo a failed write: {}", e.what());
        }
      }
      if (!undone) {
        // A lost connection (PostgreSQL restarting) is every job's error: 503, try again later.
        fail_group(c.usable() ? std::make_exception_ptr(std::runtime_error(
                                    "the write transaction was rolled back after another write in it failed"))
                              : j->error);
        return;
      }
    }
  }
  try {
    for (auto& fn : group_deferred_) fn(c);
    group_deferred_.clear();
    if (pending_position_ != group_base_) {
      hooks_lock.lock();
      run_group_hooks(c, hooks_ran);
    }
    commit_locked();
  } catch (...) {
    fail_group(std::current_exception());
    return;
  }
  hooks_done(true);
}

void Database::run_group_hooks(Connection& c, std::vector<bool>& ran) {
  ran.assign(group_hooks_.size(), false);
  for (size_t i = 0; i < group_hooks_.size(); ++i) {
    auto& hook = group_hooks_[i].second;
    if (!hook.run) continue;
    c.prepare("SAVEPOINT group_hook").run();
    ran[i] = true;
    try {
      hook.run(c, pending_position_);
      c.flush();
      c.prepare("RELEASE group_hook").run();
      continue;
    } catch (const std::exception& e) {
      spdlog::error("database: the work after a write group failed; its changes are undone: {}", e.what());
    }
    // Only this hook's changes go; if even that fails, the group fails (the caller rolls back).
    if (!c.usable()) throw MatrixError(503, "M_UNKNOWN", "The database is unavailable right now; try again later");
    if (!c.in_transaction()) throw std::runtime_error("the write transaction was rolled back by the work after it");
    c.exec("ROLLBACK TO group_hook");
    c.exec("RELEASE group_hook");
    ran[i] = false;
    if (hook.done) hook.done(false);
  }
}

int Database::add_group_hook(GroupHook hook) {
  std::lock_guard lock(hooks_mu_);
  group_hooks_.emplace_back(++next_hook_id_, std::move(hook));
  return next_hook_id_;
}

void Database::remove_group_hook(int id) {
  std::lock_guard lock(hooks_mu_);
  std::erase_if(group_hooks_, [&](const auto& h) { return h.first == id; });
}

void Database::commit_locked() {
  bool moved = pending_position_ != group_base_;
  if (moved) {
    writer_->prepare("UPDATE stream_position SET value = ? WHERE name = 'global'").bind(pending_position_).run();
  }
  writer_->commit();
  stream_turn_ = false;
  // Another writer of a shared stream may be heard of past this already: never move back.
  if (moved) advance_position(pending_position_);
}

std::unique_ptr<Connection> Database::open_writer() {
  auto c = open_connection();
  if (options_.shared_stream && options_.engine == Dialect::postgres) {
    // A writer that hangs holding the stream's turn would stall every other: the server ends its
    // transaction after a minute idle in it, and a wait for the turn gives up after 20 s (503).
    // Set outside any transaction, so that no rollback undoes it.
    c->exec("SET idle_in_transaction_session_timeout = '60s'; SET lock_timeout = '20s'");
  }
  return c;
}

void Database::take_stream_turn() {
  // Any constant shared by the writers: "trestle" in ASCII.
  static const std::string lock = "SELECT pg_advisory_xact_lock(32776877352709221)";
  try {
    auto st = writer_->prepare(lock);
    while (st.step()) {
    }
  } catch (const std::exception& e) {
    if (!writer_->usable()) throw;
    spdlog::warn("database: waited too long for the stream's turn: {}", e.what());
    throw MatrixError(503, "M_UNKNOWN", "Another event writer holds the stream; try again later");
  }
  // READ COMMITTED: this statement's snapshot begins after the lock is held, so it sees the
  // previous holder's committed position.
  auto st = writer_->prepare("SELECT value FROM stream_position WHERE name = 'global'");
  if (!st.step()) throw std::runtime_error("the stream position row is missing");
  int64_t stored = st.int64(0);
  while (st.step()) {
  }
  advance_position(stored);
  group_base_ = pending_position_ = stored;
  stream_turn_ = true;
}

void Database::not_stream_writer() const {
  throw MatrixError(500, "M_UNKNOWN",
                    "This process does not write streams (it is a worker); the request should have gone to the "
                    "main process");
}

std::unique_ptr<Channel> Database::open_channel(const std::string& name, ChannelHandlers handlers) const {
  if (options_.engine != Dialect::postgres) return nullptr;
  return std::make_unique<postgres::NotifyChannel>(options_.pg_conninfo, name, std::move(handlers));
}

void Database::advance_position(int64_t position) {
  int64_t seen = committed_position_.load();
  while (position > seen && !committed_position_.compare_exchange_weak(seen, position)) {
  }
}

int64_t Database::refresh_position() {
  // One statement outside a transaction (a snapshot of its own): one round trip, not three. A
  // worker runs this before every request.
  static const std::string sql = "SELECT value FROM stream_position WHERE name = 'global'";
  int64_t stored = 0;
  try {
    ReaderLease lease(*this);
    auto st = lease.conn->prepare(sql);
    if (st.step()) stored = st.int64(0);
  } catch (const MatrixError&) {
    // A pooled connection from before a PostgreSQL restart: a read transaction's BEGIN
    // reconnects one in place.
    stored = read([](Connection& c) {
      auto st = c.prepare(sql);
      return st.step() ? st.int64(0) : int64_t{0};
    });
  }
  advance_position(stored);
  return committed_position();
}

namespace {

bool is_new_database(Connection& c) {
  if (c.dialect() == Dialect::sqlite) return sqlite::is_new_database(c);
  auto st = c.prepare(
      "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
      " AND table_name <> 'schema_version'");
  return st.step() && st.int64(0) == 0;
}

// Synapse's rule: text must sort by bytes (COLLATE "C"), as it does on SQLite.
void check_collation(Connection& c, bool allow_unsafe_locale) {
  auto st = c.prepare("SELECT datcollate, datctype FROM pg_database WHERE datname = current_database()");
  if (!st.step()) return;
  auto collate = st.text(0), ctype = st.text(1);
  auto safe = [](const std::string& v) { return v == "C" || v == "POSIX"; };
  if (safe(collate) && safe(ctype)) return;
  std::string what = "the PostgreSQL database has LC_COLLATE '" + collate + "' and LC_CTYPE '" + ctype + "', not 'C'";
  if (allow_unsafe_locale) {
    spdlog::warn("{}: text sorts differently than on SQLite (database.allow_unsafe_locale is set)", what);
    return;
  }
  throw std::runtime_error(what + ": make it with `createdb --encoding=UTF8 --locale=C --template=template0`, or set "
                           "database.allow_unsafe_locale: true");
}

int64_t schema_version(Connection& c) {
  auto st = c.prepare("SELECT version FROM schema_version");
  return st.step() ? st.int64(0) : 0;
}

}  // namespace

void Database::migrate() {
  Connection& c = *writer_;
  const bool pg = c.dialect() == Dialect::postgres;
  if (pg) check_collation(c, options_.allow_unsafe_locale);
  c.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
  int64_t current = schema_version(c);
  const auto& steps = migrations();
  // Several processes may start together on one PostgreSQL database: one migrates, under a lock
  // held to the end of its transaction; the others then find the schema current.
  if (current == static_cast<int64_t>(steps.size())) return;
  // Every missing step in one transaction: a new database is made with one commit instead of one
  // per step (start-up time), and is either fully migrated or left as it was.
  size_t v = 0;
  try {
    c.begin_write();
    if (pg) {
      c.prepare("SELECT pg_advisory_xact_lock(?)").bind(kMigrationLock).run();
      current = schema_version(c);
    }
    if (current > static_cast<int64_t>(steps.size())) {
      throw std::runtime_error("database schema version " + std::to_string(current) +
                               " is newer than this Trestle understands (" + std::to_string(steps.size()) + ")");
    }
    v = static_cast<size_t>(current);
    // A new database (nothing in it yet but schema_version) runs the snapshot of the first steps
    // as one script, then the steps after it: the same schema (tests/unit/test_migrations.cpp),
    // without the 15 ALTER TABLEs that each rewrite and re-parse the whole schema. PostgreSQL
    // starts from its own snapshot, and runs a step's own PostgreSQL text where it has one.
    const auto& snapshot = pg ? postgres_schema_snapshot() : schema_snapshot();
    if (v == 0 && snapshot.version <= steps.size() && is_new_database(c)) {
      c.exec(snapshot.sql);
      v = snapshot.version;
      schema_created_ = true;
    } else if (pg && v < snapshot.version) {
      throw std::runtime_error("a PostgreSQL database at schema version " + std::to_string(v) +
                               " predates PostgreSQL support (" + std::to_string(snapshot.version) + ")");
    }
    for (; v < steps.size(); ++v) {
      const char* own = pg ? postgres_step(v) : nullptr;
      c.exec(own ? std::string(own) : steps[v]);
    }
    c.exec("DELETE FROM schema_version");
    c.exec("INSERT INTO schema_version VALUES (" + std::to_string(steps.size()) + ")");
    c.commit();
  } catch (const std::exception& e) {
    c.rollback();  // never replaces the real error (e.g. SQLITE_FULL)
    throw std::runtime_error("migrating the schema to version " + std::to_string(std::min(v, steps.size() - 1) + 1) +
                             ": " + e.what());
  }
  // An upgrade's pages sit in the WAL until a checkpoint: folded in now and the WAL emptied, so a
  // big migration (one that back-fills a table) does not leave its size twice on disk (a WAL is
  // only truncated on request). A new database's are left to the checkpointer thread.
  if (!pg && !schema_created_) sqlite::WalCheckpointer::truncate(c);
}

}  // namespace trestle::storage
