#pragma once
// Password hashing under a memory bound. Every argon2id hash or verification holds its memory
// (19 MiB for today's parameters) while it runs on a worker thread; without a bound, a burst of
// logins or registrations takes that much per worker. Here hashes run only while their memory
// fits the budget (by default two at a time, 38 MiB), a few more wait their turn in order, and
// the rest are refused at once with 429 M_LIMIT_EXCEEDED. Waiters hold a worker thread, so the
// queue stays well below the worker pool (16) and other requests keep being served.
#include "core/crypto.hpp"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace trestle::service {

class PasswordHasher {
public:
  struct Limits {
    size_t memory_budget = 2 * core::kPasswordMemLimit;  // bytes of argon2 memory in use at once
    size_t max_waiting = 8;                              // beyond this, 429 at once
    int64_t max_wait_ms = 5000;                          // a waiter gives up (429) after this
    int64_t retry_after_ms = 500;                        // what a 429 tells the client
  };

  PasswordHasher() : PasswordHasher(Limits{}) {}
  explicit PasswordHasher(Limits limits) : limits_(limits) {}

  // An encoded hash with today's parameters. Throws 429 M_LIMIT_EXCEEDED when too busy.
  std::string hash(std::string_view password);
  // Checks `password` against `encoded_hash`. With no hash (a missing, deactivated or
  // passwordless user), verifies against a dummy hash instead and returns false, so the answer
  // costs the same time and memory as for a real account. Throws 429 when too busy.
  bool verify(std::string_view password, const std::optional<std::string>& encoded_hash);

  // `bytes` of the budget, held until destroyed: waits its turn, or throws 429.
  class Slot {
  public:
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { h_.release(bytes_); }

  private:
    friend class PasswordHasher;
    Slot(PasswordHasher& h, size_t bytes) : h_(h), bytes_(bytes) {}
    PasswordHasher& h_;
    size_t bytes_;
  };
  Slot acquire(size_t bytes);

  // For tests and metrics: bytes in use and requests waiting now.
  size_t memory_in_use();
  size_t waiting();

private:
  void release(size_t bytes);
  const std::string& dummy_hash();

  Limits limits_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t in_use_ = 0;
  std::deque<uint64_t> queue_;  // tickets of waiting requests, first come first served
  uint64_t next_ticket_ = 0;
  std::mutex dummy_mu_;
  std::string dummy_hash_;
};

}  // namespace trestle::service
