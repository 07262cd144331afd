#include "storage/sqlite/connection.hpp"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <stdexcept>
#include <system_error>

namespace trestle::storage::sqlite {

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

}  // namespace

class SqliteStatement final : public StatementImpl {
public:
  SqliteStatement(sqlite3_stmt* stmt, sqlite3* db) : stmt_(stmt), db_(db) {}
  ~SqliteStatement() override { sqlite3_finalize(stmt_); }

  void bind_int64(int64_t v) override {
    if (sqlite3_bind_int64(stmt_, next_bind_++, v) != SQLITE_OK) fail(db_, "bind");
  }
  void bind_text(std::string_view v) override {
    if (sqlite3_bind_text(stmt_, next_bind_++, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT) != SQLITE_OK) {
      fail(db_, "bind");
    }
  }
  void bind_null(NullType) override {
    if (sqlite3_bind_null(stmt_, next_bind_++) != SQLITE_OK) fail(db_, "bind");
  }
  bool step() override {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail(db_, std::string("step '") + sqlite3_sql(stmt_) + "'");
  }
  int64_t int64(int col) const override { return sqlite3_column_int64(stmt_, col); }
  std::string text(int col) const override {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, sqlite3_column_bytes(stmt_, col)) : std::string();
  }
  bool is_null(int col) const override { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  void reset() noexcept override {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    next_bind_ = 1;
  }

private:
  sqlite3_stmt* stmt_;
  sqlite3* db_;
  int next_bind_ = 1;
};

SqliteConnection::SqliteConnection(const std::string& path) {
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

SqliteConnection::~SqliteConnection() {
  cache_.clear();  // finalized before the close
  sqlite3_close(db_);
}

Statement SqliteConnection::prepare(const std::string& sql) {
  auto it = cache_.find(sql);
  if (it != cache_.end()) return Statement(it->second.get());
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &stmt, nullptr) != SQLITE_OK) {
    fail(db_, "prepare '" + sql + "'");
  }
  auto [pos, _] = cache_.emplace(sql, std::make_unique<SqliteStatement>(stmt, db_));
  return Statement(pos->second.get());
}

void SqliteConnection::exec(const std::string& sql) {
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) fail(db_, "exec " + quote_sql(sql));
}

int64_t SqliteConnection::changes() const { return sqlite3_changes(db_); }

bool SqliteConnection::in_transaction() const { return sqlite3_get_autocommit(db_) == 0; }

void SqliteConnection::rollback() noexcept {
  // After SQLITE_FULL, SQLITE_IOERR or SQLITE_NOMEM SQLite may have rolled back already; a
  // ROLLBACK then fails with "no transaction is active" and must not hide the real error.
  if (!in_transaction()) return;
  if (sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr) != SQLITE_OK) {
    spdlog::error("database: ROLLBACK failed: {}", describe(db_));
  }
}

// Prepared once per connection: sqlite3_exec would parse the SQL every time.
void SqliteConnection::begin_read() { prepare("BEGIN").run(); }
void SqliteConnection::begin_write() { prepare("BEGIN IMMEDIATE").run(); }
void SqliteConnection::commit() { prepare("COMMIT").run(); }

bool is_new_database(Connection& c) {
  auto st = c.prepare("SELECT count(*) FROM sqlite_master WHERE name != 'schema_version'");
  return st.step() && st.int64(0) == 0;
}

WalCheckpointer::WalCheckpointer(SqliteConnection& writer, const std::string& path,
                                 std::function<void(const std::function<void()>&)> between_groups)
    : writer_(writer), conn_(std::make_unique<SqliteConnection>(path)), between_groups_(std::move(between_groups)) {
  sqlite3_wal_hook(writer_.handle(), &WalCheckpointer::on_wal_commit, this);
  thread_ = std::thread([this] { run(); });
}

WalCheckpointer::~WalCheckpointer() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  sqlite3_wal_hook(writer_.handle(), nullptr, nullptr);
}

void WalCheckpointer::request() {
  std::lock_guard lock(mu_);
  wanted_ = true;
  cv_.notify_one();
}

int WalCheckpointer::on_wal_commit(void* self, sqlite3* db, const char* name, int pages) {
  auto* w = static_cast<WalCheckpointer*>(self);
  // Far past the threshold (the thread cannot keep up): here, as SQLite's own checkpoint does.
  if (pages >= 16 * kCheckpointPages) {
    sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);  // as SQLite's own
  } else if (pages >= kCheckpointPages) {
    std::lock_guard lock(w->mu_);
    if (!w->wanted_) {
      w->wanted_ = true;
      w->cv_.notify_one();
    }
  }
  return SQLITE_OK;
}

void WalCheckpointer::run() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return wanted_ || stopping_; });
    if (stopping_) return;
    wanted_ = false;
    lock.unlock();
    int rc = sqlite3_wal_checkpoint_v2(conn_->handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) spdlog::warn("database: WAL checkpoint failed: {}", describe(conn_->handle()));
    if (rc == SQLITE_OK) copy_tail();
    lock.lock();
  }
}

// The tail: the frames committed while the thread's checkpoint ran. Copied while no write group
// runs, the checkpoint completes and the next write starts the WAL over (a checkpoint that never
// completes under a steady load would let the WAL grow without end). Here, between two groups,
// rather than inside the next group's commit: under a light load no write waits for it at all.
void WalCheckpointer::copy_tail() {
  between_groups_([this] {
    sqlite3_wal_checkpoint_v2(conn_->handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  });
}

void WalCheckpointer::truncate(Connection& c) noexcept {
  try {
    c.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  } catch (const std::exception& e) {
    spdlog::warn("after the schema migration, the WAL checkpoint failed: {}", e.what());
  }
}

}  // namespace trestle::storage::sqlite
