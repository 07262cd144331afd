#pragma once
// The other processes of this deployment, as this one sees them (several processes sharing one
// PostgreSQL: config/workers.cpp). Messages go through the database's own LISTEN/NOTIFY
// (storage::Channel): no other moving part.
//
// - Wake-ups: what this process's notifier announces goes out with the stream position committed
//   by then; a peer's announcement first advances this process's position (Database::
//   advance_position), then wakes its long-polls. A gap (the channel reconnected) re-reads the
//   position and wakes everything.
// - Other kinds ("tokens", "typing", "presence", ...): services publish() and handle them with on();
//   on_gap() handlers run after a gap, for state that a lost message would leave stale.
//
// Messages are JSON objects {"i": sender instance, "k": kind, ...}; a process ignores its own.
// With one process (no instance_map) nothing here runs and nothing costs.
#include "config/config.hpp"
#include "service/notifier.hpp"
#include "storage/channel.hpp"
#include "storage/database.hpp"

#include <boost/json/object.hpp>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace trestle::service {

class Cluster {
public:
  static constexpr const char* kChannel = "trestle_cluster";

  Cluster(const config::Config& cfg, storage::Database& db, Notifier& notifier);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  bool enabled() const { return enabled_; }
  const std::string& instance() const { return instance_; }

  // Handlers are registered before start(). A handler of "wake" runs after a peer's wake-up
  // advanced the position and woke this process's waiters.
  using Handler = std::function<void(const boost::json::object& message)>;
  void on(const std::string& kind, Handler handler);
  void on_gap(std::function<void()> handler);
  // Runs every 100 ms on the publishing thread (periodic work that must tell the peers).
  void on_tick(std::function<void()> handler);

  // Listens, and publishes this process's notifications. Returns once listening (or after a
  // bounded wait when the database is unreachable: the channel keeps reconnecting).
  void start();
  void stop();

  // Sends `body` (kind and sender added) to the other processes, after what was published
  // before it. Non-blocking.
  void publish(const std::string& kind, boost::json::object body);

  // Everything the stream writer committed before this call is visible to this process's
  // reads and positions afterwards (a worker re-reads the position; the writer knows it).
  void catch_up();

  // Cross-process messages sent and received, for metrics and tests.
  struct Counters {
    uint64_t sent = 0, received = 0, gaps = 0, send_failures = 0;
  };
  Counters counters() const;

private:
  struct Outgoing {
    std::vector<std::string> keys;  // a wake-up, or
    std::string message;            // a serialised message
  };
  void run_publisher();
  std::vector<std::string> payloads(std::vector<Outgoing>& batch) const;
  void receive(const std::string& payload);
  void gap();

  const bool enabled_;
  const std::string instance_;
  storage::Database& db_;
  Notifier& notifier_;
  std::map<std::string, Handler> handlers_;
  std::vector<std::function<void()>> gap_handlers_;
  std::vector<std::function<void()>> tick_handlers_;
  std::unique_ptr<storage::Channel> channel_;

  mutable std::mutex mu_;
  std::condition_variable cv_, connected_cv_;
  std::vector<Outgoing> queue_;
  bool stopping_ = false;
  bool connected_ = false;
  Counters counters_;
  std::thread publisher_;
};

}  // namespace trestle::service
