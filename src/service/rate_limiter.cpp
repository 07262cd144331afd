#include "service/rate_limiter.hpp"

#include "core/clock.hpp"
#include "core/error.hpp"

#include <algorithm>
#include <cmath>

namespace trestle::service {

void RateLimiter::set_override(const std::string& key, std::optional<config::RateLimit> limit) {
  std::lock_guard lock(mu_);
  if (limit) overrides_[key] = *limit;
  else overrides_.erase(key);
  buckets_.erase(key);  // the new limit starts with a full bucket
}

void RateLimiter::take(const std::string& key) {
  int64_t now = core::steady_ms();
  std::lock_guard lock(mu_);
  config::RateLimit limit = limit_;
  if (!overrides_.empty()) {
    if (auto o = overrides_.find(key); o != overrides_.end()) limit = o->second;
  }
  if (limit.per_second <= 0) return;  // disabled (or the key is exempt)
  if (buckets_.size() > 100000) buckets_.clear();  // bound memory under address churn
  auto [it, inserted] = buckets_.try_emplace(key, Bucket{std::max(1.0, limit.burst_count), now});
  Bucket& b = it->second;
  double capacity = std::max(1.0, limit.burst_count);
  b.tokens = std::min(capacity, b.tokens + (now - b.updated_ms) / 1000.0 * limit.per_second);
  b.updated_ms = now;
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return;
  }
  auto retry = static_cast<int64_t>(std::ceil((1.0 - b.tokens) / limit.per_second * 1000.0));
  throw MatrixError(429, "M_LIMIT_EXCEEDED", "Too many requests", {{"retry_after_ms", retry}});
}

}  // namespace trestle::service
