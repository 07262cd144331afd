#include "storage/port_db.hpp"

#include "storage/migrations.hpp"
#include "storage/postgres/connection.hpp"
#include "storage/sqlite/connection.hpp"

#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>

namespace trestle::storage::port {

namespace {

struct Column {
  std::string name;
  bool integer = false;  // BIGINT on PostgreSQL: bound as an integer, else as text
};

struct Table {
  std::string name;
  std::vector<Column> columns;  // PostgreSQL's, generated ones left out
  bool has_rowid = true;        // SQLite: rowid tables are copied in batches, WITHOUT ROWID ones at once
};

// Where this port got to: the last SQLite rowid copied of each table, committed with its rows.
constexpr const char* kProgressTable = "port_db_progress";

int64_t count(Connection& c, const std::string& table) {
  auto st = c.prepare("SELECT count(*) FROM " + table);
  return st.step() ? st.int64(0) : 0;
}

std::vector<Table> target_tables(Connection& pg) {
  std::map<std::string, Table> tables;
  auto st = pg.prepare(
      "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema()"
      " AND is_generated = 'NEVER' ORDER BY table_name, ordinal_position");
  while (st.step()) {
    auto name = st.text(0);
    if (name == "schema_version" || name == kProgressTable) continue;
    auto& t = tables[name];
    t.name = name;
    auto type = st.text(2);
    t.columns.push_back({st.text(1), type == "bigint" || type == "integer" || type == "smallint"});
  }
  std::vector<Table> out;
  for (auto& [_, t] : tables) out.push_back(std::move(t));
  return out;
}

// SQLite's table of the same name: FTS5's event_search keeps its key as the rowid.
std::string source_column(const Table& t, const Column& col) {
  if (t.name == "event_search" && col.name == "stream_ordering") return "rowid";
  return "\"" + col.name + "\"";
}

bool sqlite_has_rowid(Connection& sqlite, const std::string& table) {
  auto st = sqlite.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?");
  st.bind(table);
  if (!st.step()) throw std::runtime_error("the SQLite database has no table '" + table + "'");
  auto sql = st.text(0);
  return sql.find("WITHOUT ROWID") == std::string::npos;
}

}  // namespace

std::vector<TableResult> sqlite_to_postgres(const Options& options) {
  auto say = [&](const std::string& line) {
    if (options.progress) options.progress(line);
  };
  if (!std::filesystem::exists(options.sqlite_path)) {
    throw std::runtime_error("no SQLite database at '" + options.sqlite_path + "'");
  }
  sqlite::SqliteConnection source(options.sqlite_path);
  {
    auto st = source.prepare("SELECT version FROM schema_version");
    int64_t version = st.step() ? st.int64(0) : 0;
    if (version != static_cast<int64_t>(migrations().size())) {
      throw std::runtime_error("the SQLite database is at schema version " + std::to_string(version) + ", this Trestle at " +
                               std::to_string(migrations().size()) + ": start this Trestle on it once (it migrates it), then port");
    }
  }
  { Database migrate_target(options.target); }  // the schema, at the same version
  postgres::PgConnection target(options.target.pg_conninfo);
  target.exec(std::string("CREATE TABLE IF NOT EXISTS ") + kProgressTable +
              " (table_name TEXT PRIMARY KEY, last_rowid BIGINT NOT NULL, done BIGINT NOT NULL)");
  auto tables = target_tables(target);
  struct Progress {
    int64_t last_rowid = 0;
    bool done = false;
  };
  std::map<std::string, Progress> progress;
  {
    auto st = target.prepare(std::string("SELECT table_name, last_rowid, done FROM ") + kProgressTable);
    while (st.step()) progress[st.text(0)] = {st.int64(1), st.int64(2) != 0};
  }
  // A first run needs an empty target (but for the rows the schema itself inserts).
  if (progress.empty()) {
    for (const auto& t : tables) {
      if (t.name == "stream_position") continue;
      if (count(target, t.name) != 0) {
        throw std::runtime_error("the PostgreSQL database already holds data (table " + t.name +
                                 ") that no port wrote: port into a new, empty database");
      }
    }
  }
  // Every run copies every table whole (rows the source updated or deleted since an earlier run
  // must not survive), but a run that was interrupted resumes: its finished tables stay, the
  // table it was copying goes on after the last batch committed.
  const std::string kRun = "(the whole run)";
  if (progress.count(kRun) && progress[kRun].done) {
    target.exec(std::string("DELETE FROM ") + kProgressTable);
    progress.clear();
  }
  auto save_progress = [&](const std::string& table, int64_t last, bool done) {
    target.prepare(std::string("INSERT INTO ") + kProgressTable + " (table_name, last_rowid, done) VALUES (?, ?, ?)"
                   " ON CONFLICT (table_name) DO UPDATE SET last_rowid = excluded.last_rowid, done = excluded.done")
        .bind(table, last, done)
        .run();
  };

  std::vector<TableResult> results;
  for (auto& t : tables) {
    t.has_rowid = sqlite_has_rowid(source, t.name);
    TableResult r{t.name};
    std::string columns, sources, values;
    for (size_t i = 0; i < t.columns.size(); ++i) {
      columns += (i ? ", \"" : "\"") + t.columns[i].name + "\"";
      sources += (i ? ", " : "") + source_column(t, t.columns[i]);
      values += i ? ", ?" : "?";
    }
    const std::string select = t.has_rowid ? "SELECT " + sources + ", rowid FROM " + t.name +
                                                 " WHERE rowid > ? ORDER BY rowid LIMIT ?"
                                           : "SELECT " + sources + " FROM " + t.name;
    const std::string insert = "INSERT INTO " + t.name + " (" + columns + ") VALUES (" + values + ")";
    auto it = progress.find(t.name);
    const bool started = it != progress.end();
    int64_t after = started ? it->second.last_rowid : 0;
    bool done = started && it->second.done;
    bool first_batch = !started;
    while (!done) {
      // One batch: read from one SQLite snapshot, written in one PostgreSQL transaction with the
      // progress row, so a port killed anywhere resumes without a gap or a duplicate. The first
      // batch of a table empties it first, in the same transaction.
      int64_t rows = 0, last = after;
      source.begin_read();
      target.begin_write();
      try {
        if (first_batch) target.exec("DELETE FROM " + t.name);
        auto st = source.prepare(select);
        if (t.has_rowid) st.bind(after, options.batch_rows);
        while (st.step()) {
          auto ins = target.prepare(insert);
          for (size_t i = 0; i < t.columns.size(); ++i) {
            const int col = static_cast<int>(i);
            if (t.columns[i].integer) {
              ins.bind(st.is_null(col) ? std::optional<int64_t>() : std::optional<int64_t>(st.int64(col)));
            } else {
              ins.bind(st.opt_text(col));
            }
          }
          ins.run();
          if (t.has_rowid) last = st.int64(static_cast<int>(t.columns.size()));
          ++rows;
        }
        done = !t.has_rowid || rows < options.batch_rows;
        save_progress(t.name, last, done);
        target.commit();
      } catch (...) {
        target.rollback();
        source.rollback();
        throw;
      }
      source.commit();
      first_batch = false;
      r.copied += rows;
      after = last;
      if (rows > 0) say(t.name + ": " + std::to_string(r.copied) + " rows");
    }
    r.source_rows = count(source, t.name);
    r.target_rows = count(target, t.name);
    results.push_back(r);
  }
  target.begin_write();
  save_progress(kRun, 0, true);
  target.commit();
  // Identity columns continue after the ids copied.
  std::vector<std::pair<std::string, std::string>> identities;
  {
    auto st = target.prepare(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND is_identity = 'YES'");
    while (st.step()) identities.emplace_back(st.text(0), st.text(1));
  }
  for (const auto& [table, column] : identities) {
    target.exec("SELECT setval(pg_get_serial_sequence('" + table + "', '" + column + "'), (SELECT COALESCE(max(" +
                column + "), 0) + 1 FROM " + table + "), false)");
  }
  return results;
}

}  // namespace trestle::storage::port
