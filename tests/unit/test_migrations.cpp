// Schema migrations that back-fill from data stored before them, run on a database built by the
// steps before them (found by what they create, so later migrations can be appended freely).
#include "storage/migrations.hpp"
#include "temp_dir.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <map>
#include <stdexcept>
#include <string>

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

}  // namespace
