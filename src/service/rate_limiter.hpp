#pragma once
// Token-bucket rate limits (Synapse's rc_* semantics: `burst_count` actions at once, refilled at
// `per_second`). Exceeding one raises 429 M_LIMIT_EXCEEDED with retry_after_ms.
#include "config/config.hpp"

#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace trestle::service {

class RateLimiter {
public:
  explicit RateLimiter(config::RateLimit limit) : limit_(limit) {}
  // Takes one action for `key`, or throws MatrixError 429.
  void take(const std::string& key);
  // A limit of its own for `key` (Synapse's admin override_ratelimit; per_second 0 exempts it),
  // or none to go back to the configured one.
  void set_override(const std::string& key, std::optional<config::RateLimit> limit);

private:
  struct Bucket {
    double tokens;
    int64_t updated_ms;
  };
  config::RateLimit limit_;
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
  std::unordered_map<std::string, config::RateLimit> overrides_;
};

}  // namespace trestle::service
