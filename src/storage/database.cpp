#include "storage/database.hpp"

#include "core/error.hpp"
#include "core/metrics.hpp"
#include "storage/migrations.hpp"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <chrono>
#include <stdexcept>
#include <system_error>

namespace trestle::storage {

namespace {

// SQLite's message, with the OS error behind it when there is one: "disk I/O error" alone hides
// "No space left on device", "unable to open database file" hides "Too many open files".
std::string describe(sqlite3* db) {
  if (!db) return "out of memory";
  std::string msg = sqlite3_errmsg(db);
  const int primary = sqlite3_extended_errcode(db) & 0xff;
  const int os_error = sqlite3_system_errno(db);
  if (os_error != 0 && (primary == SQLITE_IOERR || primary == SQLITE_CANTOPEN || primary == SQLITE_FULL)) {
    msg += " (" + std::error_code(os_error, std::generic_category()).message() + ")";
  }
  return msg;
}

[[noreturn]] void fail(sqlite3* db, const std::string& what) { throw std::runtime_error(what + ": " + describe(db)); }

// Migrations are long: an error message quotes only the start of the SQL.
std::string quote_sql(const std::string& sql) {
  constexpr size_t kMax = 80;
  return "'" + (sql.size() <= kMax ? sql : sql.substr(0, kMax) + "...") + "'";
}

// WAL pages that start a checkpoint on the checkpoint thread (SQLite's default autocheckpoint);
// 16 times as many make the committing writer do it. One send-load run (bench: 32 connections)
// measured 1,000 against 4,000: the same CPU per event, a WAL of at most 13 MiB instead of 35.
constexpr int kCheckpointPages = 1000;

// How long a read waits for a pooled connection when no new one can be opened.
constexpr auto kReaderWait = std::chrono::seconds(2);

}  // namespace

Statement::~Statement() {
  if (stmt_) {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
}

void Statement::bind_one(int64_t v) {
  if (sqlite3_bind_int64(stmt_, next_bind_++, v) != SQLITE_OK) fail(db_, "bind");
}
void Statement::bind_one(std::string_view v) {
  if (sqlite3_bind_text(stmt_, next_bind_++, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT) != SQLITE_OK) {
    fail(db_, "bind");
  }
}
void Statement::bind_one(std::nullptr_t) {
  if (sqlite3_bind_null(stmt_, next_bind_++) != SQLITE_OK) fail(db_, "bind");
}

bool Statement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  fail(db_, std::string("step '") + sqlite3_sql(stmt_) + "'");
}

void Statement::run() {
  while (step()) {
  }
}

int64_t Statement::int64(int col) const { return sqlite3_column_int64(stmt_, col); }
std::string Statement::text(int col) const {
  auto p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
  return p ? std::string(p, sqlite3_column_bytes(stmt_, col)) : std::string();
}
std::optional<std::string> Statement::opt_text(int col) const {
  if (is_null(col)) return std::nullopt;
  return text(col);
}
bool Statement::is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

Connection::Connection(const std::string& path) {
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string msg = describe(db_);
    sqlite3_close(db_);
    db_ = nullptr;
    throw std::runtime_error("cannot open database '" + path + "': " + msg);
  }
  sqlite3_busy_timeout(db_, 10000);
  sqlite3_extended_result_codes(db_, 1);
  // WAL: readers never block the writer. synchronous=NORMAL: a commit survives a crash or
  // kill -9 of the process (it is in the WAL before COMMIT returns); only an OS crash or power
  // loss can lose the last transactions, as with Synapse on default PostgreSQL settings.
  // synchronous=OFF while switching to WAL: a new (empty) file gets its header without the four
  // fsyncs of a rollback journal; an existing WAL database writes nothing there.
  // soft_heap_limit (process-wide): all connections' page caches together stop growing at 8 MiB
  // (they recycle their own least recently used pages), instead of 8 MiB each for up to a dozen
  // pooled connections, which a burst of large events fills and which then stay.
  try {
    exec("PRAGMA synchronous=OFF; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;"
         "PRAGMA temp_store=MEMORY; PRAGMA cache_size=-8000; PRAGMA soft_heap_limit=8388608;");
  } catch (const std::exception& e) {
    sqlite3_close(db_);  // the destructor does not run: without this each failure leaks descriptors
    db_ = nullptr;
    throw std::runtime_error("cannot open database '" + path + "': " + e.what());
  }
}

Connection::~Connection() {
  for (auto& [_, s] : cache_) sqlite3_finalize(s);
  sqlite3_close(db_);
}

Statement Connection::prepare(const std::string& sql) {
  auto it = cache_.find(sql);
  if (it != cache_.end()) return Statement(it->second, db_);
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &stmt, nullptr) != SQLITE_OK) {
    fail(db_, "prepare '" + sql + "'");
  }
  cache_.emplace(sql, stmt);
  return Statement(stmt, db_);
}

void Connection::exec(const std::string& sql) {
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) fail(db_, "exec " + quote_sql(sql));
}

int64_t Connection::changes() const { return sqlite3_changes(db_); }

bool Connection::in_transaction() const { return sqlite3_get_autocommit(db_) == 0; }

void Connection::rollback() noexcept {
  // After SQLITE_FULL, SQLITE_IOERR or SQLITE_NOMEM SQLite may have rolled back already; a
  // ROLLBACK then fails with "no transaction is active" and must not hide the real error.
  if (!in_transaction()) return;
  if (sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr) != SQLITE_OK) {
    spdlog::error("database: ROLLBACK failed: {}", describe(db_));
  }
}

Database::Database(const std::string& path, size_t readers_ahead) : path_(path) {
  writer_ = std::make_unique<Connection>(path);
  try {
    migrate();
    auto st = writer_->prepare("SELECT value FROM stream_position WHERE name = 'global'");
    if (st.step()) committed_position_ = st.int64(0);
  } catch (const std::exception& e) {
    throw std::runtime_error("database '" + path + "': " + e.what());
  }
  // Opened now, while descriptors are plentiful: a server later short of them still reads.
  for (size_t i = 0; i < readers_ahead; ++i) idle_readers_.push_back(std::make_unique<Connection>(path));
  open_readers_ = idle_readers_.size();
  checkpoint_conn_ = std::make_unique<Connection>(path);
  sqlite3_wal_hook(writer_->db_, &Database::on_wal_commit, this);  // replaces SQLite's autocheckpoint
  checkpointer_ = std::thread([this] { run_checkpointer(); });
  async_leader_ = std::thread([this] { run_async_leader(); });
}

Database::~Database() {
  {
    std::lock_guard lock(queue_mu_);
    async_stopping_ = true;
  }
  async_cv_.notify_one();
  if (async_leader_.joinable()) async_leader_.join();
  stop_checkpointer();
}

int Database::on_wal_commit(void* self, sqlite3* db, const char* name, int pages) {
  auto* d = static_cast<Database*>(self);
  // Far past the threshold (the thread cannot keep up): here, as SQLite's own checkpoint does.
  if (pages >= 16 * kCheckpointPages) {
    sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);  // as SQLite's own
  } else if (pages >= kCheckpointPages) {
    std::lock_guard lock(d->checkpoint_mu_);
    if (!d->checkpoint_wanted_) {
      d->checkpoint_wanted_ = true;
      d->checkpoint_cv_.notify_one();
    }
  }
  return SQLITE_OK;
}

void Database::run_checkpointer() {
  std::unique_lock lock(checkpoint_mu_);
  while (true) {
    checkpoint_cv_.wait(lock, [this] { return checkpoint_wanted_ || checkpointer_stopping_; });
    if (checkpointer_stopping_) return;
    checkpoint_wanted_ = false;
    lock.unlock();
    int rc = sqlite3_wal_checkpoint_v2(checkpoint_conn_->db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) spdlog::warn("database: WAL checkpoint failed: {}", describe(checkpoint_conn_->db_));
    if (rc == SQLITE_OK) copy_checkpoint_tail();
    lock.lock();
  }
}

// The tail: the frames committed while the thread's checkpoint ran. Copied while no write group
// runs, the checkpoint completes and the next write starts the WAL over (a checkpoint that never
// completes under a steady load would let the WAL grow without end). Here, between two groups,
// rather than inside the next group's commit: under a light load no write waits for it at all.
void Database::copy_checkpoint_tail() {
  std::unique_lock q(queue_mu_);
  checkpoint_tail_ = true;  // no group starts
  group_end_cv_.wait(q, [this] { return !group_in_progress_; });
  q.unlock();
  sqlite3_wal_checkpoint_v2(checkpoint_conn_->db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  q.lock();
  checkpoint_tail_ = false;
  hand_on_lead();
}

void Database::stop_checkpointer() noexcept {
  {
    std::lock_guard lock(checkpoint_mu_);
    checkpointer_stopping_ = true;
  }
  checkpoint_cv_.notify_one();
  if (checkpointer_.joinable()) checkpointer_.join();
}

size_t Database::reader_count() const {
  std::lock_guard lock(readers_mu_);
  return open_readers_;
}

std::unique_ptr<Connection> Database::acquire_reader() {
  std::unique_lock lock(readers_mu_);
  if (idle_readers_.empty()) {
    ++open_readers_;
    lock.unlock();
    try {
      return std::make_unique<Connection>(path_);
    } catch (const std::exception& e) {
      lock.lock();
      --open_readers_;
      // Out of descriptors (or similar): wait for a busy connection to come back.
      bool freed = open_readers_ > 0 && readers_cv_.wait_for(lock, kReaderWait, [&] { return !idle_readers_.empty(); });
      if (!freed) {
        spdlog::warn("database: no read connection available: {}", e.what());
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
  if (c->in_transaction()) {  // its ROLLBACK failed: do not hand out a connection mid-transaction
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
    if (group_in_progress_ || checkpoint_tail_) {
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
  if (!group_in_progress_ && !checkpoint_tail_ && queue_.size() == 1) async_cv_.notify_one();
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
  if (checkpoint_tail_) {
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
      return async_stopping_ || (!queue_.empty() && !group_in_progress_ && !checkpoint_tail_);
    });
    // Stopping: what is queued is still written (its callers are told), unless another leads it.
    if (async_stopping_ && (queue_.empty() || group_in_progress_ || checkpoint_tail_)) return;
    group_in_progress_ = true;
    std::vector<WriteJob*> group;
    group.swap(queue_);
    lead_group(group, lock);
  }
}

void Database::write_group(std::vector<WriteJob*>& group) noexcept {
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
    pending_position_ = committed_position_.load();
    for (auto* j : group) {
      if (!j->error) j->error = cause;
    }
  };
  try {
    c.prepare("BEGIN IMMEDIATE").run();
  } catch (...) {
    fail_group(std::current_exception());
    return;
  }
  pending_position_ = committed_position_.load();
  for (auto* j : group) {
    int64_t position_before = pending_position_;
    try {
      c.prepare("SAVEPOINT job").run();
    } catch (...) {
      fail_group(std::current_exception());
      return;
    }
    job_deferred_.clear();
    try {
      j->run(c);
      c.prepare("RELEASE job").run();
      for (auto& fn : job_deferred_) group_deferred_.push_back(std::move(fn));
      job_deferred_.clear();
    } catch (...) {
      job_deferred_.clear();
      j->error = std::current_exception();
      pending_position_ = position_before;  // its stream positions were never used
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
        fail_group(std::make_exception_ptr(
            std::runtime_error("the write transaction was rolled back after another write in it failed")));
        return;
      }
    }
  }
  try {
    for (auto& fn : group_deferred_) fn(c);
    group_deferred_.clear();
    if (pending_position_ != committed_position_.load()) {
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
      c.prepare("RELEASE group_hook").run();
      continue;
    } catch (const std::exception& e) {
      spdlog::error("database: the work after a write group failed; its changes are undone: {}", e.what());
    }
    // Only this hook's changes go; if even that fails, the group fails (the caller rolls back).
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
  if (pending_position_ != committed_position_.load()) {
    writer_->prepare("UPDATE stream_position SET value = ? WHERE name = 'global'").bind(pending_position_).run();
  }
  writer_->prepare("COMMIT").run();
  committed_position_.store(pending_position_);
}

namespace {

// Nothing in the file but the schema_version table that migrate() creates first.
bool is_new_database(Connection& c) {
  auto st = c.prepare("SELECT count(*) FROM sqlite_master WHERE name != 'schema_version'");
  return st.step() && st.int64(0) == 0;
}

}  // namespace

void Database::migrate() {
  Connection& c = *writer_;
  c.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
  int64_t current = 0;
  {
    auto st = c.prepare("SELECT version FROM schema_version");
    if (st.step()) current = st.int64(0);
  }
  const auto& steps = migrations();
  if (current > static_cast<int64_t>(steps.size())) {
    throw std::runtime_error("database schema version " + std::to_string(current) +
                             " is newer than this Trestle understands (" + std::to_string(steps.size()) + ")");
  }
  // Every missing step in one transaction: a new database is made with one commit instead of one
  // per step (start-up time), and is either fully migrated or left as it was.
  bool created = false;
  if (current < static_cast<int64_t>(steps.size())) {
    size_t v = static_cast<size_t>(current);
    try {
      c.exec("BEGIN IMMEDIATE");
      // A new database (nothing in it yet but schema_version) runs the snapshot of the first steps
      // as one script, then the steps after it: the same schema (tests/unit/test_migrations.cpp),
      // without the 15 ALTER TABLEs that each rewrite and re-parse the whole schema.
      const auto& snapshot = schema_snapshot();
      if (v == 0 && snapshot.version <= steps.size() && is_new_database(c)) {
        c.exec(snapshot.sql);
        v = snapshot.version;
        created = true;
      }
      for (; v < steps.size(); ++v) c.exec(steps[v]);
      c.exec("DELETE FROM schema_version");
      c.exec("INSERT INTO schema_version VALUES (" + std::to_string(steps.size()) + ")");
      c.exec("COMMIT");
    } catch (const std::exception& e) {
      c.rollback();  // never replaces the real error (e.g. SQLITE_FULL)
      throw std::runtime_error("migrating the schema to version " + std::to_string(std::min(v, steps.size() - 1) + 1) +
                               ": " + e.what());
    }
  }
  // The steps' pages sit in the WAL until a checkpoint. A new database's (~600 KB) are folded in by
  // the checkpointer thread, which the constructor starts next: the two fsyncs and the truncation
  // (~5 ms) are not start-up's, and the WAL is reused from its start at the next write. An
  // upgrade's are folded in now and the WAL emptied, so a big migration (one that back-fills a
  // table) does not leave its size twice on disk (a WAL is only truncated on request).
  // Best effort: on a nearly full disk the schema is in place all the same.
  if (created) {
    std::lock_guard lock(checkpoint_mu_);
    checkpoint_wanted_ = true;
  } else if (current < static_cast<int64_t>(steps.size())) {
    try {
      c.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    } catch (const std::exception& e) {
      spdlog::warn("after the schema migration, the WAL checkpoint failed: {}", e.what());
    }
  }
}

}  // namespace trestle::storage
