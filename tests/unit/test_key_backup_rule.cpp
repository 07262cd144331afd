// The spec's rule for replacing a backed-up session key (E2EE module, "Server-side key backups"),
// and what the request schema keeps the HTTP tests from reaching: an algorithm other than the
// spec's one (the router refuses it before the service sees it).
#include "core/error.hpp"
#include "service/key_backup.hpp"
#include "storage/database.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <unistd.h>

using trestle::service::BackupKeyRank;
using trestle::service::should_replace_backup_key;

TEST(KeyBackupRule, VerifiedWinsOverEverythingElse) {
  EXPECT_TRUE(should_replace_backup_key({5, 1, false}, {10, 5, true}));
  EXPECT_FALSE(should_replace_backup_key({10, 5, true}, {0, 0, false}));
}

TEST(KeyBackupRule, ThenLowerFirstMessageIndex) {
  EXPECT_TRUE(should_replace_backup_key({5, 0, true}, {3, 9, true}));
  EXPECT_FALSE(should_replace_backup_key({3, 9, true}, {4, 0, true}));
  EXPECT_TRUE(should_replace_backup_key({5, 0, false}, {3, 9, false}));
}

TEST(KeyBackupRule, ThenLowerForwardedCount) {
  EXPECT_TRUE(should_replace_backup_key({3, 4, true}, {3, 2, true}));
  EXPECT_FALSE(should_replace_backup_key({3, 2, true}, {3, 4, true}));
}

TEST(KeyBackupRule, ATieKeepsTheStoredKey) {
  EXPECT_FALSE(should_replace_backup_key({3, 2, true}, {3, 2, true}));
  EXPECT_FALSE(should_replace_backup_key({0, 0, false}, {0, 0, false}));
}

TEST(KeyBackupService, UpdateRefusesAnotherAlgorithm) {
  namespace fs = std::filesystem;
  auto dir = fs::temp_directory_path() / ("trestle-kb-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    trestle::storage::Database db((dir / "t.db").string(), 1);
    trestle::service::KeyBackupService kb(db);
    const std::string user = "@a:example.org";
    auto v = kb.create_version(user, {{"algorithm", "org.example.other"}, {"auth_data", boost::json::object{}}});
    EXPECT_EQ(v, "1");
    try {
      kb.update_version(user, v, {{"algorithm", "m.megolm_backup.v1.curve25519-aes-sha2"}, {"auth_data", boost::json::object{}}});
      FAIL() << "an update with another algorithm was accepted";
    } catch (const trestle::MatrixError& e) {
      EXPECT_EQ(e.status(), 400);
      EXPECT_EQ(e.errcode(), "M_INVALID_PARAM");
    }
    kb.update_version(user, v, {{"algorithm", "org.example.other"}, {"auth_data", {{"k", 1}}}});
    EXPECT_EQ(kb.get_version(user, v).at("auth_data").as_object().at("k").as_int64(), 1);
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}
