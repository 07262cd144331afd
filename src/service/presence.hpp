#pragma once
// Presence (spec: client-server-api modules/presence.md). Kept in memory, as it is ephemeral.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace trestle::service {

struct PresenceState {
  std::string presence = "offline";  // online, offline, unavailable
  std::optional<std::string> status_msg;
  int64_t last_active_ts = 0;
  uint64_t serial = 0;  // the tracker's serial at this user's last change
};

class PresenceTracker {
public:
  // 400 M_INVALID_PARAM for an unknown presence value.
  void set(const std::string& user_id, const std::string& presence, const std::optional<std::string>& status_msg);
  // Sets the presence (from /sync's set_presence) and keeps the status message.
  void touch(const std::string& user_id, const std::string& presence);
  PresenceState get(const std::string& user_id) const;
  // The state of a user seen since start (set or synced), or nullopt for one never seen.
  std::optional<PresenceState> known(const std::string& user_id) const;
  // Serial of the last change (in memory: starts at 0 with the process, like typing).
  uint64_t serial() const;
  // Users whose presence changed after `serial`, with their state.
  std::vector<std::pair<std::string, PresenceState>> changed_since(uint64_t serial) const;
  // Adds a callback run (outside the lock) when a user's presence or status message changes;
  // repeated /syncs with the same set_presence are not changes.
  void set_listener(std::function<void(const std::string& user_id)> f) { listeners_.push_back(std::move(f)); }

  // Several processes: the main process owns presence (its serial is in every sync token). The
  // owner's `publish` gets each user's state after a change; a mirror's (a worker's) set() and
  // touch() go to `forward` (touch only when it would change something) and wait (at most
  // kForwardWaitMs) for the owner's state to come back through apply(), so that a worker's /sync
  // shows the user's own presence as one process's would.
  using Publish = std::function<void(const std::string& user_id, const PresenceState&)>;
  using Forward = std::function<void(const std::string& user_id, const std::string& presence,
                                     const std::optional<std::string>& status_msg, bool keep_status_msg)>;
  void set_owner(Publish publish) { publish_ = std::move(publish); }
  void set_mirror(Forward forward) { forward_ = std::move(forward); }
  void apply(const std::string& user_id, const PresenceState& state);
  static constexpr int64_t kForwardWaitMs = 2000;

private:
  void changed(const std::string& user_id);
  // A mirror: waits until the owner's state for the user satisfies `done` (or kForwardWaitMs).
  void await_owner(const std::string& user_id, const std::function<bool(const PresenceState&)>& done);
  Publish publish_;
  Forward forward_;
  std::vector<std::function<void(const std::string&)>> listeners_;
  uint64_t serial_ = 0;
  mutable std::mutex mu_;
  std::condition_variable applied_;  // a mirror: the owner's state arrived (apply())
  uint64_t applied_upto_ = 0;        // a mirror: apply() of states up to this serial finished
  std::unordered_map<std::string, PresenceState> states_;
};

}  // namespace trestle::service
