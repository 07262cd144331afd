// The spec's rule for replacing a backed-up session key (E2EE module, "Server-side key backups").
#include "service/key_backup.hpp"

#include <gtest/gtest.h>

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
