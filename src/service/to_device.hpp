#pragma once
// To-device messages (spec: to_device.yaml, and `to_device` in sync.yaml): PUT /sendToDevice
// queues a message in each target device's inbox; that device's /sync hands them out, oldest
// first and at most kPageSize at a time, until a later /sync acknowledges them (Synapse's rule:
// a sync whose `since` covers a message's position deletes it).
//
// Each message sits at a position of the global stream. The sync token carries, apart from the
// global position, how far this device's to-device messages were handed out, so a page that stops
// early can still move every other part of the sync forward.
#include "config/config.hpp"
#include "service/notifier.hpp"
#include "service/rate_limiter.hpp"
#include "service/requester.hpp"
#include "storage/database.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <optional>
#include <string>

namespace trestle::service {

class ToDeviceService {
public:
  static constexpr int64_t kPageSize = 100;  // Synapse's per-sync limit

  ToDeviceService(const config::Config& cfg, storage::Database& db, Notifier& notifier);

  // PUT /sendToDevice/{type}/{txnId}. Idempotent per requester (device, or token without one) and
  // txnId, for a day. Unknown local users and devices are skipped; remote users are skipped with a log line.
  // 429 M_LIMIT_EXCEEDED when the sender is too fast or a target device's queue is full.
  void send(const Requester& r, const std::string& type, const std::string& txn_id,
            const boost::json::object& body);

  struct Page {
    boost::json::array events;  // {"sender", "type", "content"}
    int64_t position = 0;       // to-device part of next_batch: everything up to here was handed out
  };
  // For /sync of the requester's device: deletes what `acked` acknowledges (when given), returns
  // the next page of messages after it up to `upto` (the sync's global position). No device:
  // nothing to hand out.
  Page sync_page(const Requester& r, std::optional<int64_t> acked, int64_t upto);

  // The notifier key a device's long-poll waits on.
  static std::string wake_key(const std::string& user_id, const std::string& device_id);

private:
  const config::Config& cfg_;
  storage::Database& db_;
  Notifier& notifier_;
  RateLimiter limiter_;
};

}  // namespace trestle::service
