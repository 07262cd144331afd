#pragma once
// OpenID tokens (spec: client-server "OpenID", server-server "openid/userinfo"): a user asks for a
// short-lived token that a third party exchanges, at /_matrix/federation/v1/openid/userinfo, for
// the user's ID. Kept in memory: they live an hour, and a restart only makes clients ask again.
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace trestle::service {

class OpenIdTokens {
public:
  static constexpr int64_t kLifetimeMs = 60 * 60 * 1000;
  static constexpr size_t kMaxTokens = 100000;  // expired ones go first, then the oldest

  // A new token for the user.
  std::string issue(const std::string& user_id, int64_t now_ms);
  // The user the token was issued to, unless unknown or expired.
  std::optional<std::string> user_for(const std::string& token, int64_t now_ms);

private:
  struct Entry {
    std::string user_id;
    int64_t expires_ms;
  };
  std::mutex mu_;
  std::unordered_map<std::string, Entry> tokens_;
};

}  // namespace trestle::service
