#include "storage/database.hpp"

#include "storage/migrations.hpp"

#include <sqlite3.h>

#include <stdexcept>

namespace trestle::storage {

namespace {
[[noreturn]] void fail(sqlite3* db, const std::string& what) {
  throw std::runtime_error(what + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
}
std::atomic<uint64_t> next_instance{1};
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
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw std::runtime_error("cannot open database '" + path + "': " + msg);
  }
  sqlite3_busy_timeout(db_, 10000);
  // WAL: readers never block the writer. synchronous=NORMAL: a commit survives a crash or
  // kill -9 of the process (it is in the WAL before COMMIT returns); only an OS crash or power
  // loss can lose the last transactions, as with Synapse on default PostgreSQL settings.
  exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;"
       "PRAGMA temp_store=MEMORY; PRAGMA cache_size=-8000;");
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
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    throw std::runtime_error("exec '" + sql + "': " + msg);
  }
}

int64_t Connection::changes() const { return sqlite3_changes(db_); }

Database::Database(const std::string& path) : path_(path), instance_id_(next_instance++) {
  writer_ = std::make_unique<Connection>(path);
  migrate();
  auto st = writer_->prepare("SELECT value FROM stream_position WHERE name = 'global'");
  if (st.step()) committed_position_ = st.int64(0);
}

Database::~Database() = default;

Connection& Database::reader() {
  // One connection per (thread, database): WAL readers run in parallel with the writer.
  thread_local std::unordered_map<uint64_t, std::unique_ptr<Connection>> readers;
  auto& c = readers[instance_id_];
  if (!c) c = std::make_unique<Connection>(path_);
  return *c;
}

void Database::submit(WriteJob& job) {
  std::unique_lock lock(queue_mu_);
  queue_.push_back(&job);
  while (!job.done) {
    if (group_in_progress_) {
      queue_cv_.wait(lock);
      continue;
    }
    // Lead the next group: everything queued so far, this job included.
    group_in_progress_ = true;
    std::vector<WriteJob*> group;
    group.swap(queue_);
    lock.unlock();
    write_group(group);
    lock.lock();
    for (auto* j : group) j->done = true;
    group_in_progress_ = false;
    queue_cv_.notify_all();
  }
  if (job.error) std::rethrow_exception(job.error);
}

void Database::write_group(std::vector<WriteJob*>& group) {
  Connection& c = *writer_;
  try {
    c.exec("BEGIN IMMEDIATE");
  } catch (...) {
    for (auto* j : group) j->error = std::current_exception();
    return;
  }
  pending_position_ = committed_position_.load();
  for (auto* j : group) {
    int64_t position_before = pending_position_;
    c.exec("SAVEPOINT job");
    try {
      j->run(c);
      c.exec("RELEASE job");
    } catch (...) {
      j->error = std::current_exception();
      c.exec("ROLLBACK TO job");
      c.exec("RELEASE job");
      pending_position_ = position_before;  // its stream positions were never used
    }
  }
  try {
    commit_locked();
  } catch (...) {
    auto err = std::current_exception();
    try {
      c.exec("ROLLBACK");
    } catch (...) {
    }
    for (auto* j : group) {
      if (!j->error) j->error = err;
    }
  }
}

void Database::commit_locked() {
  if (pending_position_ != committed_position_.load()) {
    writer_->prepare("UPDATE stream_position SET value = ? WHERE name = 'global'").bind(pending_position_).run();
  }
  writer_->exec("COMMIT");
  committed_position_.store(pending_position_);
}

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
  for (size_t v = static_cast<size_t>(current); v < steps.size(); ++v) {
    c.exec("BEGIN IMMEDIATE");
    try {
      c.exec(steps[v]);
      c.exec("DELETE FROM schema_version");
      c.exec("INSERT INTO schema_version VALUES (" + std::to_string(v + 1) + ")");
      c.exec("COMMIT");
    } catch (...) {
      c.exec("ROLLBACK");
      throw;
    }
  }
}

}  // namespace trestle::storage
