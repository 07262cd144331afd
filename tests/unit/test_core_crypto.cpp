#include "core/crypto.hpp"

#include <gtest/gtest.h>

#include <set>
#include <stdexcept>

using namespace trestle::core;

namespace {

constexpr const char* kSpecSeed = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";

std::string hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xF]);
  }
  return out;
}

class CoreCrypto : public ::testing::Test {
protected:
  void SetUp() override { crypto_init(); }
};

}  // namespace

// content/appendices.md "Unpadded Base64" examples.
TEST_F(CoreCrypto, Base64SpecExamples) {
  const std::pair<std::string, std::string> examples[] = {
      {"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"}, {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : examples) {
    EXPECT_EQ(base64_encode(plain), encoded);
    EXPECT_EQ(base64url_encode(plain), encoded);
    EXPECT_EQ(base64_decode(encoded), plain);
  }
}

TEST_F(CoreCrypto, Base64DecodeAcceptsPadding) {
  EXPECT_EQ(base64_decode("Zg=="), "f");
  EXPECT_EQ(base64_decode("Zm8="), "fo");
  EXPECT_EQ(base64_decode("Zm9v"), "foo");
  EXPECT_EQ(base64_decode("Zm9vYg=="), "foob");
}

TEST_F(CoreCrypto, Base64Alphabets) {
  const std::string bytes("\xfb\xff\xbf", 3);
  EXPECT_EQ(base64_encode(bytes), "+/+/");
  EXPECT_EQ(base64url_encode(bytes), "-_-_");
  EXPECT_EQ(base64_decode("+/+/"), bytes);
  EXPECT_EQ(base64_decode("-_-_"), bytes);
  EXPECT_EQ(base64_decode("+_-/"), std::nullopt);  // mixing alphabets is not a real encoding
}

TEST_F(CoreCrypto, Base64RejectsGarbage) {
  EXPECT_EQ(base64_decode("Z"), std::nullopt);      // a lone character cannot hold a byte
  EXPECT_EQ(base64_decode("Zm9vY"), std::nullopt);
  EXPECT_EQ(base64_decode("Zm 9v"), std::nullopt);
  EXPECT_EQ(base64_decode("Zm9v!"), std::nullopt);
  EXPECT_EQ(base64_decode("Zg==="), std::nullopt);
  EXPECT_EQ(base64_decode("Z=g"), std::nullopt);
}

TEST_F(CoreCrypto, Base64DecodeIgnoresUnusedTrailingBits) {
  // Other encoders leave the unused low bits set; the spec's own seed ends in such a character.
  EXPECT_EQ(base64_decode("Zh"), "f");
  EXPECT_EQ(base64_decode("Zm9"), "fo");
  const auto seed = base64_decode(kSpecSeed);
  ASSERT_TRUE(seed.has_value());
  EXPECT_EQ(seed->size(), 32u);
}

TEST_F(CoreCrypto, Base64RoundTripsAllByteValues) {
  for (size_t length = 0; length < 70; ++length) {
    std::string bytes;
    for (size_t i = 0; i < length; ++i) bytes.push_back(static_cast<char>((i * 37 + length * 11) & 0xFF));
    EXPECT_EQ(base64_decode(base64_encode(bytes)), bytes) << length;
    EXPECT_EQ(base64_decode(base64url_encode(bytes)), bytes) << length;
    EXPECT_EQ(base64_encode(bytes).find('='), std::string::npos);
  }
}

TEST_F(CoreCrypto, Sha256KnownAnswers) {
  EXPECT_EQ(hex(sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex(sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_F(CoreCrypto, RandomStrings) {
  const std::string token = random_string(32);
  EXPECT_EQ(token.size(), 32u);
  for (char c : token) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << c;
  const std::string device = random_upper(10);
  EXPECT_EQ(device.size(), 10u);
  for (char c : device) EXPECT_TRUE(c >= 'A' && c <= 'Z') << c;
  EXPECT_NE(random_string(32), random_string(32));
  EXPECT_EQ(random_string(0), "");
}

TEST_F(CoreCrypto, ConstantTimeEqual) {
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal("secret", "secret"));
  EXPECT_FALSE(constant_time_equal("secret", "secreT"));
  EXPECT_FALSE(constant_time_equal("secret", "secret2"));
  EXPECT_FALSE(constant_time_equal("", "x"));
}

TEST_F(CoreCrypto, PasswordHashAndVerify) {
  const std::string hash = hash_password("correct horse battery staple");
  EXPECT_EQ(hash.rfind("$argon2id$", 0), 0u) << hash;
  EXPECT_TRUE(verify_password("correct horse battery staple", hash));
  EXPECT_FALSE(verify_password("correct horse battery stapl", hash));
  EXPECT_FALSE(verify_password("", hash));
  EXPECT_NE(hash_password("correct horse battery staple"), hash);  // salted
  EXPECT_FALSE(verify_password("anything", "not a hash"));
  EXPECT_FALSE(verify_password("anything", ""));
}

TEST_F(CoreCrypto, PasswordHashesUseOwaspParametersAndOldOnesStillVerify) {
  const std::string hash = hash_password("pw");
  EXPECT_EQ(hash.rfind("$argon2id$v=19$m=19456,t=2,p=1$", 0), 0u) << hash;
  EXPECT_FALSE(password_needs_rehash(hash));
  EXPECT_EQ(password_hash_memory(hash), 19u * 1024 * 1024);
  // crypto_pwhash_str's interactive defaults (m=64 MiB), as older builds stored them.
  const std::string legacy =
      "$argon2id$v=19$m=65536,t=2,p=1$EksI5KXVKfBjEld562R2Yg$JDdDZcC4Y6ZomLsLAAObWwuf3Fo0MYZpTqduhF7r2b0";
  EXPECT_TRUE(verify_password("legacy-password-1234", legacy));
  EXPECT_FALSE(verify_password("legacy-password-123", legacy));
  EXPECT_TRUE(password_needs_rehash(legacy));
  EXPECT_EQ(password_hash_memory(legacy), 64u * 1024 * 1024);
  EXPECT_TRUE(password_needs_rehash("not a hash"));
  EXPECT_EQ(password_hash_memory("not a hash"), kPasswordMemLimit);
  EXPECT_EQ(password_hash_memory("$argon2id$v=19$m=,t=2"), kPasswordMemLimit);
}

TEST_F(CoreCrypto, PasswordWithUnicodeAndNul) {
  const std::string password("p\xC3\xA4ss\0word", 10);
  const std::string hash = hash_password(password);
  EXPECT_TRUE(verify_password(password, hash));
  EXPECT_FALSE(verify_password("p\xC3\xA4ss", hash));
}

TEST_F(CoreCrypto, SigningKeyParsesSynapseFormat) {
  const SigningKey key = SigningKey::parse(std::string("ed25519 1 ") + kSpecSeed + "\n");
  EXPECT_EQ(key.version(), "1");
  EXPECT_EQ(key.key_id(), "ed25519:1");
  EXPECT_EQ(key.public_key().size(), 32u);
  // Re-serialising gives the canonical encoding of the same seed, which parses to the same key.
  const std::string line = key.serialize();
  EXPECT_EQ(line.rfind("ed25519 1 ", 0), 0u);
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(SigningKey::parse(line).public_key(), key.public_key());
}

TEST_F(CoreCrypto, SigningKeyParseToleratesWhitespaceAndExtraLines) {
  const SigningKey first = SigningKey::parse(std::string("ed25519 a_AbCd ") + kSpecSeed);
  const SigningKey crlf = SigningKey::parse(std::string("\n  ed25519 a_AbCd ") + kSpecSeed + "\r\ned25519 old " +
                                            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
  EXPECT_EQ(crlf.version(), "a_AbCd");
  EXPECT_EQ(crlf.public_key(), first.public_key());
}

TEST_F(CoreCrypto, SigningKeyParseErrors) {
  EXPECT_THROW(SigningKey::parse(""), std::runtime_error);
  EXPECT_THROW(SigningKey::parse("\n\n"), std::runtime_error);
  EXPECT_THROW(SigningKey::parse(std::string("ed448 1 ") + kSpecSeed), std::runtime_error);
  EXPECT_THROW(SigningKey::parse(std::string("ed25519 ") + kSpecSeed), std::runtime_error);
  EXPECT_THROW(SigningKey::parse(std::string("ed25519 bad:version ") + kSpecSeed), std::runtime_error);
  EXPECT_THROW(SigningKey::parse("ed25519 1 Zm9vYmFy"), std::runtime_error);  // 6-byte seed
  EXPECT_THROW(SigningKey::parse("ed25519 1 !!!!"), std::runtime_error);
}

TEST_F(CoreCrypto, SigningKeyGenerateSignVerify) {
  const SigningKey key = SigningKey::generate("a_AbCd");
  EXPECT_EQ(key.key_id(), "ed25519:a_AbCd");
  const std::string signature = key.sign("message");
  EXPECT_EQ(signature.size(), 64u);
  EXPECT_TRUE(ed25519_verify(key.public_key(), "message", signature));
  EXPECT_FALSE(ed25519_verify(key.public_key(), "messagE", signature));
  EXPECT_FALSE(ed25519_verify(SigningKey::generate("b").public_key(), "message", signature));
  EXPECT_FALSE(ed25519_verify(key.public_key(), "message", signature.substr(1)));
  EXPECT_FALSE(ed25519_verify(key.public_key().substr(1), "message", signature));

  const SigningKey reloaded = SigningKey::parse(key.serialize());
  EXPECT_EQ(reloaded.version(), "a_AbCd");
  EXPECT_EQ(reloaded.public_key(), key.public_key());
  EXPECT_EQ(reloaded.sign("message"), signature);  // ed25519 is deterministic
  EXPECT_NE(SigningKey::generate("a").public_key(), key.public_key());
  EXPECT_THROW(SigningKey::generate(""), std::invalid_argument);
  EXPECT_THROW(SigningKey::generate("a b"), std::invalid_argument);
}

// RFC 2202 test case 1 and 2 for HMAC-SHA1.
TEST(HmacSha1, Rfc2202Vectors) {
  EXPECT_EQ(trestle::core::hmac_sha1_hex(std::string(20, '\x0b'), "Hi There"),
            "b617318655057264e28bc0b6fb378c8ef146be00");
  EXPECT_EQ(trestle::core::hmac_sha1_hex("Jefe", "what do ya want for nothing?"),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
  EXPECT_EQ(trestle::core::hmac_sha1_hex("", ""), "fbdb1d1b18aa6c08324b7d64b71fb76370690e1d");
}

// Synapse's docs/admin_api/register_api.md example (nonce "thisisanonce", pepper_roni / pizza,
// secret "shared_secret"); expected values computed with python's hmac module and with
// `printf '%s\0%s\0%s\0%s' ... | openssl sha1 -hmac shared_secret` as the document shows.
TEST(RegistrationMac, SynapseDocumentedExample) {
  using trestle::core::registration_mac;
  EXPECT_EQ(registration_mac("shared_secret", "thisisanonce", "pepper_roni", "pizza", true),
            "48715842ad67d5dc9a9ee938a3bda4fcfae8d7c7");
  // The user_type is appended after a NUL; an empty one is left out (as Synapse's `if user_type`).
  EXPECT_EQ(registration_mac("shared_secret", "thisisanonce", "pepper_roni", "pizza", false, "bot"),
            "b269635cb53e1adc15073ae7ffbd000b836b3105");
  EXPECT_EQ(registration_mac("shared_secret", "thisisanonce", "pepper_roni", "pizza", true, ""),
            registration_mac("shared_secret", "thisisanonce", "pepper_roni", "pizza", true));
  EXPECT_NE(registration_mac("shared_secret", "thisisanonce", "pepper_roni", "pizza", false),
            registration_mac("shared_secret", "thisisanonce", "pepper_roni", "pizza", true));
}
