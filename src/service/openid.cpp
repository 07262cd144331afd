#include "service/openid.hpp"

#include "core/crypto.hpp"

#include <algorithm>

namespace trestle::service {

std::string OpenIdTokens::issue(const std::string& user_id, int64_t now_ms) {
  std::string token = core::random_string(32);
  std::lock_guard lock(mu_);
  if (tokens_.size() >= kMaxTokens) {
    std::erase_if(tokens_, [&](const auto& kv) { return kv.second.expires_ms <= now_ms; });
    if (tokens_.size() >= kMaxTokens) {
      auto oldest = std::min_element(tokens_.begin(), tokens_.end(), [](const auto& a, const auto& b) {
        return a.second.expires_ms < b.second.expires_ms;
      });
      tokens_.erase(oldest);
    }
  }
  tokens_[token] = Entry{user_id, now_ms + kLifetimeMs};
  return token;
}

std::optional<std::string> OpenIdTokens::user_for(const std::string& token, int64_t now_ms) {
  std::lock_guard lock(mu_);
  auto it = tokens_.find(token);
  if (it == tokens_.end()) return std::nullopt;
  if (it->second.expires_ms <= now_ms) {
    tokens_.erase(it);
    return std::nullopt;
  }
  return it->second.user_id;
}

}  // namespace trestle::service
