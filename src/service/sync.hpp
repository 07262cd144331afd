#pragma once
// /sync: what changed for a user since a token, in one response, or a long-poll that the notifier
// wakes when something does.
#include "service/notifier.hpp"
#include "service/requester.hpp"
#include "service/sync_result.hpp"
#include "service/unread_counts.hpp"
#include "storage/database.hpp"

#include <boost/json/object.hpp>
#include <mutex>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>

namespace trestle::service {

class UserDataService;
class ToDeviceService;
class KeyService;
class PresenceTracker;

struct SyncRequest {
  std::optional<std::string> since;
  int64_t timeout_ms = 0;
  bool full_state = false;
  // v1.16 (MSC4222): answer the state up to the END of the timeline in `state_after`, not `state`.
  bool use_state_after = false;
  boost::json::object filter;
};

// A sync token: the global stream position, the typing serial, how far this device's
// to-device messages were handed out and the presence serial
// ("s<pos>_<typing>_<to_device>_<presence>"; older tokens without the to_device part mean
// to_device = pos, without the presence part mean "presence already current").
struct SyncToken {
  int64_t position = 0;
  uint64_t typing = 0;
  int64_t to_device = 0;
  std::optional<uint64_t> presence;
  std::string str() const {
    return "s" + std::to_string(position) + "_" + std::to_string(typing) + "_" + std::to_string(to_device) +
           (presence ? "_" + std::to_string(*presence) : "");
  }
  static SyncToken parse(const std::string& s);  // 400 M_INVALID_PARAM when malformed
};

// Lazy loading without include_redundant_members: the member events each device was sent
// (Synapse's lazy-loaded members cache), so an incremental sync does not send them again. In
// memory and bounded: a forgotten entry only means a member event is sent once more.
class SentMembers {
public:
  void reset(const std::string& device);  // an initial sync starts a new sequence
  bool was_sent(const std::string& device, const std::string& key, const std::string& event_id) const;
  // key: "room_id|user_id"
  void record(const std::string& device, const std::unordered_map<std::string, std::string>& sent);

private:
  static constexpr size_t kMaxDevices = 10000;
  static constexpr size_t kMaxPerDevice = 20000;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::unordered_map<std::string, std::string>> by_device_;
};

class SyncService {
public:
  SyncService(storage::Database& db, Notifier& notifier, UserDataService& user_data);

  // Answers at once when there is something to say (or no `since`/no timeout), else a SyncWait.
  SyncResult sync(const Requester& r, const SyncRequest& req);
  // `to_device` of the response (wired by Homeserver; none: always empty).
  void set_to_device(ToDeviceService* s) { to_device_ = s; }
  // E2EE: fills device_lists and the one-time/fallback key fields.
  void set_keys(KeyService* keys) { keys_ = keys; }
  // Whose unread counts the push evaluator's stored decisions hold (see UnreadCounter).
  void set_push_rows_apply(std::function<bool(const std::string&)> f) { unread_.set_rows_apply(std::move(f)); }
  // MSC2753 `rooms.peek` (LegacyService::sync_peeks; wired by Homeserver; none: never sent).
  using PeekSource = std::function<boost::json::object(const Requester&, std::optional<int64_t> since, int64_t now,
                                                       int64_t timeline_limit, std::vector<std::string>& wake_keys)>;
  void set_peeks(PeekSource f) { peeks_ = std::move(f); }
  // presence.events (none: always empty, as with use_presence: false).
  void set_presence(PresenceTracker* p) { presence_ = p; }

private:
  // Computes the response; sets `empty` when an incremental sync found nothing.
  boost::json::object compute(const Requester& r, const SyncRequest& req, const SyncToken& now,
                              std::vector<std::string>& wake_keys, bool& empty);

  storage::Database& db_;
  Notifier& notifier_;
  UserDataService& user_data_;
  UnreadCounter unread_;
  ToDeviceService* to_device_ = nullptr;
  KeyService* keys_ = nullptr;
  SentMembers sent_members_;
  PeekSource peeks_;
  PresenceTracker* presence_ = nullptr;
};

}  // namespace trestle::service
