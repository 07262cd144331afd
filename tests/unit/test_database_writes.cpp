// The group commit's before_commit(): work a write queues runs at the group's end, in order, only
// for writes that succeeded, and a failure there fails the whole group.
#include "storage/database.hpp"

#include "temp_dir.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
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

// write_async: no thread waits, yet every write is committed before its completion is called, a
// failing one is undone alone and told its error, and sync writes mixed in keep working.
TEST(DatabaseWrites, AsyncWritesCompleteAfterTheirCommitAndFailAlone) {
  TempDir dir;
  storage::Database db((dir.path / "t.db").string(), 1);
  db.write([](storage::Connection& c) { c.exec("CREATE TABLE t (v TEXT)"); });
  std::mutex mu;
  std::condition_variable cv;
  int completed = 0, failed = 0, committed_when_told = 0;
  constexpr int kWrites = 200;
  for (int i = 0; i < kWrites; ++i) {
    const std::string v = "a" + std::to_string(i);
    db.write_async(
        [v, i](storage::Connection& c) {
          c.prepare("INSERT INTO t VALUES (?)").bind(v).run();
          if (i % 50 == 7) throw std::runtime_error("this one fails");
        },
        [&, v](std::exception_ptr error) {
          // Visible to a new read snapshot by now: the group committed (or the write was undone).
          bool visible = db.read([&](storage::Connection& c) {
            auto st = c.prepare("SELECT count(*) FROM t WHERE v = ?");
            st.bind(v);
            return st.step() && st.int64(0) == 1;
          });
          std::lock_guard lock(mu);
          ++completed;
          if (error) ++failed;
          if (!error && visible) ++committed_when_told;
          cv.notify_all();
        });
    if (i % 40 == 0) db.write([&](storage::Connection& c) { c.prepare("INSERT INTO t VALUES ('sync')").run(); });
  }
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return completed == kWrites; }));
  EXPECT_EQ(failed, 4);
  EXPECT_EQ(committed_when_told, kWrites - 4);
  lock.unlock();
  auto all = rows(db);
  EXPECT_EQ(all.size(), static_cast<size_t>(kWrites - 4 + 5));
  EXPECT_EQ(std::count(all.begin(), all.end(), "a7"), 0);
}
