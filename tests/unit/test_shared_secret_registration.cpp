// Shared-secret registration's nonces (single use, bounded) and mac check, on a real database.
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "service/accounts.hpp"
#include "service/admin/shared_secret_registration.hpp"
#include "storage/database.hpp"
#include "temp_dir.hpp"

#include <gtest/gtest.h>

using namespace trestle;
using service::admin::SharedSecretRegistration;

namespace {

struct Fixture {
  test_support::TempDir dir;
  config::Config cfg;
  storage::Database db;
  service::AppServiceRegistry appservices;
  service::AccountService accounts;
  SharedSecretRegistration reg;

  static config::Config make_config() {
    config::Config c;
    c.server_name = "example.org";
    c.registration_shared_secret = "s3cret";
    return c;
  }
  Fixture()
      : cfg(make_config()),
        db((dir.path / "t.db").string()),
        accounts(cfg, db, appservices),
        reg(accounts, db) {}

  boost::json::object body(const std::string& nonce, const std::string& user, bool admin = false) {
    return {{"nonce", nonce}, {"username", user}, {"password", "pw"}, {"admin", admin},
            {"mac", core::registration_mac("s3cret", nonce, user, "pw", admin)}};
  }
};

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const MatrixError& e) {
    return std::to_string(e.status()) + " " + e.errcode() + " " + e.what();
  }
  return "none";
}

}  // namespace

TEST(SharedSecretRegistration, ANonceIsSingleUse) {
  core::crypto_init();
  Fixture f;
  std::string nonce = f.reg.new_nonce();
  EXPECT_EQ(nonce.size(), 64u);
  auto s = f.reg.register_user(f.body(nonce, "alice", true));
  EXPECT_EQ(s.user_id, "@alice:example.org");
  EXPECT_TRUE(f.accounts.is_admin(s.user_id));
  EXPECT_EQ(error_of([&] { f.reg.register_user(f.body(nonce, "alice2")); }), "400 M_UNKNOWN unrecognised nonce");
}

TEST(SharedSecretRegistration, OutstandingNoncesAreBounded) {
  core::crypto_init();
  Fixture f;
  std::string first = f.reg.new_nonce();
  for (size_t i = 0; i < SharedSecretRegistration::kMaxNonces; ++i) f.reg.new_nonce();
  // The oldest was forgotten to make room.
  EXPECT_EQ(error_of([&] { f.reg.register_user(f.body(first, "bob")); }), "400 M_UNKNOWN unrecognised nonce");
  std::string last = f.reg.new_nonce();
  EXPECT_EQ(f.reg.register_user(f.body(last, "bob")).user_id, "@bob:example.org");
}

TEST(SharedSecretRegistration, AWrongMacCreatesNobody) {
  core::crypto_init();
  Fixture f;
  std::string nonce = f.reg.new_nonce();
  auto b = f.body(nonce, "carol", false);
  b["admin"] = true;  // the mac said notadmin
  EXPECT_EQ(error_of([&] { f.reg.register_user(b); }), "403 M_FORBIDDEN HMAC incorrect");
  EXPECT_FALSE(f.accounts.user_exists("@carol:example.org"));
}
