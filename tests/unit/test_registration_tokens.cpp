// Registration tokens over a real SQLite database: validity (expiry, uses counting pending
// holds), holds that end with their registration session, completion counted once, and holds
// dropped at start (registration sessions live in memory).
#include "core/error.hpp"
#include "service/registration_tokens.hpp"
#include "storage/database.hpp"
#include "storage/registration_token_store.hpp"

#include "temp_dir.hpp"

#include <gtest/gtest.h>

using namespace trestle;
namespace store = storage::registration_tokens;
using trestle::test_support::TempDir;

namespace {

boost::json::object stage(const std::string& token, const std::string& session) {
  return {{"type", "m.login.registration_token"}, {"token", token}, {"session", session}};
}

int errcode_status(const std::function<void()>& f, std::string* errcode = nullptr) {
  try {
    f();
  } catch (const MatrixError& e) {
    if (errcode) *errcode = e.errcode();
    return e.status();
  }
  return 200;
}

}  // namespace

TEST(RegistrationTokens, ExpiredHoldsNoLongerCount) {
  TempDir dir;
  storage::Database db((dir.path / "t.db").string());
  int64_t now = 1'000'000;
  service::RegistrationTokenService tokens(db, [&] { return now; });
  tokens.create({{"token", "t"}, {"uses_allowed", 1}});
  EXPECT_TRUE(tokens.is_valid("t"));

  tokens.check_stage(stage("t", "s1"), "s1", now + 1000);  // s1 holds the only use
  EXPECT_EQ(tokens.get("t").pending, 1);
  EXPECT_FALSE(tokens.is_valid("t"));
  std::string errcode;
  EXPECT_EQ(errcode_status([&] { tokens.check_stage(stage("t", "s2"), "s2", now + 1000); }, &errcode), 401);
  EXPECT_EQ(errcode, "M_UNAUTHORIZED");

  now += 1000;  // s1's session ended unused: the use is free again
  EXPECT_EQ(tokens.get("t").pending, 0);
  EXPECT_TRUE(tokens.is_valid("t"));
  EXPECT_EQ(tokens.list(true).size(), 1u);
  tokens.check_stage(stage("t", "s2"), "s2", now + 1000);
  tokens.complete("s2");
  tokens.complete("s2");  // once only
  auto t = tokens.get("t");
  EXPECT_EQ(t.pending, 0);
  EXPECT_EQ(t.completed, 1);
  EXPECT_FALSE(tokens.is_valid("t"));
  EXPECT_EQ(tokens.list(false).size(), 1u);
  // The completed session passes the stage again (a repeated request), without a new hold.
  tokens.check_stage(stage("t", "s2"), "s2", now + 1000);
  EXPECT_EQ(tokens.get("t").pending, 0);
}

TEST(RegistrationTokens, ExpiryTime) {
  TempDir dir;
  storage::Database db((dir.path / "t.db").string());
  int64_t now = 5'000;
  service::RegistrationTokenService tokens(db, [&] { return now; });
  tokens.create({{"token", "e"}, {"expiry_time", 6'000}});
  EXPECT_TRUE(tokens.is_valid("e"));
  now = 6'000;
  EXPECT_FALSE(tokens.is_valid("e"));
  EXPECT_EQ(tokens.list(true).size(), 0u);
  EXPECT_EQ(tokens.list(false).size(), 1u);
  EXPECT_EQ(errcode_status([&] { tokens.check_stage(stage("e", "s"), "s", now + 1000); }), 401);
  EXPECT_EQ(errcode_status([&] { tokens.update("e", {{"expiry_time", 5'999}}); }), 400);
  tokens.update("e", {{"expiry_time", nullptr}});
  EXPECT_TRUE(tokens.is_valid("e"));
}

TEST(RegistrationTokens, HoldsAreDroppedAtStart) {
  TempDir dir;
  storage::Database db((dir.path / "t.db").string());
  {
    service::RegistrationTokenService tokens(db, [] { return int64_t{1}; });
    tokens.create({{"token", "h"}, {"uses_allowed", 2}});
    tokens.check_stage(stage("h", "s"), "s", 1'000'000);
    EXPECT_EQ(tokens.get("h").pending, 1);
  }
  service::RegistrationTokenService restarted(db, [] { return int64_t{2}; });
  EXPECT_EQ(restarted.get("h").pending, 0);
  EXPECT_EQ(restarted.get("h").uses_allowed, 2);
}

TEST(RegistrationTokens, DeleteForgetsHolds) {
  TempDir dir;
  storage::Database db((dir.path / "t.db").string());
  service::RegistrationTokenService tokens(db, [] { return int64_t{1}; });
  tokens.create({{"token", "d"}});
  tokens.check_stage(stage("d", "s"), "s", 1'000'000);
  tokens.remove("d");
  tokens.complete("s");  // the session registers after the token went: nothing to count
  EXPECT_EQ(errcode_status([&] { tokens.get("d"); }), 404);
  tokens.create({{"token", "d"}});
  EXPECT_EQ(tokens.get("d").pending, 0);
  EXPECT_EQ(tokens.get("d").completed, 0);
}

TEST(RegistrationTokens, WellFormed) {
  using S = service::RegistrationTokenService;
  EXPECT_TRUE(S::well_formed("aZ09._~-"));
  EXPECT_FALSE(S::well_formed(""));
  EXPECT_FALSE(S::well_formed("a b"));
  EXPECT_FALSE(S::well_formed("a/b"));
  EXPECT_TRUE(S::well_formed(std::string(64, 'x')));
  EXPECT_FALSE(S::well_formed(std::string(65, 'x')));
}
