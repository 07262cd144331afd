#include "service/client_ips.hpp"

#include <algorithm>

namespace trestle::service {

void ClientIps::record(const std::string& user_id, const std::string& device_id, const std::string& ip,
                       const std::string& user_agent, int64_t now_ms) {
  if (forward_) {
    bool due = false;
    {
      std::lock_guard lock(mu_);
      std::string key = user_id + '\0' + device_id + '\0' + ip + '\0' + user_agent;
      auto& last = forwarded_[key];
      due = now_ms - last >= kForwardIntervalMs;
      if (due) last = now_ms;
      if (forwarded_.size() > 100000) forwarded_.clear();
    }
    if (due) forward_(user_id, Connection{device_id, ip, user_agent, now_ms});
  }
  std::lock_guard lock(mu_);
  auto& rows = by_user_[user_id];
  for (auto& row : rows) {
    if (row.device_id == device_id && row.ip == ip && row.user_agent == user_agent) {
      row.last_seen_ms = now_ms;
      return;
    }
  }
  if (rows.size() >= kMaxPerUser) {
    rows.erase(std::min_element(rows.begin(), rows.end(),
                                [](const auto& a, const auto& b) { return a.last_seen_ms < b.last_seen_ms; }));
  }
  rows.push_back(Connection{device_id, ip, user_agent, now_ms});
}

std::vector<ClientIps::Connection> ClientIps::connections(const std::string& user_id) {
  std::lock_guard lock(mu_);
  auto it = by_user_.find(user_id);
  return it == by_user_.end() ? std::vector<Connection>{} : it->second;
}

}  // namespace trestle::service
