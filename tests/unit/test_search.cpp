// POST /search: the user's text as a safe FTS5 query, the next_batch token, and the index's
// back-fill of events stored before the search migration.
#include "core/crypto.hpp"
#include "service/search.hpp"
#include "storage/database.hpp"
#include "storage/migrations.hpp"
#include "storage/search_store.hpp"
#include "storage/sqlite/connection.hpp"

#include "temp_dir.hpp"

#include <gtest/gtest.h>

#include <filesystem>

using namespace trestle;
namespace fs = std::filesystem;

namespace {

using trestle::test_support::TempDir;


// The migration step that creates the index, found by its content (the lead renumbers steps).
size_t search_step() {
  const auto& steps = storage::migrations();
  for (size_t i = 0; i < steps.size(); ++i) {
    if (steps[i].find("CREATE VIRTUAL TABLE event_search") != std::string::npos) return i;
  }
  ADD_FAILURE() << "no migration creates event_search";
  return steps.size();
}

void insert_event(storage::Connection& c, int64_t pos, const std::string& type, const std::string& json,
                  const char* redacted_by = nullptr) {
  c.prepare(
       "INSERT INTO events (stream_ordering, event_id, room_id, type, sender, origin_server_ts, depth, json, redacted_by)"
       " VALUES (?, ?, '!r:x', ?, '@a:x', 0, 1, ?, ?)")
      .bind(pos, "$e" + std::to_string(pos), type, json, redacted_by ? std::optional<std::string>(redacted_by) : std::nullopt)
      .run();
}

std::vector<int64_t> matches(storage::Connection& c, const std::string& term) {
  std::vector<int64_t> out;
  auto q = service::fts_query(term);
  if (!q) return out;
  storage::search::for_each_match(c, *q, {"!r:x"}, {"content.body", "content.name", "content.topic"},
                                  storage::search::Order::recent, 0, std::nullopt,
                                  [&](const storage::search::Match& m) {
                                    out.push_back(m.stream_ordering);
                                    return true;
                                  });
  return out;
}

}  // namespace

TEST(SearchQuery, QuotesEveryWordAndKeepsSynapsesSyntax) {
  EXPECT_EQ(service::fts_query("hello"), "((\"hello\"))");
  EXPECT_EQ(service::fts_query("Hello World"), "((\"Hello\" AND \"World\"))");
  EXPECT_EQ(service::fts_query("\"brown fox\" jumps"), "((\"brown fox\" AND \"jumps\"))");
  EXPECT_EQ(service::fts_query("cat or dog"), "((\"cat\")) OR ((\"dog\"))");
  EXPECT_EQ(service::fts_query("fox -brown"), "((\"fox\") NOT \"brown\")");
  EXPECT_EQ(service::fts_query("-brown fox"), "((\"fox\") NOT \"brown\")");
  EXPECT_EQ(service::fts_query("the fox and me"), "((\"fox\"))");  // Synapse's stop words
  EXPECT_EQ(service::fts_query("AND ( NEAR fox*"), "((\"NEAR\" AND \"fox\"))");  // "and": a stop word
  EXPECT_FALSE(service::fts_query(""));
  EXPECT_FALSE(service::fts_query("-fox"));  // nothing left to search for
  EXPECT_FALSE(service::fts_query("\"\" _ -- or"));
}

TEST(SearchQuery, NothingAUserTypesMakesFts5Fail) {
  TempDir dir;
  storage::Database db((dir.path / "t.db").string(), 1);
  db.write([](storage::Connection& c) {
    insert_event(c, 1, "m.room.message", R"({"content":{"body":"Hello World"}})");
    storage::events::StoredEvent e;
    e.stream_ordering = 1;
    e.room_id = "!r:x";
    e.type = "m.room.message";
    e.pdu = boost::json::object{{"content", boost::json::object{{"body", "Hello World"}}}};
    storage::search::index_event(c, e);
  });
  const char* nasty[] = {"\"foo AND (", "fox)", "*", "^hello", "hello*", "NEAR(a b)", "body:hello", "a:b:c", "\"",
                         "\"\"\"", "- - -", "or or", "OR", "NOT hello", "hello NOT", "(((", "'", "\\", "\x01\x02",
                         "日本語 😀", "caf\xc3\xa9", "\xff\xfe", "a-b-c", "-", "--hello", "\"hello\" or \"\"",
                         "hello\"world", "{hello}", "hello+world", "+", "AND", "\"AND\""};
  db.read([&](storage::Connection& c) {
    for (const char* term : nasty) {
      EXPECT_NO_THROW(matches(c, term)) << term;
    }
    EXPECT_EQ(matches(c, "hello"), std::vector<int64_t>{1});
    EXPECT_EQ(matches(c, "HELLO world"), std::vector<int64_t>{1});
    EXPECT_EQ(matches(c, "NOT hello"), std::vector<int64_t>{});  // the words NOT and hello, ANDed
    EXPECT_EQ(matches(c, "hel"), std::vector<int64_t>{});       // no prefix matching
  });
}

TEST(SearchBatch, RoundTripsAndRejectsGarbage) {
  service::SearchBatch b{"recent", "room_id", "!room:example.org", 42};
  auto token = service::encode_search_batch(b);
  auto back = service::decode_search_batch(token);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->order, "recent");
  EXPECT_EQ(back->group, "room_id");
  EXPECT_EQ(back->group_key, "!room:example.org");
  EXPECT_EQ(back->cursor, 42);
  EXPECT_FALSE(service::decode_search_batch(""));
  EXPECT_FALSE(service::decode_search_batch("!!!"));
  EXPECT_FALSE(service::decode_search_batch(service::encode_search_batch({"sideways", "all", "", 1})));
  EXPECT_FALSE(service::decode_search_batch(service::encode_search_batch({"rank", "room_id", "", 1})));
  EXPECT_FALSE(service::decode_search_batch(core::base64url_encode("rank\nall\n-1\n")));
  EXPECT_FALSE(service::decode_search_batch(core::base64url_encode("rank\nall\n99999999999999999999\n")));
  EXPECT_FALSE(service::decode_search_batch(std::string(2000, 'A')));
}

TEST(SearchIndex, TheMigrationBackFillsStoredEvents) {
  TempDir dir;
  storage::sqlite::SqliteConnection c((dir.path / "t.db").string());
  const auto& steps = storage::migrations();
  const size_t step = search_step();
  ASSERT_LT(step, steps.size());
  for (size_t i = 0; i < step; ++i) c.exec(steps[i]);
  insert_event(c, 1, "m.room.message", R"({"content":{"body":"hello world"}})");
  insert_event(c, 2, "m.room.message", R"({"content":{"body":5}})");                // not a string
  insert_event(c, 3, "m.room.name", R"({"content":{"name":"Hello room"}})");
  insert_event(c, 4, "m.room.topic", R"({"content":{"topic":"hello topic"}})");
  insert_event(c, 5, "m.room.message", "not json at all");                            // unreadable row
  insert_event(c, 6, "m.room.message", R"({"content":{"body":"hello secret"}})", "$redaction");
  insert_event(c, 7, "m.room.member", R"({"content":{"body":"hello","membership":"join"}})");
  insert_event(c, 8, "m.room.message", R"({"content":{"body":"hello\u0000there"}})");
  c.exec(steps[step]);
  for (size_t i = step + 1; i < steps.size(); ++i) c.exec(steps[i]);
  EXPECT_EQ(matches(c, "hello"), (std::vector<int64_t>{8, 4, 3, 1}));
  EXPECT_EQ(matches(c, "there"), std::vector<int64_t>{8});
  auto st = c.prepare("SELECT key FROM event_search WHERE rowid = 3");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.text(0), "content.name");
  // A redaction afterwards takes the event out.
  storage::search::unindex_event(c, "$e1");
  EXPECT_EQ(matches(c, "world"), std::vector<int64_t>{});
}

TEST(SearchIndex, IndexUptoIndexesPendingEventsNotRedacted) {
  TempDir dir;
  storage::Database db((dir.path / "t.db").string(), 1);
  db.write([](storage::Connection& c) {
    EXPECT_EQ(storage::search::indexed_upto(c), 0);
    insert_event(c, 1, "m.room.message", R"({"content":{"body":"hello one"}})");
    insert_event(c, 2, "m.room.member", R"({"content":{"body":"hello","membership":"join"}})");
    insert_event(c, 3, "m.room.message", R"({"content":{"body":"hello redacted"}})", "$redaction");
    insert_event(c, 4, "m.room.topic", R"({"content":{"topic":"hello topic"}})");
    insert_event(c, 5, "m.room.message", R"({"content":{"body":"hello\u0000five"}})");
    insert_event(c, 6, "m.room.message", R"({"content":{"body":6}})");
    EXPECT_EQ(storage::search::index_upto(c, 3), 3);
    EXPECT_EQ(matches(c, "hello"), std::vector<int64_t>{1});
    EXPECT_EQ(storage::search::index_upto(c, 2), 3);  // never lowered
    EXPECT_EQ(storage::search::indexed_upto(c), 3);
    EXPECT_EQ(storage::search::index_upto(c, 10), 10);
    EXPECT_EQ(matches(c, "hello"), (std::vector<int64_t>{5, 4, 1}));
    EXPECT_EQ(matches(c, "five"), std::vector<int64_t>{5});
  });
  // The position is stored: a later connection sees it.
  EXPECT_EQ(db.read([](storage::Connection& c) { return storage::search::indexed_upto(c); }), 10);
}
