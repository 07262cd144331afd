// Pure thread logic for threaded receipts and per-thread counts (task threadrx): reading an
// event's relation from its content, and which receipt reads an event of a given thread.
#include "service/threads.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

using namespace trestle::service;
using boost::json::object;

namespace {

object parse(const char* text) { return boost::json::parse(text).as_object(); }

TEST(Threads, RelationOfAThreadReply) {
  auto rel = threads::relation_of(parse(
      R"({"body": "x", "m.relates_to": {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": true}})"));
  ASSERT_TRUE(rel);
  EXPECT_EQ(rel->rel_type, "m.thread");
  EXPECT_EQ(rel->event_id, "$root");
}

TEST(Threads, NoRelationWithoutBothStrings) {
  EXPECT_FALSE(threads::relation_of(parse(R"({"body": "plain"})")));
  EXPECT_FALSE(threads::relation_of(parse(R"({"m.relates_to": "nope"})")));
  EXPECT_FALSE(threads::relation_of(parse(R"({"m.relates_to": {"rel_type": "m.thread"}})")));
  EXPECT_FALSE(threads::relation_of(parse(R"({"m.relates_to": {"rel_type": "m.thread", "event_id": 5}})")));
  EXPECT_FALSE(threads::relation_of(parse(R"({"m.relates_to": {"rel_type": "m.thread", "event_id": ""}})")));
  // A rich reply alone (m.in_reply_to, no rel_type) is not a relation that makes a thread.
  EXPECT_FALSE(threads::relation_of(parse(R"({"m.relates_to": {"m.in_reply_to": {"event_id": "$a"}}})")));
}

TEST(Threads, OtherRelationsAreReturnedForTheCallerToFollow) {
  auto rel = threads::relation_of(parse(R"({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$r", "key": "+"}})"));
  ASSERT_TRUE(rel);
  EXPECT_EQ(rel->rel_type, "m.annotation");
}

TEST(Threads, EffectiveReadPositionIsTheLaterOfUnthreadedAndThreaded) {
  threads::ReadPositions read;
  read.unthreaded = 10;
  read.thread["main"] = 5;
  read.thread["$root"] = 20;
  EXPECT_EQ(read.effective("main"), 10);   // an older main receipt: the unthreaded one wins
  EXPECT_EQ(read.effective("$root"), 20);  // a later thread receipt reads further in its thread
  EXPECT_EQ(read.effective("$other"), 10); // a thread without a receipt: the unthreaded one
  EXPECT_EQ(threads::ReadPositions{}.effective("main"), 0);
}

}  // namespace
