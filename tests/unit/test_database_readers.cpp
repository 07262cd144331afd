// The database's pool of read connections: opened ahead, shared between threads, and a 503 (not
// a 500) when no connection is free and no new one can be opened.
#include "core/error.hpp"
#include "storage/database.hpp"

#include "temp_dir.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <thread>

using namespace trestle;
namespace fs = std::filesystem;

namespace {

using trestle::test_support::TempDir;


int64_t count_rows(storage::Connection& c) {
  auto st = c.prepare("SELECT COUNT(*) FROM schema_version");
  st.step();
  return st.int64(0);
}

}  // namespace

TEST(DatabaseReaders, AreOpenedAheadAndReused) {
  TempDir dir;
  storage::Database db((dir.path / "t.db").string(), 3);
  EXPECT_EQ(db.reader_count(), 3u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(db.read([](storage::Connection& c) { return count_rows(c); }), 1);
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) db.read([](storage::Connection& c) { count_rows(c); });
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(db.reader_count(), 4u);  // three threads and this one at most: no connection per read
}

TEST(DatabaseReaders, AFailedReadReturnsItsConnectionOutsideATransaction) {
  TempDir dir;
  storage::Database db((dir.path / "t.db").string(), 1);
  EXPECT_THROW(db.read([](storage::Connection& c) { c.prepare("SELECT nonsense FROM nowhere"); }), std::runtime_error);
  EXPECT_THROW(db.read([](storage::Connection&) -> int { throw MatrixError::not_found("x"); }), MatrixError);
  EXPECT_EQ(db.read([](storage::Connection& c) { return count_rows(c); }), 1);
  EXPECT_EQ(db.reader_count(), 1u);
}

TEST(DatabaseReaders, WhenNoneCanBeOpenedAReadWaitsForAFreeOne) {
  TempDir dir;
  storage::Database db((dir.path / "t.db").string(), 1);
  fs::remove_all(dir.path);  // new connections now fail to open, as when out of descriptors
  std::promise<void> holding, release;
  std::thread holder([&] {
    db.read([&](storage::Connection&) {
      holding.set_value();
      release.get_future().wait();
    });
  });
  holding.get_future().wait();
  auto waiter = std::async(std::launch::async, [&] { return db.read([](storage::Connection& c) { return count_rows(c); }); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  release.set_value();
  holder.join();
  EXPECT_EQ(waiter.get(), 1);
}

TEST(DatabaseReaders, WhenNoneCanBeOpenedOrFreedAReadIs503) {
  TempDir dir;
  storage::Database db((dir.path / "t.db").string(), 1);
  fs::remove_all(dir.path);
  db.read([&](storage::Connection&) {
    try {
      db.read([](storage::Connection&) {});  // the only connection is busy (held by this thread)
      FAIL() << "expected 503";
    } catch (const MatrixError& e) {
      EXPECT_EQ(e.status(), 503);
      EXPECT_EQ(e.errcode(), "M_UNKNOWN");
      EXPECT_NE(std::string(e.what()).find("try again"), std::string::npos);
    }
  });
}
