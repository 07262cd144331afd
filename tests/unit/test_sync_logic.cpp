// Pure sync logic: filter validation of IDs and booleans, timeline limit 0, and the per-device
// record of lazy-loaded member events.
#include "core/error.hpp"
#include "service/filter.hpp"
#include "service/sync.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

using namespace trestle;
using boost::json::object;

namespace {

object parse(const char* text) { return boost::json::parse(text).as_object(); }

TEST(SyncFilter, IdListsMustHoldIdsOfTheirKind) {
  EXPECT_THROW(service::validate_filter(parse(R"({"room": {"timeline": {"rooms": ["not_a_room_id"]}}})")), MatrixError);
  EXPECT_THROW(service::validate_filter(parse(R"({"room": {"not_rooms": ["#alias:x"]}})")), MatrixError);
  EXPECT_THROW(service::validate_filter(parse(R"({"room": {"state": {"senders": ["not_a_sender_id"]}}})")), MatrixError);
  EXPECT_THROW(service::validate_filter(parse(R"({"presence": {"not_senders": ["@nocolon"]}})")), MatrixError);
  EXPECT_NO_THROW(service::validate_filter(
      parse(R"({"room": {"rooms": ["!r:x"], "timeline": {"senders": ["@u:x"], "not_rooms": ["!s:y"]}}})")));
}

TEST(SyncFilter, FlagsMustBeBooleans) {
  EXPECT_THROW(service::validate_filter(parse(R"({"room": {"state": {"lazy_load_members": "true"}}})")), MatrixError);
  EXPECT_THROW(service::validate_filter(parse(R"({"room": {"state": {"include_redundant_members": 1}}})")), MatrixError);
  EXPECT_THROW(service::validate_filter(parse(R"({"room": {"include_leave": "yes"}})")), MatrixError);
  EXPECT_NO_THROW(service::validate_filter(parse(R"({"room": {"state": {"lazy_load_members": true}}})")));
}

TEST(SyncFilter, LimitZeroMeansNoEvents) {
  EXPECT_EQ(service::filter_limit(parse(R"({"limit": 0})"), 10), 0);
  EXPECT_EQ(service::filter_limit(parse(R"({})"), 10), 10);
}

TEST(SentMembers, RemembersPerDeviceUntilReset) {
  service::SentMembers sent;
  sent.record("@a:x|D1", {{"!r:x|@b:x", "$m1"}});
  EXPECT_TRUE(sent.was_sent("@a:x|D1", "!r:x|@b:x", "$m1"));
  EXPECT_FALSE(sent.was_sent("@a:x|D1", "!r:x|@b:x", "$m2"));  // a newer member event is new
  EXPECT_FALSE(sent.was_sent("@a:x|D2", "!r:x|@b:x", "$m1"));  // another device was not sent it
  sent.reset("@a:x|D1");
  EXPECT_FALSE(sent.was_sent("@a:x|D1", "!r:x|@b:x", "$m1"));
}

}  // namespace
