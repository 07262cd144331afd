#pragma once
#include <chrono>
#include <cstdint>

namespace trestle::core {

// Milliseconds since the Unix epoch: origin_server_ts and every *_ts column.
inline int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Milliseconds of the monotonic clock: deadlines and rate limits, immune to clock changes.
inline int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace trestle::core
