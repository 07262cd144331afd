// The appservice sender's lease (storage/appservice_store.cpp, issue 13): one holder per
// appservice at a time, taken when free, expired or by the preferred instance, and a fence that
// makes a write of a holder that lost it store nothing. Each case runs on SQLite, and on
// PostgreSQL when TRESTLE_TEST_PG is set (ctest's unit_pg runs the Postgres* ones), where the two
// "processes" are two Database objects on one database and the fence's row lock is checked too.
#include "storage/appservice_store.hpp"
#include "storage/database.hpp"

#include "pg_test_database.hpp"
#include "temp_dir.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>

using namespace trestle;
namespace asdb = storage::appservices;

namespace {

constexpr int64_t kLease = 10000;
constexpr int64_t kT0 = 1'700'000'000'000;

// Two processes' databases: two Database objects on one SQLite file or one PostgreSQL database.
struct Pair {
  std::unique_ptr<test_support::TempDir> dir;
  std::unique_ptr<storage::Database> a, b;
};

Pair sqlite_pair() {
  Pair p;
  p.dir = std::make_unique<test_support::TempDir>();
  auto path = (p.dir->path / "lease.db").string();
  p.a = std::make_unique<storage::Database>(path, 1);
  p.b = std::make_unique<storage::Database>(path, 1);
  return p;
}

std::optional<Pair> pg_pair() {
  auto o = test::pg_options();
  if (!o) return std::nullopt;
  Pair p;
  p.a = std::make_unique<storage::Database>(*o);
  p.b = std::make_unique<storage::Database>(*o);
  return p;
}

std::optional<int64_t> acquire(storage::Database& db, const std::string& me, bool preferred, int64_t now) {
  return db.write([&](storage::Connection& c) { return asdb::try_acquire_lease(c, "as1", me, preferred, now, kLease); });
}
bool renew(storage::Database& db, const std::string& me, int64_t epoch, int64_t now) {
  return db.write([&](storage::Connection& c) { return asdb::renew_lease(c, "as1", me, epoch, now, kLease); });
}
// A sender's write: fenced, then a transaction stored. False when the fence refused it.
bool fenced_store(storage::Database& db, const std::string& me, int64_t epoch, int64_t txn_id) {
  try {
    db.write([&](storage::Connection& c) {
      asdb::check_lease(c, "as1", me, epoch);
      asdb::enqueue(c, "as1", asdb::QueuedTxn{txn_id, "{}", 0, kT0});
    });
    return true;
  } catch (const asdb::LeaseLost&) {
    return false;
  }
}
int64_t queued(storage::Database& db) {
  return db.read([](storage::Connection& c) { return asdb::queued_count(c, "as1"); });
}

void preferred_takes_at_once_others_wait_for_expiry(Pair p) {
  auto& main = *p.a;
  auto& worker = *p.b;
  // The preferred instance takes a lease no one holds at once; the other one cannot.
  auto e = acquire(worker, "sender1", true, kT0);
  ASSERT_TRUE(e);
  EXPECT_EQ(*e, 1);
  EXPECT_FALSE(acquire(main, "main", false, kT0 + 1));
  EXPECT_TRUE(renew(worker, "sender1", *e, kT0 + 3000));
  EXPECT_FALSE(renew(main, "main", *e, kT0 + 3000)) << "only the holder renews";
  // Renewed until kT0 + 13000: not expired at kT0 + 12999.
  EXPECT_FALSE(acquire(main, "main", false, kT0 + 12999));
  EXPECT_TRUE(fenced_store(worker, "sender1", *e, 1));
  // Expired: taken over with a new epoch; the old holder can neither renew nor store.
  auto e2 = acquire(main, "main", false, kT0 + 13000);
  ASSERT_TRUE(e2);
  EXPECT_EQ(*e2, *e + 1);
  EXPECT_FALSE(renew(worker, "sender1", *e, kT0 + 13001));
  EXPECT_FALSE(fenced_store(worker, "sender1", *e, 2));
  EXPECT_EQ(queued(main), 1) << "the fenced write stored nothing";
  EXPECT_TRUE(fenced_store(main, "main", *e2, 2));
  EXPECT_EQ(queued(main), 2);
  auto l = main.read([](storage::Connection& c) { return asdb::get_lease(c, "as1"); });
  ASSERT_TRUE(l);
  EXPECT_EQ(l->owner, "main");
  EXPECT_EQ(l->epoch, 2);
  EXPECT_EQ(l->expires_ts, kT0 + 13000 + kLease);
}

void unclaimed_lease_waits_one_lease_time_for_the_preferred(Pair p) {
  auto& main = *p.a;
  auto& worker = *p.b;
  // Main starts first and is not the preferred sender: the lease is claimed for no one.
  EXPECT_FALSE(acquire(main, "main", false, kT0));
  auto l = main.read([](storage::Connection& c) { return asdb::get_lease(c, "as1"); });
  ASSERT_TRUE(l);
  EXPECT_FALSE(l->owner);
  EXPECT_EQ(l->expires_ts, kT0 + kLease);
  EXPECT_FALSE(acquire(main, "main", false, kT0 + kLease - 1));
  // The preferred one, starting meanwhile, takes it.
  auto e = acquire(worker, "sender1", true, kT0 + 5);
  ASSERT_TRUE(e);
  EXPECT_EQ(*e, 1);
  // Or, when it never comes, anyone after that lease time (fresh row: the first holding is 1).
  main.write([](storage::Connection& c) { c.exec("DELETE FROM appservice_leases"); });
  EXPECT_FALSE(acquire(main, "main", false, kT0));
  auto e2 = acquire(main, "main", false, kT0 + kLease);
  ASSERT_TRUE(e2);
  EXPECT_EQ(*e2, 1);
}

void released_restarted_and_preempted(Pair p) {
  auto& main = *p.a;
  auto& worker = *p.b;
  auto e = acquire(main, "main", true, kT0);
  ASSERT_TRUE(e);
  // A clean stop releases it: the other process takes it at once, before any expiry.
  main.write([&](storage::Connection& c) { asdb::release_lease(c, "as1", "main", *e); });
  auto e2 = acquire(worker, "reader1", false, kT0 + 1);
  ASSERT_TRUE(e2);
  EXPECT_EQ(*e2, *e + 1);
  // A release with a stale epoch does nothing.
  main.write([&](storage::Connection& c) { asdb::release_lease(c, "as1", "reader1", *e); });
  EXPECT_TRUE(renew(worker, "reader1", *e2, kT0 + 2));
  // The preferred instance (back again) takes it from a live holder; the holder's fence fails.
  auto e3 = acquire(main, "main", true, kT0 + 3);
  ASSERT_TRUE(e3);
  EXPECT_EQ(*e3, *e2 + 1);
  EXPECT_FALSE(fenced_store(worker, "reader1", *e2, 1));
  EXPECT_FALSE(renew(worker, "reader1", *e2, kT0 + 4));
  // A restarted process of the same name takes its own lease back at once, with a new epoch: the
  // old process (were it still alive) is fenced off.
  auto e4 = acquire(worker, "main", false, kT0 + 5);
  ASSERT_TRUE(e4);
  EXPECT_EQ(*e4, *e3 + 1);
  EXPECT_FALSE(fenced_store(main, "main", *e3, 1));
  EXPECT_TRUE(fenced_store(worker, "main", *e4, 1));
  EXPECT_EQ(queued(main), 1);
}

}  // namespace

TEST(AppserviceLease, PreferredTakesAtOnceOthersWaitForExpiry) { preferred_takes_at_once_others_wait_for_expiry(sqlite_pair()); }
TEST(AppserviceLease, UnclaimedLeaseWaitsOneLeaseTimeForThePreferred) {
  unclaimed_lease_waits_one_lease_time_for_the_preferred(sqlite_pair());
}
TEST(AppserviceLease, ReleasedRestartedAndPreempted) { released_restarted_and_preempted(sqlite_pair()); }

#define NEED_POSTGRES_PAIR(p)                                                   \
  auto p = pg_pair();                                                           \
  if (!p) GTEST_SKIP() << "TRESTLE_TEST_PG (a libpq conninfo) is not set"

TEST(PostgresAppserviceLease, PreferredTakesAtOnceOthersWaitForExpiry) {
  NEED_POSTGRES_PAIR(p);
  preferred_takes_at_once_others_wait_for_expiry(std::move(*p));
}
TEST(PostgresAppserviceLease, UnclaimedLeaseWaitsOneLeaseTimeForThePreferred) {
  NEED_POSTGRES_PAIR(p);
  unclaimed_lease_waits_one_lease_time_for_the_preferred(std::move(*p));
}
TEST(PostgresAppserviceLease, ReleasedRestartedAndPreempted) {
  NEED_POSTGRES_PAIR(p);
  released_restarted_and_preempted(std::move(*p));
}

// The fence is not a read then a write: the holder's write that passed it keeps the row locked
// until it commits, so a takeover that comes meanwhile waits and then sees the stored transaction
// (its reader reads the queue after its own commit), and the old holder's next write is refused.
TEST(PostgresAppserviceLease, TakeoverWaitsForAFencedWriteInFlight) {
  NEED_POSTGRES_PAIR(p);
  auto& main = *p->a;
  auto& worker = *p->b;
  auto e = acquire(worker, "sender1", true, kT0);
  ASSERT_TRUE(e);
  std::atomic<bool> taken{false};
  std::optional<int64_t> e2;
  std::thread takeover;
  worker.write([&](storage::Connection& c) {
    asdb::check_lease(c, "as1", "sender1", *e);
    takeover = std::thread([&] {
      e2 = acquire(main, "main", false, kT0 + kLease + 1);  // expired by then
      taken = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_FALSE(taken.load()) << "the takeover did not wait for the fenced write";
    asdb::enqueue(c, "as1", asdb::QueuedTxn{1, "{}", 0, kT0});
  });
  takeover.join();
  ASSERT_TRUE(e2);
  EXPECT_EQ(*e2, *e + 1);
  EXPECT_EQ(queued(main), 1);
  EXPECT_FALSE(fenced_store(worker, "sender1", *e, 2));
  EXPECT_EQ(queued(main), 1);
}
