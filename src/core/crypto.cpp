#include "core/crypto.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace trestle::core {
namespace {

constexpr std::string_view kStandardAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kUrlSafeAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string encode_with(std::string_view bytes, int variant) {
  const size_t encoded_size = sodium_base64_encoded_len(bytes.size(), variant);  // includes the NUL
  std::string out(encoded_size, '\0');
  sodium_bin2base64(out.data(), encoded_size, reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), variant);
  out.resize(encoded_size - 1);
  return out;
}

bool is_key_version_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool is_valid_key_version(std::string_view version) {
  return !version.empty() && std::all_of(version.begin(), version.end(), is_key_version_char);
}

std::string random_from(std::string_view alphabet, size_t length) {
  std::string out(length, '\0');
  for (char& c : out) c = alphabet[randombytes_uniform(static_cast<uint32_t>(alphabet.size()))];
  return out;
}

void derive_keypair(const std::string& seed, std::string& public_key, std::string& secret_key) {
  public_key.assign(crypto_sign_PUBLICKEYBYTES, '\0');
  secret_key.assign(crypto_sign_SECRETKEYBYTES, '\0');
  crypto_sign_seed_keypair(reinterpret_cast<unsigned char*>(public_key.data()),
                           reinterpret_cast<unsigned char*>(secret_key.data()),
                           reinterpret_cast<const unsigned char*>(seed.data()));
}

std::vector<std::string_view> split_whitespace(std::string_view line) {
  std::vector<std::string_view> tokens;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') ++i;
    if (i > start) tokens.push_back(line.substr(start, i - start));
  }
  return tokens;
}

}  // namespace

void crypto_init() {
  // sodium_init is itself idempotent and thread-safe; it returns 1 when already initialised.
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
}

std::string base64_encode(std::string_view bytes) {
  return encode_with(bytes, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
}

std::string base64url_encode(std::string_view bytes) {
  return encode_with(bytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

std::optional<std::string> base64_decode(std::string_view input) {
  std::string text(input);
  for (int i = 0; i < 2 && !text.empty() && text.back() == '='; ++i) text.pop_back();
  if (text.size() % 4 == 1) return std::nullopt;

  const bool has_standard = text.find_first_of("+/") != std::string::npos;
  const bool has_url_safe = text.find_first_of("-_") != std::string::npos;
  if (has_standard && has_url_safe) return std::nullopt;
  const std::string_view alphabet = has_url_safe ? kUrlSafeAlphabet : kStandardAlphabet;
  const int variant =
      has_url_safe ? sodium_base64_VARIANT_URLSAFE_NO_PADDING : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;

  // libsodium refuses a final character whose unused low bits are set, but other encoders emit
  // such strings (the spec's own test seed ends in one), so clear those bits before decoding.
  if (text.size() % 4 != 0) {
    const size_t unused_bits = text.size() % 4 == 2 ? 4 : 2;
    const size_t index = alphabet.find(text.back());
    if (index == std::string_view::npos) return std::nullopt;
    text.back() = alphabet[index & ~((size_t{1} << unused_bits) - 1)];
  }

  std::string out(text.size() / 4 * 3 + 3, '\0');
  size_t out_len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(), text.size(),
                        nullptr, &out_len, &end, variant) != 0 ||
      end != text.data() + text.size())
    return std::nullopt;
  out.resize(out_len);
  return out;
}

// OpenSSL's SHA-256, not libsodium's: it uses the CPU's SHA extensions where there are any
// (bench/micro: room::hash_sign_and_id of a message, which hashes its canonical JSON twice).
// The digest is fetched once; EVP_sha256() would look it up in the provider at every call.
std::string sha256(std::string_view data) {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  std::string digest(crypto_hash_sha256_BYTES, '\0');
  unsigned int len = 0;
  if (!md || EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(digest.data()), &len, md, nullptr) != 1 ||
      len != digest.size()) {
    throw std::runtime_error("SHA-256 failed");
  }
  return digest;
}

std::string random_string(size_t length) {
  return random_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", length);
}

std::string random_upper(size_t length) { return random_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ", length); }

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Only the contents are secret; the lengths of tokens and hashes are not.
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string hex_encode(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

std::string hmac_sha1_hex(std::string_view key, std::string_view message) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // An empty key is a valid HMAC key; OpenSSL wants a non-null pointer for it.
  static const unsigned char kEmpty = 0;
  const void* k = key.empty() ? static_cast<const void*>(&kEmpty) : static_cast<const void*>(key.data());
  if (!HMAC(EVP_sha1(), k, static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
            message.size(), digest, &len)) {
    throw std::runtime_error("HMAC-SHA1 failed");
  }
  return hex_encode(std::string_view(reinterpret_cast<const char*>(digest), len));
}

std::string registration_mac(std::string_view shared_secret, std::string_view nonce, std::string_view username,
                             std::string_view password, bool admin, std::string_view user_type) {
  std::string message;
  message.reserve(nonce.size() + username.size() + password.size() + user_type.size() + 16);
  message.append(nonce).push_back('\0');
  message.append(username).push_back('\0');
  message.append(password).push_back('\0');
  message.append(admin ? "admin" : "notadmin");
  if (!user_type.empty()) message.append(1, '\0').append(user_type);
  return hmac_sha1_hex(shared_secret, message);
}

std::string hash_password(std::string_view password) {
  char encoded[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(encoded, password.data(), password.size(), kPasswordOpsLimit, kPasswordMemLimit,
                            crypto_pwhash_ALG_ARGON2ID13) != 0)
    throw std::runtime_error("password hashing failed (out of memory)");
  return encoded;
}

bool verify_password(std::string_view password, const std::string& encoded_hash) {
  return crypto_pwhash_str_verify(encoded_hash.c_str(), password.data(), password.size()) == 0;
}

bool password_needs_rehash(const std::string& encoded_hash) {
  // Also true (-1) for a string that is not an argon2id hash at all.
  return crypto_pwhash_str_needs_rehash(encoded_hash.c_str(), kPasswordOpsLimit, kPasswordMemLimit) != 0;
}

size_t password_hash_memory(std::string_view encoded_hash) {
  // "$argon2id$v=19$m=65536,t=2,p=1$salt$hash": m is in KiB.
  auto pos = encoded_hash.find("$m=");
  if (pos == std::string_view::npos) return kPasswordMemLimit;
  size_t kib = 0, i = pos + 3;
  for (; i < encoded_hash.size() && i < pos + 13 && encoded_hash[i] >= '0' && encoded_hash[i] <= '9'; ++i)
    kib = kib * 10 + static_cast<size_t>(encoded_hash[i] - '0');
  if (i == pos + 3 || kib == 0) return kPasswordMemLimit;
  return kib * 1024;
}

SigningKey SigningKey::generate(std::string version) {
  if (!is_valid_key_version(version))
    throw std::invalid_argument("signing key version must be non-empty [A-Za-z0-9_]: '" + version + "'");
  std::string seed(crypto_sign_SEEDBYTES, '\0');
  randombytes_buf(seed.data(), seed.size());
  SigningKey key;
  key.version_ = std::move(version);
  key.seed_ = std::move(seed);
  derive_keypair(key.seed_, key.public_key_, key.secret_key_);
  return key;
}

SigningKey SigningKey::parse(std::string_view file_contents) {
  // Synapse may list several keys, one per line; the first one is the key it signs with.
  std::vector<std::string_view> fields;
  while (!file_contents.empty() && fields.empty()) {
    const size_t newline = file_contents.find('\n');
    fields = split_whitespace(file_contents.substr(0, newline));
    file_contents = newline == std::string_view::npos ? std::string_view{} : file_contents.substr(newline + 1);
  }
  if (fields.empty()) throw std::runtime_error("signing key file is empty");
  if (fields.size() != 3)
    throw std::runtime_error("signing key file: expected 'ed25519 <version> <base64 seed>'");
  if (fields[0] != "ed25519")
    throw std::runtime_error("signing key file: unsupported algorithm '" + std::string(fields[0]) + "'");
  if (!is_valid_key_version(fields[1]))
    throw std::runtime_error("signing key file: invalid key version '" + std::string(fields[1]) + "'");
  auto seed = base64_decode(fields[2]);
  if (!seed) throw std::runtime_error("signing key file: seed is not valid base64");
  if (seed->size() != crypto_sign_SEEDBYTES)
    throw std::runtime_error("signing key file: seed must be 32 bytes, got " + std::to_string(seed->size()));

  SigningKey key;
  key.version_ = std::string(fields[1]);
  key.seed_ = std::move(*seed);
  derive_keypair(key.seed_, key.public_key_, key.secret_key_);
  return key;
}

std::string SigningKey::serialize() const { return "ed25519 " + version_ + " " + base64_encode(seed_) + "\n"; }

std::string SigningKey::sign(std::string_view message) const {
  if (secret_key_.size() != crypto_sign_SECRETKEYBYTES)
    throw std::logic_error("SigningKey::sign called on an empty key");
  std::string signature(crypto_sign_BYTES, '\0');
  crypto_sign_detached(reinterpret_cast<unsigned char*>(signature.data()), nullptr,
                       reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                       reinterpret_cast<const unsigned char*>(secret_key_.data()));
  return signature;
}

bool ed25519_verify(std::string_view public_key, std::string_view message, std::string_view signature) {
  if (public_key.size() != crypto_sign_PUBLICKEYBYTES || signature.size() != crypto_sign_BYTES) return false;
  return crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(signature.data()),
                                     reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                                     reinterpret_cast<const unsigned char*>(public_key.data())) == 0;
}

}  // namespace trestle::core
