// Several writers of one stream on PostgreSQL (DatabaseOptions::shared_stream: rooms' events
// sharded over event writers). Two Database objects stand for two writer processes. The stream
// stays gap-free and in commit order: a read snapshot that sees position P sees every row at or
// below P; a writer that holds the turn makes the other wait; a failed job gives its turn back
// without moving the stream.
#include "pg_test_database.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace trestle;

namespace {

storage::DatabaseOptions shared(storage::DatabaseOptions o) {
  o.shared_stream = true;
  o.readers_ahead = 2;
  return o;
}

int64_t stored_position(storage::Database& db) {
  return db.read([](storage::Connection& c) {
    auto st = c.prepare("SELECT value FROM stream_position WHERE name = 'global'");
    return st.step() ? st.int64(0) : int64_t{-1};
  });
}

// Appends `n` rows at fresh positions, tagged with the writer.
int64_t append(storage::Database& db, const std::string& writer, int n) {
  return db.write([&](storage::Connection& c) {
    int64_t last = 0;
    for (int i = 0; i < n; ++i) {
      last = db.next_stream_position();
      c.prepare("INSERT INTO shared_stream_probe (pos, writer) VALUES (?, ?)").bind(last, writer).run();
    }
    return last;
  });
}

}  // namespace

TEST(SharedStream, TwoWritersAppendOneGapFreeStreamInCommitOrder) {
  NEED_POSTGRES(opts);
  storage::Database a(shared(*opts));
  storage::Database b(shared(*opts));
  a.write([](storage::Connection& c) { c.exec("CREATE TABLE shared_stream_probe (pos BIGINT PRIMARY KEY, writer TEXT)"); });
  const int64_t base = stored_position(a);

  std::atomic<bool> done{false};
  std::atomic<int> checks{0};
  std::string violation;
  // Every snapshot: the rows at or below the stored position are exactly the positions above base.
  std::thread checker([&] {
    while (!done) {
      auto [position, rows] = b.read([](storage::Connection& c) {
        auto p = c.prepare("SELECT value FROM stream_position WHERE name = 'global'");
        p.step();
        int64_t position = p.int64(0);
        while (p.step()) {
        }
        auto n = c.prepare("SELECT count(*) FROM shared_stream_probe WHERE pos <= ?");
        n.bind(position).step();
        return std::pair<int64_t, int64_t>(position, n.int64(0));
      });
      if (rows != position - base && violation.empty()) {
        violation = "position " + std::to_string(position) + " with " + std::to_string(rows) + " rows at or below it";
      }
      ++checks;
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      storage::Database& db = t % 2 ? b : a;
      for (int i = 0; i < 60; ++i) append(db, t % 2 ? "b" : "a", 1 + (i % 3));
    });
  }
  for (auto& w : writers) w.join();
  done = true;
  checker.join();
  EXPECT_EQ(violation, "");
  EXPECT_GT(checks.load(), 0);

  const int64_t total = 4 * 20 * (1 + 2 + 3);
  EXPECT_EQ(stored_position(a), base + total);
  auto [count, low, high] = a.read([](storage::Connection& c) {
    auto st = c.prepare("SELECT count(*), min(pos), max(pos) FROM shared_stream_probe");
    st.step();
    return std::tuple<int64_t, int64_t, int64_t>(st.int64(0), st.int64(1), st.int64(2));
  });
  EXPECT_EQ(count, total);
  EXPECT_EQ(low, base + 1);
  EXPECT_EQ(high, base + total);
  // Each process knows at least what it committed itself; a refresh brings the rest.
  EXPECT_EQ(a.refresh_position(), base + total);
  EXPECT_EQ(b.refresh_position(), base + total);
}

TEST(SharedStream, AWriterHoldingTheTurnMakesTheOtherWait) {
  NEED_POSTGRES(opts);
  storage::Database a(shared(*opts));
  storage::Database b(shared(*opts));
  a.write([](storage::Connection& c) { c.exec("CREATE TABLE shared_stream_probe (pos BIGINT PRIMARY KEY, writer TEXT)"); });

  std::atomic<bool> a_has_turn{false};
  std::atomic<int64_t> a_committed_at{0};
  int64_t a_pos = 0;
  std::thread ta([&] {
    a_pos = a.write([&](storage::Connection& c) {
      int64_t p = a.next_stream_position();
      c.prepare("INSERT INTO shared_stream_probe (pos, writer) VALUES (?, 'a')").bind(p).run();
      a_has_turn = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      return p;
    });
    a_committed_at = std::chrono::steady_clock::now().time_since_epoch().count();
  });
  while (!a_has_turn) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  int64_t b_pos = append(b, "b", 1);
  const auto b_committed_at = std::chrono::steady_clock::now().time_since_epoch().count();
  ta.join();
  EXPECT_EQ(b_pos, a_pos + 1) << "b continues after a's position";
  EXPECT_LE(a_committed_at.load(), b_committed_at) << "b allocated only after a committed";
}

TEST(SharedStream, AFailedJobGivesItsTurnBackWithoutMovingTheStream) {
  NEED_POSTGRES(opts);
  storage::Database a(shared(*opts));
  storage::Database b(shared(*opts));
  a.write([](storage::Connection& c) { c.exec("CREATE TABLE shared_stream_probe (pos BIGINT PRIMARY KEY, writer TEXT)"); });
  // The other writer moves the stream on: `a` has not heard of it (no cluster here), so its group
  // begins from a stale position and learns the stored one only when it takes the turn.
  const int64_t base = append(b, "b", 2);
  ASSERT_LT(a.committed_position(), base);

  // A group of several jobs (savepoints): the first holds the group open while the others queue.
  std::atomic<bool> holding{false};
  std::thread first([&] {
    a.write([&](storage::Connection&) {
      holding = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    });
  });
  while (!holding) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::atomic<int> finished{0};
  std::exception_ptr failed_error, ok_error;
  a.write_async(
      [&](storage::Connection& c) {
        int64_t p = a.next_stream_position();  // takes the turn inside the job's savepoint
        c.prepare("INSERT INTO shared_stream_probe (pos, writer) VALUES (?, 'failed')").bind(p).run();
        throw std::runtime_error("this job fails");
      },
      [&](std::exception_ptr e) {
        failed_error = e;
        ++finished;
      });
  a.write_async([&](storage::Connection& c) { c.exec("SELECT 1"); },  // no position: no turn
                [&](std::exception_ptr e) {
                  ok_error = e;
                  ++finished;
                });
  first.join();
  while (finished < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(failed_error);
  EXPECT_FALSE(ok_error);
  EXPECT_EQ(stored_position(a), base) << "the failed job's position was not kept";

  // The other writer is not blocked, and the stream goes on from base.
  EXPECT_EQ(append(b, "b", 1), base + 1);
  EXPECT_EQ(append(a, "a", 1), base + 2);
}
