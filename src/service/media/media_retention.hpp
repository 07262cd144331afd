#pragma once
// Synapse's media_retention: a background job that deletes local media nobody used within
// local_media_lifetime (profile, per-room and room avatars kept; quarantined and protected media
// kept), once at start and then every check_interval (1 h, as Synapse). remote_media_lifetime
// has nothing to act on until there is a remote media cache (federation).
#include "config/config.hpp"
#include "service/media/media_admin.hpp"

#include <condition_variable>
#include <mutex>
#include <thread>

namespace trestle::service::media {

class MediaRetention {
public:
  MediaRetention(const config::Config& cfg, MediaAdmin& admin) : cfg_(cfg), admin_(admin) {}
  ~MediaRetention() { stop(); }

  // Starts the job's thread when local_media_lifetime is set.
  void start();
  // Wakes and joins the thread; a run in progress finishes its current media first.
  void stop();
  // One pass; returns how many media were deleted.
  size_t run_once();

private:
  void run();

  const config::Config& cfg_;
  MediaAdmin& admin_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace trestle::service::media
