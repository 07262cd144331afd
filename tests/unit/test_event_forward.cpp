// Several event writers: the replication call that carries an event to its room's writer
// (service/event_forwarder.hpp). Its wire form round-trips every field the callers use, optional
// fields included, and the writer's errors come back as the MatrixError they were.
#include "core/error.hpp"
#include "service/event_forwarder.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

using namespace trestle;
using service::ClientTxn;
using service::NewEvent;
namespace replication = service::replication;

namespace {

// Through the bytes, as the writer receives it.
boost::json::object over_the_wire(const boost::json::object& o) {
  return boost::json::parse(boost::json::serialize(o)).as_object();
}

}  // namespace

TEST(EventForward, NewEventAndTxnRoundTrip) {
  NewEvent e{"!r:x", "@a:x", "m.room.member", std::string("@a:x"), {{"membership", "join"}, {"displayname", "A"}},
             std::string("$target"), int64_t{1700000000123}, std::string("t1"), std::string("DEV")};
  ClientTxn txn{"@a:x", "DEV", service::txn_key({"send", "!r:x", "m.room.message", "t1"})};
  auto got = replication::parse_send_request(over_the_wire(replication::send_request(e, txn)));
  EXPECT_EQ(got.event.room_id, e.room_id);
  EXPECT_EQ(got.event.sender, e.sender);
  EXPECT_EQ(got.event.type, e.type);
  EXPECT_EQ(got.event.state_key, e.state_key);
  EXPECT_EQ(got.event.content, e.content);
  EXPECT_EQ(got.event.redacts, e.redacts);
  EXPECT_EQ(got.event.origin_server_ts, e.origin_server_ts);
  EXPECT_EQ(got.event.txn_id, e.txn_id);
  EXPECT_EQ(got.event.txn_device_id, e.txn_device_id);
  ASSERT_TRUE(got.txn);
  EXPECT_EQ(got.txn->user_id, txn.user_id);
  EXPECT_EQ(got.txn->device_id, txn.device_id);
  EXPECT_EQ(got.txn->key, txn.key);

  // Unset optionals stay unset (a message is not a state event with an empty key), no txn: send().
  NewEvent m{"!r:x", "@a:x", "m.room.message", std::nullopt, {{"body", "hi"}}, std::nullopt, std::nullopt,
             std::nullopt, std::nullopt};
  auto plain = replication::parse_send_request(over_the_wire(replication::send_request(m, std::nullopt)));
  EXPECT_FALSE(plain.event.state_key);
  EXPECT_FALSE(plain.event.redacts);
  EXPECT_FALSE(plain.event.origin_server_ts);
  EXPECT_FALSE(plain.event.txn_id);
  EXPECT_FALSE(plain.txn);
  // An empty state key is a state key.
  m.state_key = "";
  EXPECT_EQ(replication::parse_send_request(over_the_wire(replication::send_request(m, std::nullopt))).event.state_key,
            std::optional<std::string>(""));
}

TEST(EventForward, StoredEventRoundTrip) {
  storage::events::StoredEvent e;
  e.stream_ordering = 4242;
  e.event_id = "$abc";
  e.room_id = "!r:x";
  e.type = "m.room.name";
  e.state_key = "";
  e.sender = "@a:x";
  e.origin_server_ts = 1700000000999;
  e.depth = 17;
  e.pdu = {{"type", "m.room.name"}, {"content", {{"name", "N"}}}, {"unsigned", {{"replaces_state", "$old"}}}};
  e.replaces_state = "$old";
  e.txn_id = "t9";
  e.txn_device_id = "DEV";
  for (bool created : {true, false}) {
    auto got = replication::parse_send_answer(over_the_wire(replication::send_answer({e, created})));
    EXPECT_EQ(got.created, created);
    EXPECT_EQ(got.event.stream_ordering, e.stream_ordering);
    EXPECT_EQ(got.event.event_id, e.event_id);
    EXPECT_EQ(got.event.room_id, e.room_id);
    EXPECT_EQ(got.event.type, e.type);
    EXPECT_EQ(got.event.state_key, e.state_key);
    EXPECT_EQ(got.event.sender, e.sender);
    EXPECT_EQ(got.event.origin_server_ts, e.origin_server_ts);
    EXPECT_EQ(got.event.depth, e.depth);
    EXPECT_EQ(got.event.pdu, e.pdu);
    EXPECT_EQ(got.event.replaces_state, e.replaces_state);
    EXPECT_FALSE(got.event.redacted_by);
    EXPECT_EQ(got.event.txn_id, e.txn_id);
    EXPECT_EQ(got.event.txn_device_id, e.txn_device_id);
  }
}

TEST(EventForward, MalformedMessagesAre400) {
  auto status_of = [](const char* json, bool answer) {
    try {
      auto o = boost::json::parse(json).as_object();
      if (answer) replication::parse_send_answer(o);
      else replication::parse_send_request(o);
    } catch (const MatrixError& e) {
      EXPECT_EQ(e.errcode(), "M_BAD_JSON");
      return e.status();
    }
    return 200;
  };
  EXPECT_EQ(status_of(R"({})", false), 400);
  EXPECT_EQ(status_of(R"({"event": {"room_id": "!r:x", "sender": "@a:x", "type": "t"}})", false), 400);  // no content
  EXPECT_EQ(status_of(R"({"event": {"room_id": 1, "sender": "@a:x", "type": "t", "content": {}}})", false), 400);
  EXPECT_EQ(status_of(R"({"event": {"room_id": "!r:x", "sender": "@a:x", "type": "t", "content": {}}, "txn": 3})", false), 400);
  EXPECT_EQ(status_of(R"({"event": {"room_id": "!r:x", "sender": "@a:x", "type": "t", "content": {}}})", false), 200);
  EXPECT_EQ(status_of(R"({"event": {}, "created": true})", true), 400);
  EXPECT_EQ(status_of(R"({"created": "yes"})", true), 400);
}

TEST(EventForward, TheWritersErrorComesBackAsItWas) {
  auto e = replication::error_of_answer(
      429, R"({"errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests", "retry_after_ms": 500})");
  EXPECT_EQ(e.status(), 429);
  EXPECT_EQ(e.errcode(), "M_LIMIT_EXCEEDED");
  EXPECT_STREQ(e.what(), "Too many requests");
  EXPECT_EQ(e.extra(), (boost::json::object{{"retry_after_ms", 500}}));
  auto forbidden = replication::error_of_answer(403, R"({"errcode": "M_FORBIDDEN", "error": "not in room"})");
  EXPECT_EQ(forbidden.status(), 403);
  EXPECT_EQ(forbidden.errcode(), "M_FORBIDDEN");
  EXPECT_TRUE(forbidden.extra().empty());
  // Not our JSON (a proxy's HTML page, say): the status with M_UNKNOWN.
  auto html = replication::error_of_answer(502, "<html>Bad Gateway</html>");
  EXPECT_EQ(html.status(), 502);
  EXPECT_EQ(html.errcode(), "M_UNKNOWN");
}
