#pragma once
// Synapse's shared-secret registration (docs/admin_api/register_api.md): GET hands out a nonce,
// POST creates a user when its mac (HMAC-SHA1 keyed by registration_shared_secret) is right.
// `trestle register-user` and Synapse's register_new_matrix_user speak it.
#include "service/accounts.hpp"

#include <boost/json/object.hpp>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

namespace trestle::service::admin {

class SharedSecretRegistration {
public:
  // A nonce is accepted this long after it was handed out, and once.
  static constexpr int64_t kNonceLifetimeMs = 60000;
  // Nonces are handed out without authentication: at most this many are remembered (the oldest
  // are forgotten first), so asking for nonces cannot grow memory without bound.
  static constexpr size_t kMaxNonces = 10000;

  SharedSecretRegistration(AccountService& accounts, storage::Database& db) : accounts_(accounts), db_(db) {}

  // GET /_synapse/admin/v1/register: a new single-use nonce (hex), whether or not a secret is set.
  std::string new_nonce();

  // POST /_synapse/admin/v1/register with Synapse's fields (nonce, username, password, admin,
  // user_type, displayname, mac; also device_id, initial_device_display_name, inhibit_login,
  // refresh_token as /register). Errors as Synapse: 400 when no secret is configured, for a
  // missing field (M_BAD_JSON), an unknown, used or expired nonce, an invalid username, password
  // or user type; 403 M_FORBIDDEN for a wrong mac; then registration's own errors
  // (M_INVALID_USERNAME, M_USER_IN_USE, M_EXCLUSIVE). The nonce is spent even when the request
  // fails after it was recognised.
  Session register_user(const boost::json::object& body);

private:
  // True (and forgets it) when `nonce` was handed out less than kNonceLifetimeMs ago.
  bool take_nonce(const std::string& nonce, int64_t now_ms);
  void expire_nonces(int64_t now_ms);

  AccountService& accounts_;
  storage::Database& db_;
  std::mutex mu_;
  std::unordered_map<std::string, int64_t> nonces_;  // nonce -> when handed out (steady ms)
  std::multimap<int64_t, std::string> by_time_;
};

}  // namespace trestle::service::admin
