// Several processes on one PostgreSQL (service/cluster): two Database + Notifier + Cluster sets in
// one test process stand for the main process and a worker. A notification on the main process
// wakes the worker's waiter with the position advanced; a worker allocates no stream position;
// typing owned by main is mirrored with main's serial.
#include "pg_test_database.hpp"
#include "service/cluster.hpp"
#include "service/notifier.hpp"
#include "service/user_data.hpp"
#include "core/error.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <tuple>

using namespace trestle;

namespace {

config::Config instance(const std::string& name) {
  config::Config c;
  c.instance_map = {{"main", "127.0.0.1", 8008}, {"reader1", "127.0.0.1", 8101}};
  c.instance_name = name;
  if (name != "main") c.worker_app = "synapse.app.generic_worker";
  return c;
}

struct Waited {
  std::mutex mu;
  std::condition_variable cv;
  bool fired = false;
  bool wait() {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(5), [&] { return fired; });
  }
  void fire() {
    std::lock_guard lock(mu);
    fired = true;
    cv.notify_all();
  }
};

// The main process and a worker, in one test process.
struct Deployment {
  explicit Deployment(const storage::DatabaseOptions& o)
      : main_cfg(instance("main")), worker_cfg(instance("reader1")), main_db(o), worker_db(worker(o)),
        main_c(main_cfg, main_db, main_n), worker_c(worker_cfg, worker_db, worker_n) {}
  static storage::DatabaseOptions worker(storage::DatabaseOptions o) {
    o.stream_writer = false;
    return o;
  }
  auto parts() { return std::tie(main_db, worker_db, main_n, worker_n, main_c, worker_c); }
  config::Config main_cfg, worker_cfg;
  storage::Database main_db, worker_db;
  service::Notifier main_n, worker_n;
  service::Cluster main_c, worker_c;
};

}  // namespace

TEST(Cluster, AWakeUpOnMainReachesTheWorkerWithThePosition) {
  NEED_POSTGRES(opts);
  Deployment d(*opts);
  auto [main_db, worker_db, main_n, worker_n, main_c, worker_c] = d.parts();  // references
  ASSERT_TRUE(main_c.enabled());
  main_c.start();
  worker_c.start();

  Waited woke;
  worker_n.wait({"!room:example.org"}, worker_n.position(), [&] { woke.fire(); });
  int64_t position = main_db.write([&](storage::Connection&) { return main_db.next_stream_position(); });
  main_n.notify({"!room:example.org"});
  ASSERT_TRUE(woke.wait()) << "the worker's waiter was not woken";
  EXPECT_GE(worker_db.committed_position(), position);

  // A worker allocates no stream position: the write fails whole.
  EXPECT_THROW(worker_db.write([&](storage::Connection&) { return worker_db.next_stream_position(); }), MatrixError);
  // Without a wake-up, catch_up() reads the position the main process committed.
  int64_t later = main_db.write([&](storage::Connection&) { return main_db.next_stream_position(); });
  worker_c.catch_up();
  EXPECT_EQ(worker_db.committed_position(), later);
  worker_c.stop();
  main_c.stop();
  EXPECT_GE(main_c.counters().sent, 1u);
}

TEST(Cluster, TypingOwnedByMainIsMirroredWithItsSerial) {
  NEED_POSTGRES(opts);
  Deployment d(*opts);
  auto [main_db, worker_db, main_n, worker_n, main_c, worker_c] = d.parts();  // references
  service::TypingTracker main_t(main_n), worker_t(worker_n);
  main_t.set_owner([&](const service::TypingTracker::RoomState& r) {
    main_c.publish("typing", {{"r", r.room_id}, {"s", r.serial}, {"rs", r.room_serial}, {"n", r.users.size()}});
  });
  Waited got;
  worker_c.on("typing", [&](const boost::json::object& m) {
    service::TypingTracker::RoomState r;
    r.room_id = std::string(m.at("r").as_string());
    r.serial = m.at("s").to_number<uint64_t>();
    r.room_serial = m.at("rs").to_number<uint64_t>();
    if (m.at("n").to_number<int>() == 1) r.users.emplace_back("@a:example.org", 30000);
    worker_t.apply(r);
    got.fire();
  });
  main_c.start();
  worker_c.start();
  main_t.set("!r:example.org", "@a:example.org", true, 30000);
  ASSERT_TRUE(got.wait());
  uint64_t room_serial = 0;
  EXPECT_EQ(worker_t.typing_users("!r:example.org", &room_serial), std::vector<std::string>{"@a:example.org"});
  EXPECT_EQ(worker_t.serial(), main_t.serial());
  EXPECT_EQ(room_serial, main_t.serial());
  worker_c.stop();
  main_c.stop();
}
