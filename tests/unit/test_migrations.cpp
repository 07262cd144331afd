// Schema migrations that back-fill from data stored before them, run on a database built by the
// steps before them (found by what they create, so later migrations can be appended freely).
#include "storage/database.hpp"
#include "storage/migrations.hpp"
#include "temp_dir.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct RawDb {
  sqlite3* db = nullptr;
  explicit RawDb(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) throw std::runtime_error("open failed");
  }
  ~RawDb() { sqlite3_close(db); }
  void exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "?";
      sqlite3_free(err);
      throw std::runtime_error(msg + " in: " + sql.substr(0, 200));
    }
  }
  // event_id -> "parent rel_type key" for every row of event_relations.
  std::map<std::string, std::string> relations() {
    std::map<std::string, std::string> out;
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT event_id, relates_to_id, rel_type, IFNULL(aggregation_key, '-') FROM event_relations",
                       -1, &st, nullptr);
    while (sqlite3_step(st) == SQLITE_ROW) {
      auto col = [&](int i) { return std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, i))); };
      out[col(0)] = col(1) + " " + col(2) + " " + col(3);
    }
    sqlite3_finalize(st);
    return out;
  }
  // Every row of `sql`'s answer as one line, its columns quoted (NULL, integers and text apart).
  std::vector<std::string> query(const std::string& sql) {
    std::vector<std::string> out;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) throw std::runtime_error("prepare: " + sql);
    while (sqlite3_step(st) == SQLITE_ROW) {
      std::string line;
      for (int i = 0; i < sqlite3_column_count(st); ++i) {
        if (sqlite3_column_type(st, i) == SQLITE_NULL) {
          line += "NULL|";
        } else {
          auto p = reinterpret_cast<const char*>(sqlite3_column_text(st, i));
          line += (sqlite3_column_type(st, i) == SQLITE_INTEGER ? "" : "'") +
                  std::string(p, sqlite3_column_bytes(st, i)) + "|";
        }
      }
      out.push_back(line);
    }
    sqlite3_finalize(st);
    return out;
  }
  // The schema as SQLite keeps it: "type name on tbl_name: sql" for every object, by name.
  std::vector<std::string> schema() {
    return query("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name");
  }
  // Every table's rows, "table: row", tables by name and rows sorted.
  std::vector<std::string> contents() {
    std::vector<std::string> out;
    for (const auto& line : query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")) {
      std::string table = line.substr(1, line.size() - 2);  // 'name'|
      auto rows = query("SELECT * FROM \"" + table + "\"");
      std::sort(rows.begin(), rows.end());
      for (const auto& row : rows) out.push_back(table + ": " + row);
    }
    return out;
  }
  // What schema_snapshot.cpp should hold for this database: its CREATE statements in the order
  // they were made, without the tables SQLite makes by itself (FTS5's shadow tables,
  // sqlite_sequence, autoindexes) and schema_version (migrate() makes it first).
  std::string snapshot_script() {
    std::set<std::string> shadow;
    for (const auto& line : query("SELECT name FROM pragma_table_list WHERE type = 'shadow'")) {
      shadow.insert(line.substr(1, line.size() - 2));
    }
    std::string out;
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid", -1, &st, nullptr);
    while (sqlite3_step(st) == SQLITE_ROW) {
      std::string name = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      if (name == "schema_version" || name.rfind("sqlite_", 0) == 0 || shadow.count(name)) continue;
      out += std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 1))) + ";\n";
    }
    sqlite3_finalize(st);
    return out;
  }
};

size_t step_creating(const std::string& what) {
  const auto& steps = trestle::storage::migrations();
  for (size_t i = 0; i < steps.size(); ++i) {
    if (steps[i].find(what) != std::string::npos) return i;
  }
  throw std::runtime_error("no migration creates " + what);
}

void insert_event(RawDb& db, int ordering, const std::string& id, const std::string& json,
                  const std::string& redacted_by = "") {
  db.exec("INSERT INTO events (stream_ordering, event_id, room_id, type, sender, origin_server_ts, depth, json, "
          "redacted_by) VALUES (" +
          std::to_string(ordering) + ", '" + id + "', '!r:hs', 'm.room.message', '@a:hs', 0, " +
          std::to_string(ordering) + ", '" + json + "', " + (redacted_by.empty() ? "NULL" : "'" + redacted_by + "'") +
          ")");
}

TEST(Migrations, RelationsStepBackFillsEventsStoredBeforeIt) {
  trestle::test_support::TempDir dir;
  RawDb db((dir.path / "hs.db").string());
  const auto& steps = trestle::storage::migrations();
  size_t relations = step_creating("CREATE TABLE event_relations");
  for (size_t i = 0; i < relations; ++i) db.exec(steps[i]);

  auto rel = [](const std::string& rel_type, const std::string& parent, const std::string& extra = "") {
    return R"({"content":{"body":"x","m.relates_to":{"rel_type":")" + rel_type + R"(","event_id":")" + parent +
           "\"" + extra + "}}}";
  };
  insert_event(db, 1, "$root", R"({"content":{"body":"root"}})");
  insert_event(db, 2, "$r1", rel("m.thread", "$root"));
  insert_event(db, 3, "$r2", rel("m.thread", "$root"));
  insert_event(db, 4, "$gone", rel("m.thread", "$root"), "$redaction");  // redacted: no relation
  insert_event(db, 5, "$bad", R"({"content":{"m.relates_to":{"rel_type":5,"event_id":"$root"}}})");
  insert_event(db, 6, "$damaged", R"({"content":{"m.relates_to": )");  // JSON that no longer parses
  insert_event(db, 7, "$edit", rel("m.replace", "$r1"));
  insert_event(db, 8, "$react", rel("m.annotation", "$root", R"(,"key":"👍")"));
  insert_event(db, 9, "$numkey", rel("m.annotation", "$root", R"(,"key":7)"));

  ASSERT_NO_THROW(db.exec(steps[relations]));
  std::map<std::string, std::string> want{{"$r1", "$root m.thread -"},
                                          {"$r2", "$root m.thread -"},
                                          {"$edit", "$r1 m.replace -"},
                                          {"$react", "$root m.annotation 👍"},
                                          {"$numkey", "$root m.annotation -"}};
  EXPECT_EQ(db.relations(), want);
  // The steps after it still apply on top.
  for (size_t i = relations + 1; i < steps.size(); ++i) ASSERT_NO_THROW(db.exec(steps[i])) << "step " << i + 1;
}

// A new database is made from schema_snapshot() and the steps after it; every older one went
// through the steps. Both must end with the same schema (each table's CREATE statement as SQLite
// keeps it, so column order, types, defaults and constraints too; every index and trigger) and the
// same rows. A failure prints the script that schema_snapshot.cpp should hold.
TEST(SchemaSnapshot, NewDatabaseMatchesOneMigratedStepByStep) {
  trestle::test_support::TempDir dir;
  const auto& steps = trestle::storage::migrations();
  ASSERT_LE(trestle::storage::schema_snapshot().version, steps.size());

  // Step by step, as migrate() brings an existing database up to date.
  RawDb stepped((dir.path / "stepped.db").string());
  stepped.exec("CREATE TABLE schema_version (version INTEGER NOT NULL)");
  for (size_t i = 0; i < steps.size(); ++i) ASSERT_NO_THROW(stepped.exec(steps[i])) << "step " << i + 1;
  stepped.exec("INSERT INTO schema_version VALUES (" + std::to_string(steps.size()) + ")");

  // A new database, made by the server's own code.
  { trestle::storage::Database fresh((dir.path / "fresh.db").string(), 0); }
  RawDb fresh((dir.path / "fresh.db").string());

  auto only_in = [](const std::vector<std::string>& a, const std::vector<std::string>& b) {
    std::string out;
    for (const auto& x : a) {
      if (std::find(b.begin(), b.end(), x) == b.end()) out += "  " + x + "\n";
    }
    return out;
  };
  auto fresh_schema = fresh.schema(), stepped_schema = stepped.schema();
  EXPECT_EQ(fresh_schema, stepped_schema)
      << "schema_snapshot.cpp and the migrations disagree.\nOnly in a new database:\n"
      << only_in(fresh_schema, stepped_schema) << "Only in a migrated one:\n" << only_in(stepped_schema, fresh_schema)
      << "After all " << steps.size() << " steps the snapshot script would be:\n" << stepped.snapshot_script();
  EXPECT_EQ(fresh.contents(), stepped.contents());
}

// The snapshot is only for a new file: a database that already has tables is migrated step by
// step from its version, the snapshot never runs over it.
TEST(SchemaSnapshot, ExistingDatabaseIsMigratedFromItsVersion) {
  trestle::test_support::TempDir dir;
  const auto& steps = trestle::storage::migrations();
  const std::string path = (dir.path / "old.db").string();
  {
    RawDb old(path);
    old.exec("CREATE TABLE schema_version (version INTEGER NOT NULL)");
    for (size_t i = 0; i < 10; ++i) old.exec(steps[i]);
    old.exec("INSERT INTO schema_version VALUES (10)");
    old.exec("INSERT INTO users (user_id, created_ts) VALUES ('@old:hs', 1)");
  }
  { trestle::storage::Database db(path, 0); }
  RawDb db(path);
  EXPECT_EQ(db.query("SELECT version FROM schema_version"), std::vector<std::string>{"" + std::to_string(steps.size()) + "|"});
  EXPECT_EQ(db.query("SELECT user_id, is_guest FROM users"), std::vector<std::string>{"'@old:hs|0|"});
}

}  // namespace
