#pragma once
// Wakes waiting long-polls when something they watch changes. Keys are user IDs and room IDs:
// a committed event notifies its room (and the target of a membership change), account data and
// to-device messages notify their user. Waiters name their keys, so one event wakes only the
// /syncs that care, not all of them.
//
// Positions are an in-memory counter, not a stream position: a waiter takes position() *before*
// computing its (empty) answer, and wait() fires at once if any of its keys moved past it, so a
// change committed between the computation and the wait is never missed.
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace trestle::service {

class Notifier {
public:
  using Callback = std::function<void()>;

  uint64_t position() const;
  // Marks each key changed and runs the callbacks waiting on any of them (outside the lock).
  void notify(const std::vector<std::string>& keys);
  // Registers `cb` to run once when one of `keys` changes after `since`. If one already has,
  // `cb` runs before wait() returns. Returns an id for cancel(), or 0 when it already fired.
  uint64_t wait(const std::vector<std::string>& keys, uint64_t since, Callback cb);
  void cancel(uint64_t id);
  // Forgets every waiter without running it. The transport calls this when it stops, while the
  // executors and timers its callbacks hold are still alive.
  void drop_waiters();
  size_t waiter_count() const;
  // Called (outside the lock) on every notify: background consumers of the whole stream, such as
  // the appservice senders, use it to wake up.
  void add_global_listener(Callback cb);

  // Several processes (service/cluster): what this process notifies also goes to `publisher`,
  // which tells the other processes; what they notify arrives through notify_from_peer(), which
  // wakes this process's waiters without publishing again.
  using Publisher = std::function<void(const std::vector<std::string>& keys)>;
  void set_publisher(Publisher publisher);
  void notify_from_peer(const std::vector<std::string>& keys);
  // Wakes every waiter and global listener: after a gap in the peers' notifications, when what
  // changed meanwhile is not known.
  void wake_all();

private:
  struct Waiter {
    std::vector<std::string> keys;
    Callback cb;
  };
  void remove_locked(uint64_t id);
  void wake(const std::vector<std::string>& keys);

  mutable std::mutex mu_;
  uint64_t position_ = 0;
  uint64_t next_waiter_id_ = 1;
  std::unordered_map<std::string, uint64_t> key_position_;
  std::unordered_map<std::string, std::unordered_set<uint64_t>> waiters_by_key_;
  std::unordered_map<uint64_t, Waiter> waiters_;
  std::vector<Callback> global_listeners_;
  Publisher publisher_;
};

}  // namespace trestle::service
