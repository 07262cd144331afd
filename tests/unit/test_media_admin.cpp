// media_retention settings (Synapse's keys and durations) and the media store's admin queries:
// quarantine by content hash, protection, what counts as unused, and the sort keys.
#include "config/config.hpp"
#include "service/media/media_admin.hpp"
#include "storage/database.hpp"
#include "storage/media_store.hpp"

#include "temp_dir.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

using namespace trestle;
using trestle::test_support::TempDir;

namespace {

config::Config parse(const std::string& extra, std::vector<std::string>* warnings_out = nullptr) {
  std::vector<std::string> warnings;
  std::string yaml = "server_name: example.org\ndatabase:\n  name: sqlite3\n  args:\n    database: /tmp/x.db\n" + extra;
  auto c = config::parse_config(yaml, "/tmp", warnings);
  if (warnings_out) *warnings_out = warnings;
  else for (const auto& w : warnings) ADD_FAILURE() << w;
  return c;
}

storage::media::Media media(const std::string& id, const std::string& uploader, int64_t size, const std::string& sha,
                            int64_t created_ts) {
  storage::media::Media m;
  m.media_id = id;
  m.uploader = uploader;
  m.size = size;
  m.sha256 = sha;
  m.created_ts = created_ts;
  return m;
}

}  // namespace

TEST(MediaRetentionConfig, OffByDefault) {
  auto c = parse("");
  EXPECT_FALSE(c.media_retention.local_media_lifetime_ms);
  EXPECT_FALSE(c.media_retention.remote_media_lifetime_ms);
  EXPECT_EQ(c.media_retention.check_interval_ms, 3'600'000);
}

TEST(MediaRetentionConfig, SynapsesKeysAndDurations) {
  auto c = parse("media_retention:\n  local_media_lifetime: 90d\n  remote_media_lifetime: 14d\n  check_interval: 250ms\n");
  EXPECT_EQ(c.media_retention.local_media_lifetime_ms, 90LL * 86'400'000);
  EXPECT_EQ(c.media_retention.remote_media_lifetime_ms, 14LL * 86'400'000);
  EXPECT_EQ(c.media_retention.check_interval_ms, 250);
  auto off = parse("media_retention:\n  local_media_lifetime: null\n");
  EXPECT_FALSE(off.media_retention.local_media_lifetime_ms);
}

TEST(MediaRetentionConfig, BadValuesAreRefusedAndUnknownKeysWarned) {
  EXPECT_THROW(parse("media_retention:\n  local_media_lifetime: soon\n"), std::runtime_error);
  EXPECT_THROW(parse("media_retention: 5\n"), std::runtime_error);
  std::vector<std::string> warnings;
  parse("media_retention:\n  local_media_lifetime: 1d\n  lifetime: 2d\n", &warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("media_retention.lifetime"), std::string::npos);
}

TEST(MediaRetentionConfig, TheGeneratedConfigDocumentsIt) {
  auto text = config::generate_config("example.org", "/tmp/data");
  EXPECT_NE(text.find("# media_retention:\n#   local_media_lifetime: 90d\n"), std::string::npos);
}

TEST(MediaAdminOrder, OnlyTheAdminApisSortKeys) {
  for (const char* k : {"media_id", "upload_name", "created_ts", "last_access_ts", "media_length", "media_type",
                        "quarantined_by", "safe_from_quarantine"}) {
    EXPECT_TRUE(service::media::MediaAdmin::valid_order(k)) << k;
  }
  EXPECT_FALSE(service::media::MediaAdmin::valid_order("size"));
  EXPECT_FALSE(service::media::MediaAdmin::valid_order("created_ts; DROP TABLE local_media"));
}

TEST(MediaStore, QuarantineFollowsTheContentAndSparesProtectedMedia) {
  TempDir dir;
  storage::Database db((dir.path / "t.db").string());
  namespace sm = storage::media;
  db.write([](storage::Connection& c) {
    sm::insert_media(c, media("aaaaaaaa", "@a:x", 5, "hash1", 1000));
    sm::insert_media(c, media("bbbbbbbb", "@b:x", 5, "hash1", 1000));  // the same bytes
    sm::insert_media(c, media("cccccccc", "@a:x", 7, "hash2", 1000));
    sm::set_protected(c, "cccccccc", true);
  });
  EXPECT_EQ(db.write([](storage::Connection& c) { return sm::set_quarantined(c, {"aaaaaaaa"}, "@admin:x"); }), 2);
  EXPECT_EQ(db.write([](storage::Connection& c) { return sm::set_quarantined(c, {"aaaaaaaa"}, "@admin:x"); }), 0);
  EXPECT_EQ(db.write([](storage::Connection& c) { return sm::set_quarantined(c, {"cccccccc"}, "@admin:x"); }), 0);
  auto b = db.read([](storage::Connection& c) { return sm::get_media(c, "bbbbbbbb"); });
  ASSERT_TRUE(b);
  EXPECT_EQ(b->quarantined_by, "@admin:x");
  EXPECT_EQ(db.write([](storage::Connection& c) { return sm::set_quarantined(c, {"bbbbbbbb"}, std::nullopt); }), 2);
  EXPECT_EQ(db.write([](storage::Connection& c) { return sm::set_quarantined(c, {"nosuchid"}, "@admin:x"); }), 0);
}

TEST(MediaStore, UnusedMeansNotDownloadedElseNotCreatedSince) {
  TempDir dir;
  storage::Database db((dir.path / "t.db").string());
  namespace sm = storage::media;
  db.write([](storage::Connection& c) {
    sm::insert_media(c, media("old00000", "@a:x", 10, "h1", 1000));
    sm::insert_media(c, media("oldused0", "@a:x", 10, "h2", 1000));
    sm::touch_media(c, "oldused0", 5000);
    sm::insert_media(c, media("new00000", "@a:x", 10, "h3", 4000));
    sm::insert_media(c, media("small000", "@a:x", 1, "h4", 1000));
    sm::insert_media(c, media("quaran00", "@a:x", 10, "h5", 1000));
    sm::set_quarantined(c, {"quaran00"}, "@admin:x");
    auto pending = media("pending0", "@a:x", 0, "", 1000);
    pending.size.reset();
    pending.sha256.reset();
    sm::insert_media(c, pending);
  });
  auto ids = db.read([](storage::Connection& c) { return sm::unused_since(c, 3000, 5); });
  EXPECT_EQ(ids, std::vector<std::string>{"old00000"});
  ids = db.read([](storage::Connection& c) { return sm::unused_since(c, 6000, 0); });
  EXPECT_EQ(ids.size(), 4u);  // all but the quarantined and the pending one
}
