#include "service/uia_sessions.hpp"

#include "core/crypto.hpp"

#include <algorithm>

namespace trestle::service {

std::string UiaSessions::create(const std::string& user_id, const std::string& operation, int64_t now_ms) {
  std::string id = core::random_string(24);
  std::lock_guard lock(mu_);
  if (sessions_.size() >= kMaxSessions) make_room(now_ms);
  sessions_[id] = Session{user_id, operation, {}, now_ms, {}, {}};
  return id;
}

std::optional<UiaSessions::Session> UiaSessions::get(const std::string& id, int64_t now_ms) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  if (now_ms - it->second.created_ms > kLifetimeMs) {
    sessions_.erase(it);
    return std::nullopt;
  }
  return it->second;
}

void UiaSessions::complete_stage(const std::string& id, const std::string& stage) {
  std::lock_guard lock(mu_);
  if (auto it = sessions_.find(id); it != sessions_.end()) it->second.completed.insert(stage);
}

void UiaSessions::set_params(const std::string& id, boost::json::object params) {
  std::lock_guard lock(mu_);
  if (auto it = sessions_.find(id); it != sessions_.end()) it->second.params = std::move(params);
}

void UiaSessions::set_result(const std::string& id, const std::string& result) {
  std::lock_guard lock(mu_);
  if (auto it = sessions_.find(id); it != sessions_.end()) it->second.result = result;
}

void UiaSessions::remove(const std::string& id) {
  std::lock_guard lock(mu_);
  sessions_.erase(id);
}

size_t UiaSessions::size() {
  std::lock_guard lock(mu_);
  return sessions_.size();
}

void UiaSessions::make_room(int64_t now_ms) {
  std::erase_if(sessions_, [&](const auto& kv) { return now_ms - kv.second.created_ms > kLifetimeMs; });
  if (sessions_.size() < kMaxSessions) return;
  auto oldest = std::min_element(sessions_.begin(), sessions_.end(), [](const auto& a, const auto& b) {
    return a.second.created_ms < b.second.created_ms;
  });
  sessions_.erase(oldest);
}

}  // namespace trestle::service
