#include "service/to_device.hpp"

#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/identifiers.hpp"
#include "core/json_depth.hpp"
#include "service/appservice/registration.hpp"
#include "storage/account_store.hpp"
#include "storage/device_inbox_store.hpp"

#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <map>
#include <set>

namespace trestle::service {

namespace inbox = storage::device_inbox;
using boost::json::object;

namespace {
// How long a txnId is remembered: far longer than any client retries (Synapse: 30 minutes).
constexpr int64_t kTxnMemoryMs = 24 * 3600 * 1000;
}  // namespace

ToDeviceService::ToDeviceService(const config::Config& cfg, storage::Database& db, Notifier& notifier)
    : cfg_(cfg), db_(db), notifier_(notifier), limiter_(cfg.rc_to_device) {}

std::string ToDeviceService::wake_key(const std::string& user_id, const std::string& device_id) {
  return "to_device " + user_id + " " + device_id;  // a space: never a user or room ID
}

void ToDeviceService::send(const Requester& r, const std::string& type, const std::string& txn_id,
                           const object& body) {
  if (type.empty() || type.size() > 255) throw MatrixError::invalid_param("Event type must be 1 to 255 bytes");
  if (txn_id.empty() || txn_id.size() > 255) throw MatrixError::invalid_param("txnId must be 1 to 255 bytes");
  const auto* messages_v = body.if_contains("messages");
  if (!messages_v) throw MatrixError::missing_param("Missing 'messages'");
  if (!messages_v->is_object()) throw MatrixError::bad_json("'messages' must be an object");
  const object& messages = messages_v->as_object();

  // Validate everything before anything is queued.
  struct Target {
    std::string user_id;
    std::string device_id;  // "*": every device of the user
    std::string content;
  };
  std::vector<Target> targets;
  for (const auto& [user_key, by_device] : messages) {
    std::string user_id(user_key);
    auto uid = core::parse_user_id(user_id);
    if (!uid) throw MatrixError::invalid_param("Invalid user ID in 'messages': " + user_id);
    if (!by_device.is_object()) throw MatrixError::bad_json("messages." + user_id + " must be an object");
    for (const auto& [device_key, content] : by_device.as_object()) {
      if (!content.is_object()) {
        throw MatrixError::bad_json("messages." + user_id + "." + std::string(device_key) + " must be an object");
      }
      if (uid->server_name != cfg_.server_name) {
        // No federation yet: dropped, as a message to an unknown device would be.
        spdlog::info("to-device {} for remote user {} dropped (no federation)", type, user_id);
        continue;
      }
      targets.push_back({user_id, std::string(device_key), boost::json::serialize(content)});
    }
  }

  // The appservice sender is exempt; its masqueraded users only when it asks to be rate limited.
  if (!r.appservice || (r.appservice->rate_limited && r.user_id != r.appservice->sender)) {
    limiter_.take(r.user_id + " " + r.device_id.value_or(""));
  }

  const std::string sender_key =
      r.user_id + " " + (r.device_id ? "device:" + *r.device_id : "token:" + r.access_token_hash);
  std::vector<std::string> woken;
  db_.write([&](storage::Connection& c) {
    const int64_t now = core::now_ms();
    inbox::prune_txns(c, now - kTxnMemoryMs);
    if (!inbox::record_txn(c, sender_key, txn_id, now)) return;  // a retry: done already
    if (targets.empty()) return;
    const int64_t pos = db_.next_stream_position();
    std::map<std::string, std::set<std::string>> devices_of;
    std::set<std::pair<std::string, std::string>> done;
    for (const auto& t : targets) {
      auto [it, fresh] = devices_of.try_emplace(t.user_id);
      if (fresh) {
        for (const auto& d : storage::accounts::list_devices(c, t.user_id)) it->second.insert(d.device_id);
      }
      std::vector<std::string> to;
      if (t.device_id == "*") to.assign(it->second.begin(), it->second.end());
      else if (it->second.count(t.device_id)) to.push_back(t.device_id);
      for (const auto& dev : to) {
        // One message per device and request: the first entry that names the device (or "*").
        if (!done.insert({t.user_id, dev}).second) continue;
        if (static_cast<uint64_t>(inbox::count(c, t.user_id, dev)) >= cfg_.max_to_device_queue) {
          throw MatrixError(429, "M_LIMIT_EXCEEDED",
                            "Device " + dev + " of " + t.user_id + " already has " +
                                std::to_string(cfg_.max_to_device_queue) +
                                " undelivered to-device messages; nothing was sent. Retry once it has synced.",
                            {{"retry_after_ms", 5000}});
        }
        inbox::insert(c, t.user_id, dev, pos, r.user_id, type, t.content);
        woken.push_back(wake_key(t.user_id, dev));
      }
    }
  });
  if (!woken.empty()) notifier_.notify(woken);
}

ToDeviceService::Page ToDeviceService::sync_page(const Requester& r, std::optional<int64_t> acked, int64_t upto) {
  Page page;
  page.position = upto;
  if (!r.device_id) return page;
  // An appservice with ephemeral data gets its users' messages in its transactions (MSC4203).
  if (r.appservice && r.appservice->takes_to_device_for(r.user_id)) return page;
  const std::string& user = r.user_id;
  const std::string& device = *r.device_id;
  const int64_t after = acked.value_or(0);
  bool delete_acked = false;
  auto msgs = db_.read([&](storage::Connection& c) {
    if (acked) delete_acked = inbox::has_acknowledged(c, user, device, *acked);
    return inbox::pending(c, user, device, after, upto, kPageSize + 1);
  });
  if (delete_acked) db_.write([&](storage::Connection& c) { inbox::delete_upto(c, user, device, *acked); });
  if (static_cast<int64_t>(msgs.size()) > kPageSize) {
    msgs.resize(kPageSize);
    page.position = msgs.back().stream_id;  // the rest next time, from here
  }
  for (const auto& m : msgs) {
    page.events.push_back(object{{"sender", m.sender}, {"type", m.type}, {"content", core::parse_stored_json(m.content)}});
  }
  return page;
}

}  // namespace trestle::service
