// The adapter from the sync services' SyncResult to the transport's Reply: a body is a 200 JSON
// answer; a wait becomes a LongPoll with the same keys, position, deadline and owner, whose poll
// resumes the service (again and again, until it answers).
#include "api/client/long_poll_reply.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

using namespace trestle;

namespace {

TEST(LongPollReply, ABodyIsA200JsonAnswer) {
  auto reply = api::to_reply(service::SyncResult(boost::json::object{{"next_batch", "s1"}}));
  auto* r = std::get_if<http::Response>(&reply);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(boost::json::parse(r->body).as_object().at("next_batch").as_string(), "s1");
}

TEST(LongPollReply, AWaitIsALongPollThatResumesTheService) {
  int calls = 0;
  std::vector<bool> reached;
  std::function<service::SyncResult(bool)> resume;
  resume = [&](bool deadline_reached) -> service::SyncResult {
    ++calls;
    reached.push_back(deadline_reached);
    if (calls == 1) {  // nothing yet: wait again
      service::SyncWait again;
      again.wake_keys = {"!r:x"};
      again.notifier_position = 9;
      again.deadline_ms = 1234;
      again.owner = "@u:x";
      again.resume = resume;
      return again;
    }
    return boost::json::object{{"n", calls}};
  };
  service::SyncWait wait;
  wait.wake_keys = {"@u:x", "!r:x"};
  wait.notifier_position = 7;
  wait.deadline_ms = 1234;
  wait.owner = "@u:x";
  wait.resume = resume;
  auto reply = api::to_reply(std::move(wait));
  auto* lp = std::get_if<http::LongPoll>(&reply);
  ASSERT_NE(lp, nullptr);
  EXPECT_EQ(lp->wake_keys, (std::vector<std::string>{"@u:x", "!r:x"}));
  EXPECT_EQ(lp->notifier_position, 7u);
  EXPECT_EQ(lp->deadline_ms, 1234);
  EXPECT_EQ(lp->owner, "@u:x");

  auto second = lp->poll(false);
  auto* lp2 = std::get_if<http::LongPoll>(&second);
  ASSERT_NE(lp2, nullptr);
  EXPECT_EQ(lp2->notifier_position, 9u);
  auto third = lp2->poll(true);
  auto* r = std::get_if<http::Response>(&third);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(boost::json::parse(r->body).as_object().at("n").as_int64(), 2);
  EXPECT_EQ(reached, (std::vector<bool>{false, true}));
}

}  // namespace
