#include "service/admin/shared_secret_registration.hpp"

#include "core/clock.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "storage/user_admin_store.hpp"

#include <algorithm>
#include <cctype>

namespace trestle::service::admin {

namespace {

constexpr size_t kMaxFieldBytes = 512;  // Synapse's bound on username and password

// User types Synapse knows (UserTypes.ALL_USER_TYPES).
bool known_user_type(const std::string& t) { return t == "support" || t == "bot"; }

// Python's truthiness, as Synapse reads `admin`.
bool truthy(const boost::json::value& v) {
  if (v.is_bool()) return v.as_bool();
  if (v.is_null()) return false;
  if (v.is_int64()) return v.as_int64() != 0;
  if (v.is_uint64()) return v.as_uint64() != 0;
  if (v.is_double()) return v.as_double() != 0;
  if (v.is_string()) return !v.as_string().empty();
  if (v.is_array()) return !v.as_array().empty();
  return !v.as_object().empty();
}

// username / password: required string of at most 512 bytes without NUL.
std::string bounded_field(const boost::json::object& body, const char* key, const char* invalid) {
  auto* v = body.if_contains(key);
  if (!v) throw MatrixError(400, "M_BAD_JSON", std::string(key) + " must be specified");
  if (!v->is_string() || v->as_string().size() > kMaxFieldBytes) throw MatrixError(400, "M_UNKNOWN", invalid);
  std::string s(v->as_string());
  if (s.find('\0') != std::string::npos) throw MatrixError(400, "M_UNKNOWN", invalid);
  return s;
}

std::optional<std::string> optional_string_field(const boost::json::object& body, const char* key) {
  auto* v = body.if_contains(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_string()) throw MatrixError(400, "M_INVALID_PARAM", std::string(key) + " must be a string");
  return std::string(v->as_string());
}

}  // namespace

std::string SharedSecretRegistration::new_nonce() {
  std::string nonce = core::hex_encode(core::random_string(32));
  int64_t now = core::steady_ms();
  std::lock_guard lock(mu_);
  expire_nonces(now);
  while (nonces_.size() >= kMaxNonces && !by_time_.empty()) {
    nonces_.erase(by_time_.begin()->second);
    by_time_.erase(by_time_.begin());
  }
  nonces_[nonce] = now;
  by_time_.emplace(now, nonce);
  return nonce;
}

void SharedSecretRegistration::expire_nonces(int64_t now_ms) {
  while (!by_time_.empty() && now_ms - by_time_.begin()->first > kNonceLifetimeMs) {
    nonces_.erase(by_time_.begin()->second);
    by_time_.erase(by_time_.begin());
  }
}

bool SharedSecretRegistration::take_nonce(const std::string& nonce, int64_t now_ms) {
  std::lock_guard lock(mu_);
  expire_nonces(now_ms);
  auto it = nonces_.find(nonce);
  if (it == nonces_.end()) return false;
  auto range = by_time_.equal_range(it->second);
  for (auto t = range.first; t != range.second; ++t) {
    if (t->second == nonce) {
      by_time_.erase(t);
      break;
    }
  }
  nonces_.erase(it);
  return true;
}

Session SharedSecretRegistration::register_user(const boost::json::object& body) {
  const std::string& secret = accounts_.config().registration_shared_secret;
  if (secret.empty()) throw MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled");

  auto* nonce_value = body.if_contains("nonce");
  if (!nonce_value) throw MatrixError(400, "M_BAD_JSON", "nonce must be specified");
  if (!nonce_value->is_string() || !take_nonce(std::string(nonce_value->as_string()), core::steady_ms())) {
    throw MatrixError(400, "M_UNKNOWN", "unrecognised nonce");
  }
  std::string nonce(nonce_value->as_string());

  std::string username = bounded_field(body, "username", "Invalid username");
  std::string password = bounded_field(body, "password", "Invalid password");
  bool admin = false;
  if (auto* a = body.if_contains("admin")) admin = truthy(*a);
  auto user_type = optional_string_field(body, "user_type");
  if (user_type && !known_user_type(*user_type)) throw MatrixError(400, "M_UNKNOWN", "Invalid user type");
  auto displayname = optional_string_field(body, "displayname");

  auto* mac_value = body.if_contains("mac");
  if (!mac_value) throw MatrixError(400, "M_BAD_JSON", "mac must be specified");
  if (!mac_value->is_string()) throw MatrixError(400, "M_BAD_JSON", "mac must be a string");
  std::string want = core::registration_mac(secret, nonce, username, password, admin, user_type.value_or(""));
  std::string got(mac_value->as_string());
  // Hex digests: compare case-insensitively, in constant time.
  std::transform(got.begin(), got.end(), got.begin(), [](unsigned char c) { return std::tolower(c); });
  if (!core::constant_time_equal(want, got)) throw MatrixError::forbidden("HMAC incorrect");

  bool refresh_token = false;
  if (auto* r = body.if_contains("refresh_token")) {
    if (!r->is_bool()) throw MatrixError(400, "M_UNKNOWN", "refresh_token must be a boolean");
    refresh_token = r->as_bool();
  }
  bool inhibit_login = false;
  if (auto* i = body.if_contains("inhibit_login"); i && !i->is_null()) {
    if (!i->is_bool()) throw MatrixError(400, "M_INVALID_PARAM", "inhibit_login must be a boolean");
    inhibit_login = i->as_bool();
  }
  auto device_id = optional_string_field(body, "device_id");
  auto device_name = optional_string_field(body, "initial_device_display_name");

  // Synapse lower-cases the name and registers as an admin would: no registration rate limit,
  // whatever enable_registration says.
  std::string localpart = username;
  std::transform(localpart.begin(), localpart.end(), localpart.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  auto s = accounts_.register_user(localpart, password, device_id, device_name, inhibit_login, std::nullopt, admin,
                                   refresh_token);
  if (displayname && !displayname->empty()) accounts_.set_profile_field(s.user_id, "displayname", *displayname);
  if (user_type) db_.write([&](storage::Connection& c) { storage::user_admin::set_user_type(c, s.user_id, user_type); });
  return s;
}

}  // namespace trestle::service::admin
