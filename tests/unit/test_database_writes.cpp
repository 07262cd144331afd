// The group commit's before_commit(): work a write queues runs at the group's end, in order, only
// for writes that succeeded, and a failure there fails the whole group.
#include "storage/database.hpp"

#include "temp_dir.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

using namespace trestle;

namespace {

using trestle::test_support::TempDir;

std::vector<std::string> rows(storage::Database& db) {
  return db.read([](storage::Connection& c) {
    std::vector<std::string> out;
    auto st = c.prepare("SELECT v FROM t ORDER BY rowid");
    while (st.step()) out.push_back(st.text(0));
    return out;
  });
}

}  // namespace

TEST(DatabaseWrites, BeforeCommitRunsAfterTheWriteOnlyWhenItSucceeds) {
  TempDir dir;
  storage::Database db((dir.path / "t.db").string(), 1);
  db.write([](storage::Connection& c) { c.exec("CREATE TABLE t (v TEXT)"); });
  db.write([&](storage::Connection& c) {
    db.before_commit([](storage::Connection& c) { c.prepare("INSERT INTO t VALUES ('deferred')").run(); });
    c.prepare("INSERT INTO t VALUES ('direct')").run();
  });
  EXPECT_EQ(rows(db), (std::vector<std::string>{"direct", "deferred"}));

  EXPECT_THROW(db.write([&](storage::Connection& c) {
                 db.before_commit([](storage::Connection& c) { c.prepare("INSERT INTO t VALUES ('lost')").run(); });
                 c.prepare("INSERT INTO t VALUES ('rolled back')").run();
                 throw std::runtime_error("no");
               }),
               std::runtime_error);
  EXPECT_EQ(rows(db).size(), 2u);

  // A failure in the deferred work fails the write that queued it, with nothing committed.
  EXPECT_THROW(db.write([&](storage::Connection& c) {
                 db.before_commit([](storage::Connection&) { throw std::runtime_error("late"); });
                 c.prepare("INSERT INTO t VALUES ('undone')").run();
               }),
               std::runtime_error);
  EXPECT_EQ(rows(db).size(), 2u);
  db.write([&](storage::Connection& c) { c.prepare("INSERT INTO t VALUES ('after')").run(); });
  EXPECT_EQ(rows(db).back(), "after");
}
