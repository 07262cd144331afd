#pragma once
// Thin wrappers over libsodium: unpadded base64 (the spec's encoding), SHA-256, ed25519,
// argon2id password hashes and random identifiers. Nothing here knows about events.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace trestle::core {

// Must be called once before any other function here (idempotent, thread-safe).
void crypto_init();

std::string base64_encode(std::string_view bytes);          // standard alphabet, no padding
std::string base64url_encode(std::string_view bytes);       // URL-safe alphabet, no padding
std::optional<std::string> base64_decode(std::string_view); // accepts both alphabets, padded or not

std::string sha256(std::string_view data);  // 32 raw bytes

// Random string of `length` characters from [A-Za-z0-9]: access tokens, session ids.
std::string random_string(size_t length);
// Random string of `length` upper-case letters: device ids, like Synapse's.
std::string random_upper(size_t length);

bool constant_time_equal(std::string_view a, std::string_view b);

// HMAC-SHA1 of `message` keyed by `key`, as lower-case hex (40 characters): the mac of Synapse's
// shared-secret registration (POST /_synapse/admin/v1/register). OpenSSL's libcrypto.
std::string hmac_sha1_hex(std::string_view key, std::string_view message);
// The mac of shared-secret registration: HMAC-SHA1 keyed by the shared secret over nonce, NUL,
// username, NUL, password, NUL, "admin" or "notadmin", and (when not empty) NUL and user_type.
std::string registration_mac(std::string_view shared_secret, std::string_view nonce, std::string_view username,
                             std::string_view password, bool admin, std::string_view user_type = {});
// Lower-case hex of `bytes`.
std::string hex_encode(std::string_view bytes);

// New password hashes: argon2id with OWASP's parameters m=19 MiB, t=2, p=1 (libsodium always
// uses p=1). Each hash or verification holds this much memory while it runs.
inline constexpr unsigned long long kPasswordOpsLimit = 2;
inline constexpr size_t kPasswordMemLimit = 19 * 1024 * 1024;

// Returns the encoded hash string ("$argon2id$v=19$m=19456,t=2,p=1$...").
std::string hash_password(std::string_view password);
// Verifies against any libsodium argon2 hash string, including older parameters.
bool verify_password(std::string_view password, const std::string& encoded_hash);
// True when `encoded_hash` was made with other parameters than today's (rehash at next login).
bool password_needs_rehash(const std::string& encoded_hash);
// The memory in bytes verifying `encoded_hash` needs (its m= parameter), kPasswordMemLimit
// when it cannot be read.
size_t password_hash_memory(std::string_view encoded_hash);

// An ed25519 signing key as Synapse stores it: one line "ed25519 <version> <unpadded base64 seed>".
class SigningKey {
public:
  static SigningKey generate(std::string version);  // version like "a_AbCd"
  // Parses Synapse's signing key file format. Throws std::runtime_error with a clear message.
  static SigningKey parse(std::string_view file_contents);
  std::string serialize() const;  // the file line, newline terminated

  const std::string& version() const { return version_; }
  std::string key_id() const { return "ed25519:" + version_; }
  const std::string& public_key() const { return public_key_; }  // 32 raw bytes
  std::string sign(std::string_view message) const;              // 64 raw bytes

private:
  std::string version_, seed_, public_key_, secret_key_;
};

bool ed25519_verify(std::string_view public_key, std::string_view message, std::string_view signature);

}  // namespace trestle::core
