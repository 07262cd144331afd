// Pure service logic: the notifier's wake-up rules, rate limits, event filters, push rule editing
// and stream tokens.
#include "core/error.hpp"
#include "service/filter.hpp"
#include "service/notifier.hpp"
#include "service/push/push_rules.hpp"
#include "service/push/rule_editing.hpp"
#include "service/rate_limiter.hpp"
#include "service/stream_token.hpp"
#include "service/sync.hpp"

#include <memory>
#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

using namespace trestle;
using boost::json::object;

namespace {

object parse(const char* text) { return boost::json::parse(text).as_object(); }

TEST(Notifier, WakesOnlyWaitersOfTheNotifiedKeys) {
  service::Notifier n;
  int room_woken = 0, other_woken = 0;
  auto since = n.position();
  n.wait({"!room:x", "@u:x"}, since, [&] { ++room_woken; });
  n.wait({"!other:x"}, since, [&] { ++other_woken; });
  EXPECT_EQ(n.waiter_count(), 2u);
  n.notify({"!room:x"});
  EXPECT_EQ(room_woken, 1);
  EXPECT_EQ(other_woken, 0);
  EXPECT_EQ(n.waiter_count(), 1u);
  n.notify({"!room:x"});  // a waiter fires once
  EXPECT_EQ(room_woken, 1);
}

TEST(Notifier, DroppedWaitersAreReleasedAndNeverCalled) {
  service::Notifier n;
  int woken = 0;
  auto held = std::make_shared<int>(1);  // stands for the timer a long-poll's callback holds
  std::weak_ptr<int> watch = held;
  n.wait({"!room:x"}, n.position(), [&woken, held] { ++woken; });
  held.reset();
  EXPECT_FALSE(watch.expired());
  n.drop_waiters();
  EXPECT_TRUE(watch.expired());  // the callback and what it holds are gone
  EXPECT_EQ(n.waiter_count(), 0u);
  n.notify({"!room:x"});
  EXPECT_EQ(woken, 0);
  // A new waiter after the drop works as before.
  n.wait({"!room:x"}, n.position(), [&woken] { ++woken; });
  n.notify({"!room:x"});
  EXPECT_EQ(woken, 1);
}

TEST(Notifier, AChangeBetweenReadAndWaitFiresAtOnce) {
  service::Notifier n;
  auto since = n.position();  // taken before computing an (empty) answer
  n.notify({"@u:x"});         // something commits meanwhile
  bool woken = false;
  auto id = n.wait({"@u:x"}, since, [&] { woken = true; });
  EXPECT_TRUE(woken);
  EXPECT_EQ(id, 0u);
  EXPECT_EQ(n.waiter_count(), 0u);
}

TEST(Notifier, CancelledWaitersAreNotCalledAndGlobalListenersSeeEverything) {
  service::Notifier n;
  bool woken = false;
  int global = 0;
  n.add_global_listener([&] { ++global; });
  auto id = n.wait({"!room:x"}, n.position(), [&] { woken = true; });
  n.cancel(id);
  n.notify({"!room:x"});
  n.notify({"@someone:x"});
  EXPECT_FALSE(woken);
  EXPECT_EQ(global, 2);
}

TEST(Notifier, ManyThreadsNeverLoseAWakeUp) {
  service::Notifier n;
  std::atomic<int> woken{0};
  constexpr int kWaiters = 200;
  std::vector<std::thread> threads;
  for (int i = 0; i < kWaiters; ++i) {
    threads.emplace_back([&] { n.wait({"!room:x"}, n.position(), [&] { ++woken; }); });
  }
  for (auto& t : threads) t.join();
  n.notify({"!room:x"});
  EXPECT_EQ(woken.load(), kWaiters);
}

TEST(RateLimiter, AllowsTheBurstThenAnswers429WithRetryAfter) {
  service::RateLimiter limiter(config::RateLimit{0.5, 3});
  for (int i = 0; i < 3; ++i) EXPECT_NO_THROW(limiter.take("@u:x"));
  try {
    limiter.take("@u:x");
    FAIL() << "the fourth action within the burst was allowed";
  } catch (const MatrixError& e) {
    EXPECT_EQ(e.status(), 429);
    EXPECT_EQ(e.errcode(), "M_LIMIT_EXCEEDED");
    auto retry = e.extra().at("retry_after_ms").as_int64();
    EXPECT_GT(retry, 0);
    EXPECT_LE(retry, 2000);
  }
  EXPECT_NO_THROW(limiter.take("@other:x"));  // buckets are per key
}

TEST(RateLimiter, ZeroRateDisablesIt) {
  service::RateLimiter limiter(config::RateLimit{0, 0});
  for (int i = 0; i < 1000; ++i) EXPECT_NO_THROW(limiter.take("k"));
}

TEST(EventFilter, TypesWithWildcardsSendersAndRooms) {
  auto f = parse(R"({"types": ["m.room.*"], "not_types": ["m.room.member"], "not_senders": ["@spam:x"],
                     "rooms": ["!a:x"]})");
  EXPECT_TRUE(service::event_matches(f, "m.room.message", "@u:x", "!a:x", {}));
  EXPECT_FALSE(service::event_matches(f, "m.room.member", "@u:x", "!a:x", {}));
  EXPECT_FALSE(service::event_matches(f, "org.example", "@u:x", "!a:x", {}));
  EXPECT_FALSE(service::event_matches(f, "m.room.message", "@spam:x", "!a:x", {}));
  EXPECT_FALSE(service::event_matches(f, "m.room.message", "@u:x", "!b:x", {}));
  EXPECT_TRUE(service::event_matches(parse(R"({"types": ["*"]})"), "anything.at.all", "@u:x", "", {}));
}

TEST(EventFilter, ContainsUrlAndLimits) {
  auto with_url = parse(R"({"contains_url": true, "limit": 5})");
  EXPECT_TRUE(service::event_matches(with_url, "m.room.message", "@u:x", "", parse(R"({"url": "mxc://x/y"})")));
  EXPECT_FALSE(service::event_matches(with_url, "m.room.message", "@u:x", "", parse(R"({"body": "hi"})")));
  EXPECT_EQ(service::filter_limit(with_url, 10), 5);
  EXPECT_EQ(service::filter_limit(parse(R"({"limit": -3})"), 10), 10);
}

TEST(EventFilter, ValidationRejectsWrongTypes) {
  EXPECT_THROW(service::validate_filter(parse(R"({"room": {"timeline": {"types": "m.room.message"}}})")), MatrixError);
  EXPECT_THROW(service::validate_filter(parse(R"({"event_format": "xml"})")), MatrixError);
  EXPECT_NO_THROW(service::validate_filter(parse(R"({"room": {"timeline": {"limit": 1}}})")));
}

TEST(PushRuleEditing, UserRulesGoBeforeDefaultsAndRespectBeforeAfter) {
  auto rules = service::push::default_ruleset("@u:x");
  service::push::put_rule(rules, "override", "mine", parse(R"({"actions": ["notify"], "conditions": []})"), {}, {});
  EXPECT_EQ(rules["override"].as_array().front().as_object().at("rule_id").as_string(), "mine");
  service::push::put_rule(rules, "override", "second", parse(R"({"actions": []})"), std::nullopt, std::string("mine"));
  EXPECT_EQ(rules["override"].as_array().at(1).as_object().at("rule_id").as_string(), "second");
  service::push::put_rule(rules, "content", "words", parse(R"({"actions": ["notify"], "pattern": "cake"})"), {}, {});
  EXPECT_EQ(service::push::find_rule(rules, "content", "words").at("pattern").as_string(), "cake");
  service::push::delete_rule(rules, "override", "mine");
  EXPECT_THROW(service::push::find_rule(rules, "override", "mine"), MatrixError);
}

TEST(PushRuleEditing, DefaultRulesAndBadInputAreRefused) {
  auto rules = service::push::default_ruleset("@u:x");
  EXPECT_THROW(service::push::delete_rule(rules, "override", ".m.rule.master"), MatrixError);
  EXPECT_THROW(service::push::put_rule(rules, "override", ".m.rule.mine", parse(R"({"actions": []})"), {}, {}),
               MatrixError);
  EXPECT_THROW(service::push::put_rule(rules, "override", "x", parse(R"({})"), {}, {}), MatrixError);
  EXPECT_THROW(service::push::put_rule(rules, "content", "x", parse(R"({"actions": []})"), {}, {}), MatrixError);
  EXPECT_THROW(service::push::put_rule(rules, "sideways", "x", parse(R"({"actions": []})"), {}, {}), MatrixError);
  EXPECT_THROW(service::push::put_rule(rules, "override", "x", parse(R"({"actions": []})"), std::string("nope"), {}),
               MatrixError);
}

TEST(StreamTokens, ParseAndRejectMalformed) {
  EXPECT_EQ(service::parse_stream_token("s42"), 42);
  EXPECT_EQ(service::parse_stream_token("s42_7"), 42);
  auto t = service::SyncToken::parse("s42_7");
  EXPECT_EQ(t.position, 42);
  EXPECT_EQ(t.typing, 7u);
  EXPECT_EQ(t.to_device, 42);  // a token from before to-device paging: everything handed out
  EXPECT_EQ(t.str(), "s42_7_42");
  auto paged = service::SyncToken::parse("s42_7_30");
  EXPECT_EQ(paged.position, 42);
  EXPECT_EQ(paged.typing, 7u);
  EXPECT_EQ(paged.to_device, 30);
  EXPECT_EQ(paged.str(), "s42_7_30");
  EXPECT_EQ(service::SyncToken::parse("s42_7_99").to_device, 42);  // never past the position
  EXPECT_EQ(service::parse_stream_token("s42_7_30"), 42);         // /messages accepts sync tokens
  auto with_presence = service::SyncToken::parse("s42_7_30_5");  // the presence serial (task pushpres)
  EXPECT_EQ(with_presence.to_device, 30);
  EXPECT_EQ(with_presence.presence, std::optional<uint64_t>(5));
  EXPECT_EQ(with_presence.str(), "s42_7_30_5");
  EXPECT_FALSE(paged.presence.has_value());
  for (const char* bad : {"s42_", "s42_x", "s42_7_", "s42_7_x", "s42_7_3_4_5", "s42_7_3_", "s42_7_3_x", "s42__3"}) {
    EXPECT_THROW(service::SyncToken::parse(bad), MatrixError) << bad;
  }
  for (const char* bad : {"", "s", "t42", "s-1", "s4x", "s99999999999999999999"}) {
    EXPECT_THROW(service::parse_stream_token(bad), MatrixError) << bad;
  }
}

}  // namespace
