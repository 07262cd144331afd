#pragma once
// Presence (spec: client-server-api modules/presence.md). Kept in memory, as it is ephemeral.
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace trestle::service {

struct PresenceState {
  std::string presence = "offline";  // online, offline, unavailable
  std::optional<std::string> status_msg;
  int64_t last_active_ts = 0;
};

class PresenceTracker {
public:
  // 400 M_INVALID_PARAM for an unknown presence value.
  void set(const std::string& user_id, const std::string& presence, const std::optional<std::string>& status_msg);
  // Sets the presence (from /sync's set_presence) and keeps the status message.
  void touch(const std::string& user_id, const std::string& presence);
  PresenceState get(const std::string& user_id) const;
  // Called (outside the lock) when a user's presence or status message changes; repeated /syncs
  // with the same set_presence are not changes.
  void set_listener(std::function<void(const std::string& user_id)> f) { listener_ = std::move(f); }

private:
  std::function<void(const std::string&)> listener_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, PresenceState> states_;
};

}  // namespace trestle::service
