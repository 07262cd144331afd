#include "storage/backup.hpp"

#include <sqlite3.h>

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <stdexcept>

namespace trestle::storage::backup {

namespace {

struct Closer {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using Db = std::unique_ptr<sqlite3, Closer>;

Db open(const std::string& path, int flags) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  Db db(raw);
  if (rc != SQLITE_OK) {
    throw std::runtime_error("cannot open database '" + path + "': " + (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  // The server's writer holds the write lock for a moment per commit group; wait it out.
  sqlite3_busy_timeout(raw, 30000);
  return db;
}

void exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    throw std::runtime_error(sql + ": " + msg);
  }
}

// Runs `sql` and calls `row` for each result row.
template <typename F>
void query(sqlite3* db, const std::string& sql, F&& row) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    throw std::runtime_error(sql + ": " + sqlite3_errmsg(db));
  }
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) row(st);
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) throw std::runtime_error(sql + ": " + sqlite3_errmsg(db));
}

bool has_table(sqlite3* db, const std::string& name) {
  bool found = false;
  query(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '" + name + "'",
        [&](sqlite3_stmt*) { found = true; });
  return found;
}

std::string column_text(sqlite3_stmt* st, int col) {
  auto* t = sqlite3_column_text(st, col);
  return t ? reinterpret_cast<const char*>(t) : "";
}

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void copy_database(const std::string& source_path, const std::string& dest_path) {
  if (std::filesystem::exists(dest_path)) throw std::runtime_error("'" + dest_path + "' exists already");
  if (!std::filesystem::exists(source_path)) throw std::runtime_error("no database at '" + source_path + "'");
  // Read-only: a backup never migrates or otherwise changes the live database.
  Db src = open(source_path, SQLITE_OPEN_READONLY);
  {
    Db dest = open(dest_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    sqlite3_backup* b = sqlite3_backup_init(dest.get(), "main", src.get(), "main");
    if (!b) throw std::runtime_error(std::string("starting the backup: ") + sqlite3_errmsg(dest.get()));
    // One step copies every page inside one read transaction: a consistent snapshot. Smaller steps
    // would restart from the beginning each time the server commits, and might never finish.
    int rc = sqlite3_backup_step(b, -1);
    while (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
      sqlite3_sleep(50);
      rc = sqlite3_backup_step(b, -1);
    }
    int finish = sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE || finish != SQLITE_OK) {
      throw std::runtime_error(std::string("copying the database: ") + sqlite3_errstr(rc != SQLITE_DONE ? rc : finish));
    }
    // A standalone file: no -wal beside it to lose.
    exec(dest.get(), "PRAGMA journal_mode=DELETE");
    std::string verdict;
    query(dest.get(), "PRAGMA quick_check", [&](sqlite3_stmt* st) {
      if (verdict.empty()) verdict = column_text(st, 0);
    });
    if (verdict != "ok") throw std::runtime_error("the copy failed its integrity check: " + verdict);
  }
  fsync_path(dest_path);
}

Summary summarize(const std::string& path) {
  Db db = open(path, SQLITE_OPEN_READONLY);
  Summary s;
  exec(db.get(), "BEGIN");
  if (has_table(db.get(), "schema_version")) {
    query(db.get(), "SELECT version FROM schema_version", [&](sqlite3_stmt* st) {
      s.schema_version = sqlite3_column_int64(st, 0);
    });
  }
  if (has_table(db.get(), "stream_position")) {
    query(db.get(), "SELECT value FROM stream_position WHERE name = 'global'", [&](sqlite3_stmt* st) {
      s.stream_position = sqlite3_column_int64(st, 0);
    });
  }
  for (const char* table : {"users", "devices", "rooms", "events", "room_memberships", "local_media"}) {
    if (!has_table(db.get(), table)) continue;
    query(db.get(), std::string("SELECT count(*) FROM ") + table, [&](sqlite3_stmt* st) {
      s.counts[table] = sqlite3_column_int64(st, 0);
    });
  }
  if (has_table(db.get(), "local_media")) {
    query(db.get(), "SELECT media_id, size, sha256 FROM local_media WHERE size IS NOT NULL ORDER BY media_id",
          [&](sqlite3_stmt* st) {
            s.media.push_back({column_text(st, 0), sqlite3_column_int64(st, 1), column_text(st, 2)});
          });
  }
  exec(db.get(), "COMMIT");
  return s;
}

}  // namespace trestle::storage::backup
