// Profile field names (spec v1.16 profile.yaml): the keyName grammar and the 255-byte limit.
#include "core/error.hpp"
#include "service/profile.hpp"

#include <gtest/gtest.h>

using namespace trestle;

namespace {

std::string errcode_of(const std::string& key) {
  try {
    service::ProfileService::check_key(key);
    return "";
  } catch (const MatrixError& e) {
    return e.errcode();
  }
}

}  // namespace

TEST(ProfileKeys, SpecKeysAndNamespacedKeysAreAccepted) {
  for (const char* k : {"displayname", "avatar_url", "m.tz", "org.example.pronouns", "m.custom", "a.b", "a_1.b2_c.d"}) {
    EXPECT_EQ(errcode_of(k), "") << k;
  }
}

TEST(ProfileKeys, OtherNamesAreInvalid) {
  for (const char* k : {"", "tz", "Org.example", "org.Example", "org..example", "org.example.", ".org", "1org.x",
                        "org.1x", "org.ex-ample", "org.example/x", "m.tz.", "displayname.", "org.exam ple"}) {
    EXPECT_EQ(errcode_of(k), "M_INVALID_PARAM") << k;
  }
}

TEST(ProfileKeys, KeysOver255BytesAreTooLarge) {
  std::string k = "org.example." + std::string(243, 'k');
  EXPECT_EQ(k.size(), 255u);
  EXPECT_EQ(errcode_of(k), "");
  EXPECT_EQ(errcode_of(k + "k"), "M_KEY_TOO_LARGE");
  EXPECT_EQ(errcode_of(std::string(300, '!')), "M_KEY_TOO_LARGE");  // size before grammar
}
