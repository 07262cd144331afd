#include "service/media/media_retention.hpp"

#include "core/clock.hpp"

#include <spdlog/spdlog.h>

namespace trestle::service::media {

void MediaRetention::start() {
  if (!cfg_.media_retention.local_media_lifetime_ms || thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void MediaRetention::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

size_t MediaRetention::run_once() {
  const auto& r = cfg_.media_retention;
  if (!r.local_media_lifetime_ms) return 0;
  int64_t before = core::now_ms() - *r.local_media_lifetime_ms;
  auto deleted = admin_.delete_old(before, 0, /*keep_profiles=*/true);
  if (!deleted.empty()) spdlog::info("media_retention: deleted {} local media last used before {}", deleted.size(), before);
  return deleted.size();
}

void MediaRetention::run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    try {
      run_once();
    } catch (const std::exception& e) {
      spdlog::error("media_retention: {}", e.what());
    }
    lock.lock();
    cv_.wait_for(lock, std::chrono::milliseconds(cfg_.media_retention.check_interval_ms), [this] { return stopping_; });
  }
}

}  // namespace trestle::service::media
