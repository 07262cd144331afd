// Password hashing under a memory budget, and UIA sessions: pure logic, no server.
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "service/password_hasher.hpp"
#include "service/uia_sessions.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <optional>
#include <chrono>
#include <thread>
#include <vector>

using namespace trestle;
using service::PasswordHasher;
using service::UiaSessions;

namespace {
constexpr size_t kHash = core::kPasswordMemLimit;

int status_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const MatrixError& e) {
    EXPECT_EQ(e.errcode(), "M_LIMIT_EXCEEDED");
    EXPECT_TRUE(e.extra().contains("retry_after_ms"));
    return e.status();
  }
  return 200;
}
}  // namespace

class PasswordHasherTest : public ::testing::Test {
protected:
  void SetUp() override { core::crypto_init(); }
};

TEST_F(PasswordHasherTest, VerifiesRealHashesAndNeverAcceptsTheDummy) {
  PasswordHasher h;
  std::string hash = h.hash("secret");
  EXPECT_TRUE(h.verify("secret", hash));
  EXPECT_FALSE(h.verify("wrong", hash));
  EXPECT_FALSE(h.verify("secret", std::nullopt));
  EXPECT_FALSE(h.verify("", std::nullopt));
  EXPECT_EQ(h.memory_in_use(), 0u);
}

TEST_F(PasswordHasherTest, ConcurrentHashesStayWithinTheBudget) {
  PasswordHasher h;  // two 19 MiB hashes at a time
  std::atomic<bool> done = false;
  std::atomic<size_t> peak = 0;
  std::thread watcher([&] {
    while (!done) {
      peak = std::max(peak.load(), h.memory_in_use());
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  std::vector<std::thread> threads;
  std::atomic<int> ok = 0;
  for (int i = 0; i < 6; ++i) threads.emplace_back([&] { ok += h.verify("x", h.hash("x")) ? 1 : 0; });
  for (auto& t : threads) t.join();
  done = true;
  watcher.join();
  EXPECT_EQ(ok, 6);  // 6 waiting at most, below the queue's bound: all served
  EXPECT_LE(peak.load(), 2 * kHash);
  EXPECT_GT(peak.load(), 0u);
  EXPECT_EQ(h.memory_in_use(), 0u);
}

TEST_F(PasswordHasherTest, BeyondTheQueueRequestsAre429AtOnce) {
  PasswordHasher h({.memory_budget = kHash, .max_waiting = 0, .max_wait_ms = 5000, .retry_after_ms = 500});
  auto busy = h.acquire(kHash);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(status_of([&] { h.hash("x"); }), 429);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

TEST_F(PasswordHasherTest, AWaiterGivesUpAfterItsDeadline) {
  PasswordHasher h({.memory_budget = kHash, .max_waiting = 4, .max_wait_ms = 50, .retry_after_ms = 500});
  auto busy = h.acquire(kHash);
  EXPECT_EQ(status_of([&] { h.hash("x"); }), 429);
  EXPECT_EQ(h.waiting(), 0u);
}

TEST_F(PasswordHasherTest, AWaiterRunsWhenMemoryIsFreed) {
  PasswordHasher h({.memory_budget = kHash, .max_waiting = 4, .max_wait_ms = 10000, .retry_after_ms = 500});
  std::atomic<bool> hashed = false;
  std::thread waiter;
  {
    auto slot = h.acquire(kHash);
    waiter = std::thread([&] {
      h.hash("x");
      hashed = true;
    });
    while (h.waiting() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_FALSE(hashed);
  }
  waiter.join();
  EXPECT_TRUE(hashed);
}

TEST_F(PasswordHasherTest, AHashBiggerThanTheBudgetRunsAlone) {
  PasswordHasher h({.memory_budget = kHash, .max_waiting = 0, .max_wait_ms = 50, .retry_after_ms = 500});
  {
    auto big = h.acquire(4 * kHash);  // an old 64 MiB hash: admitted when nothing else runs
    EXPECT_EQ(h.memory_in_use(), 4 * kHash);
    EXPECT_EQ(status_of([&] { h.hash("x"); }), 429);
  }
  EXPECT_EQ(h.memory_in_use(), 0u);
}

TEST(UiaSessions, RecordUserOperationAndStagesAndExpire) {
  core::crypto_init();
  UiaSessions s;
  std::string id = s.create("@a:x", "DELETE /devices/A", 1000);
  auto got = s.get(id, 2000);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->user_id, "@a:x");
  EXPECT_EQ(got->operation, "DELETE /devices/A");
  EXPECT_TRUE(got->completed.empty());
  s.complete_stage(id, "m.login.password");
  EXPECT_EQ(s.get(id, 2000)->completed.count("m.login.password"), 1u);
  EXPECT_FALSE(s.get("unknown", 2000));
  EXPECT_FALSE(s.get(id, 1000 + UiaSessions::kLifetimeMs + 1));  // expired, and gone
  EXPECT_FALSE(s.get(id, 2000));
}

TEST(UiaSessions, CountIsBounded) {
  core::crypto_init();
  UiaSessions s;
  std::string first = s.create("@a:x", "op", 0);
  for (size_t i = 1; i < UiaSessions::kMaxSessions + 10; ++i) s.create("@a:x", "op", static_cast<int64_t>(i));
  EXPECT_EQ(s.size(), UiaSessions::kMaxSessions);
  EXPECT_FALSE(s.get(first, 100));  // the oldest went first
}
