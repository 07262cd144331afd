#pragma once
// SQLite behind storage::Connection: WAL mode, statements prepared once per connection, and the
// WAL checkpointer thread that keeps checkpoints out of the writer's commits.
#include "storage/database.hpp"

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

struct sqlite3;
struct sqlite3_stmt;

namespace trestle::storage::sqlite {

class SqliteStatement;

class SqliteConnection final : public Connection {
public:
  // Opens (creating if needed) the database file in WAL mode. Throws std::runtime_error naming
  // the file and the cause.
  explicit SqliteConnection(const std::string& path);
  ~SqliteConnection() override;

  Dialect dialect() const override { return Dialect::sqlite; }
  Statement prepare(const std::string& sql) override;
  void exec(const std::string& sql) override;
  int64_t changes() const override;
  bool in_transaction() const override;
  void rollback() noexcept override;
  void begin_read() override;
  void begin_write() override;
  void commit() override;

  sqlite3* handle() const { return db_; }

private:
  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, std::unique_ptr<SqliteStatement>> cache_;
};

// Nothing in the file but the schema_version table that migration creates first.
bool is_new_database(Connection& c);

// WAL checkpoints (committed pages copied from the WAL into the database file) run on a thread
// of their own, beside the writer and the readers (PASSIVE), once the WAL holds a threshold of
// pages: SQLite's own checkpoint ran inside the commit that crossed its threshold, while every
// other writer waited. A WAL that grows far past it all the same (the thread cannot keep up) is
// checkpointed by the committing writer, as SQLite does.
class WalCheckpointer {
public:
  // Installs itself as `writer`'s WAL hook (instead of SQLite's autocheckpoint) and opens a
  // connection of its own to `path`. `between_groups(fn)` runs fn while no write group runs.
  WalCheckpointer(SqliteConnection& writer, const std::string& path,
                  std::function<void(const std::function<void()>&)> between_groups);
  ~WalCheckpointer();  // stops the thread
  void request();      // a checkpoint soon (a new database's schema pages)
  // Folds the WAL into the file now and empties it (after a migration); best effort.
  static void truncate(Connection& c) noexcept;

private:
  static int on_wal_commit(void* self, sqlite3* db, const char* name, int pages);
  void run();
  void copy_tail();

  SqliteConnection& writer_;
  std::unique_ptr<SqliteConnection> conn_;
  std::function<void(const std::function<void()>&)> between_groups_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool wanted_ = false, stopping_ = false;
  std::thread thread_;
};

}  // namespace trestle::storage::sqlite
