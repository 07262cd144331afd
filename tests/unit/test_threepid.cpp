// Input checks of the 3PID service: email addresses, client secrets, identity server names.
#include "core/error.hpp"
#include "service/threepid.hpp"

#include <gtest/gtest.h>

using trestle::MatrixError;
using trestle::service::ThreepidService;

TEST(Threepid, CanonicalEmailLowercasesAndTrims) {
  EXPECT_EQ(ThreepidService::canonical_email("Bob@Example.ORG"), "bob@example.org");
  EXPECT_EQ(ThreepidService::canonical_email("  a.b+c@d.e \t"), "a.b+c@d.e");
}

TEST(Threepid, CanonicalEmailRefusesNonAddresses) {
  for (const char* bad : {"", "plain", "@example.org", "bob@", "a@b@c", "bob smith@example.org", "bob@exa\r\nmple.org",
                          "<bob@example.org>", "bob@example.org,eve@example.org"}) {
    try {
      ThreepidService::canonical_email(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const MatrixError& e) {
      EXPECT_EQ(e.status(), 400);
      EXPECT_EQ(e.errcode(), "M_INVALID_PARAM");
    }
  }
  EXPECT_THROW(ThreepidService::canonical_email(std::string(490, 'a') + "@example.org"), MatrixError);
}

TEST(Threepid, ClientSecretGrammar) {
  EXPECT_NO_THROW(ThreepidService::check_client_secret("Az09.=_-"));
  EXPECT_NO_THROW(ThreepidService::check_client_secret(std::string(255, 'a')));
  EXPECT_THROW(ThreepidService::check_client_secret(""), MatrixError);
  EXPECT_THROW(ThreepidService::check_client_secret(std::string(256, 'a')), MatrixError);
  EXPECT_THROW(ThreepidService::check_client_secret("a b"), MatrixError);
  EXPECT_THROW(ThreepidService::check_client_secret("a/b"), MatrixError);
}

TEST(Threepid, IdServerIsAServerNameNeverAUrl) {
  EXPECT_NO_THROW(ThreepidService::check_id_server("id.example.org"));
  EXPECT_NO_THROW(ThreepidService::check_id_server("127.0.0.1:8090"));
  EXPECT_THROW(ThreepidService::check_id_server("https://id.example.org"), MatrixError);
  EXPECT_THROW(ThreepidService::check_id_server("id.example.org/path"), MatrixError);
  EXPECT_THROW(ThreepidService::check_id_server("id.example.org@evil"), MatrixError);
  EXPECT_THROW(ThreepidService::check_id_server(""), MatrixError);
}
