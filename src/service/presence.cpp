#include "service/presence.hpp"

#include "core/clock.hpp"

#include <algorithm>
#include <chrono>
#include "core/error.hpp"

namespace trestle::service {

namespace {
void check_presence(const std::string& presence) {
  if (presence != "online" && presence != "offline" && presence != "unavailable") {
    throw MatrixError::invalid_param("presence must be online, offline or unavailable");
  }
}
}  // namespace

void PresenceTracker::set(const std::string& user_id, const std::string& presence,
                          const std::optional<std::string>& status_msg) {
  check_presence(presence);
  if (forward_) {
    forward_(user_id, presence, status_msg, false);
    await_owner(user_id, [&](const PresenceState& s) { return s.presence == presence && s.status_msg == status_msg; });
    return;
  }
  bool changed = false;
  {
    std::lock_guard lock(mu_);
    auto& s = states_[user_id];
    changed = s.presence != presence || s.status_msg != status_msg;
    s.presence = presence;
    s.status_msg = status_msg;
    s.last_active_ts = core::now_ms();
    if (changed) s.serial = ++serial_;
  }
  if (changed) this->changed(user_id);
}

void PresenceTracker::touch(const std::string& user_id, const std::string& presence) {
  check_presence(presence);
  if (forward_) {
    // Every /sync touches: only a change is worth a message to the main process.
    if (get(user_id).presence == presence) return;
    forward_(user_id, presence, std::nullopt, true);
    await_owner(user_id, [&](const PresenceState& s) { return s.presence == presence; });
    return;
  }
  bool changed = false;
  {
    std::lock_guard lock(mu_);
    auto& s = states_[user_id];
    changed = s.presence != presence;
    s.presence = presence;
    s.last_active_ts = core::now_ms();
    if (changed) s.serial = ++serial_;
  }
  if (changed) this->changed(user_id);
}

void PresenceTracker::changed(const std::string& user_id) {
  if (publish_) publish_(user_id, get(user_id));  // before the listeners' wake-ups
  for (const auto& f : listeners_) f(user_id);
}

void PresenceTracker::await_owner(const std::string& user_id, const std::function<bool(const PresenceState&)>& done) {
  std::unique_lock lock(mu_);
  applied_.wait_for(lock, std::chrono::milliseconds(kForwardWaitMs), [&] {
    auto it = states_.find(user_id);
    return it != states_.end() && done(it->second) && applied_upto_ >= it->second.serial;
  });
}

void PresenceTracker::apply(const std::string& user_id, const PresenceState& state) {
  {
    std::lock_guard lock(mu_);
    states_[user_id] = state;
    serial_ = std::max(serial_, state.serial);
  }
  for (const auto& f : listeners_) f(user_id);
  {
    // A waiting forwarder goes on only once the listeners (wake-ups, /events' serial) ran too.
    std::lock_guard lock(mu_);
    applied_upto_ = std::max(applied_upto_, state.serial);
  }
  applied_.notify_all();
}

std::optional<PresenceState> PresenceTracker::known(const std::string& user_id) const {
  std::lock_guard lock(mu_);
  auto it = states_.find(user_id);
  if (it == states_.end()) return std::nullopt;
  return it->second;
}

uint64_t PresenceTracker::serial() const {
  std::lock_guard lock(mu_);
  return serial_;
}

std::vector<std::pair<std::string, PresenceState>> PresenceTracker::changed_since(uint64_t serial) const {
  std::vector<std::pair<std::string, PresenceState>> out;
  std::lock_guard lock(mu_);
  if (serial >= serial_) return out;
  for (const auto& [user, s] : states_) {
    if (s.serial > serial) out.emplace_back(user, s);
  }
  return out;
}

PresenceState PresenceTracker::get(const std::string& user_id) const {
  std::lock_guard lock(mu_);
  auto it = states_.find(user_id);
  return it == states_.end() ? PresenceState{} : it->second;
}

}  // namespace trestle::service
