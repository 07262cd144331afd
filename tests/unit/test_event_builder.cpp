// room::build_event (src/room/event_builder.hpp): the DAG fields, auth events, the auth rules and
// the signature of a new local event, over an in-memory room the test keeps as the writer would.
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "room/event_builder.hpp"
#include "room/event_crypto.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

namespace {

namespace json = boost::json;
using namespace trestle;
using room::BuiltEvent;
using room::EventDraft;

constexpr const char* kServer = "example.org";
constexpr const char* kAlice = "@alice:example.org";
constexpr const char* kBob = "@bob:example.org";

// What the event writer keeps of a room: events by ID, current state, one forward extremity.
class MemoryRoom final : public room::RoomStateView {
public:
  std::vector<std::string> forward_extremities() override {
    ++extremity_reads;
    return extremity.empty() ? std::vector<std::string>{} : std::vector<std::string>{extremity};
  }
  std::optional<int64_t> depth_of(const std::string& id) override {
    auto it = events.find(id);
    if (it == events.end()) return std::nullopt;
    return it->second.at("depth").as_int64();
  }
  std::optional<AuthEvent> current_auth_event(const std::string& type, const std::string& key) override {
    auto it = state.find({type, key});
    if (it == state.end()) return std::nullopt;
    return AuthEvent{it->second, room::auth_fields(events.at(it->second))};
  }
  std::optional<EventOrigin> event_origin(const std::string& id) override {
    auto it = events.find(id);
    if (it == events.end()) return std::nullopt;
    return EventOrigin{std::string(it->second.at("room_id").as_string()), std::string(it->second.at("sender").as_string())};
  }
  bool room_exists(const std::string& room_id) override { return rooms.count(room_id) > 0; }

  // Stores a built event as the writer would.
  void store(const BuiltEvent& b) {
    json::object pdu = b.pdu;
    if (!pdu.contains("room_id")) pdu["room_id"] = b.room_id;
    events[b.event_id] = pdu;
    if (auto* k = b.pdu.if_contains("state_key")) state[{std::string(b.pdu.at("type").as_string()), std::string(k->as_string())}] = b.event_id;
    extremity = b.event_id;
    rooms.insert(b.room_id);
  }

  std::map<std::string, json::object> events;
  std::map<std::pair<std::string, std::string>, std::string> state;
  std::string extremity;
  std::set<std::string> rooms;
  int extremity_reads = 0;
};

class EventBuilderTest : public ::testing::Test {
protected:
  core::SigningKey key = core::SigningKey::generate("a_test");
  std::string server = kServer;
  room::Origin origin{server, key};
  MemoryRoom room;
  std::string room_id = "!room:example.org";

  BuiltEvent build(EventDraft d, const std::string& version = "10") {
    if (d.room_id.empty()) d.room_id = room_id;
    if (d.origin_server_ts == 0) d.origin_server_ts = 1700000000000;
    return room::build_event(d, room::version_for(d, version), room, origin);
  }
  BuiltEvent send(EventDraft d, const std::string& version = "10") {
    auto b = build(std::move(d), version);
    room.store(b);
    return b;
  }
  void make_room(const std::string& version = "10") {
    send({room_id, kAlice, "m.room.create", std::string(""), json::object{{"room_version", version}, {"creator", kAlice}}}, version);
    send({room_id, kAlice, "m.room.member", std::string(kAlice), json::object{{"membership", "join"}}}, version);
    send({room_id, kAlice, "m.room.power_levels", std::string(""),
          json::object{{"users", json::object{{kAlice, 100}}}, {"redact", 50}}}, version);
    send({room_id, kAlice, "m.room.join_rules", std::string(""), json::object{{"join_rule", "public"}}}, version);
  }
  static std::set<std::string> ids(const json::value& v) {
    std::set<std::string> out;
    for (const auto& e : v.as_array()) out.insert(std::string(e.as_string()));
    return out;
  }
};

TEST_F(EventBuilderTest, CreateEventStartsTheDag) {
  auto b = send({room_id, kAlice, "m.room.create", std::string(""), json::object{{"room_version", "10"}, {"creator", kAlice}}});
  EXPECT_EQ(b.depth, 1);
  EXPECT_TRUE(b.pdu.at("prev_events").as_array().empty());
  EXPECT_TRUE(b.pdu.at("auth_events").as_array().empty());
  EXPECT_EQ(b.room_id, room_id);
  // Signed by us, and the ID is the reference hash of what was signed.
  EXPECT_TRUE(b.pdu.at("signatures").as_object().contains(kServer));
  EXPECT_EQ(b.event_id, room::compute_event_id(b.pdu, *room::find_room_version("10")));
}

TEST_F(EventBuilderTest, MessageFollowsTheExtremityWithItsAuthEvents) {
  make_room();
  const std::string before = room.extremity;
  auto b = send({room_id, kAlice, "m.room.message", std::nullopt, json::object{{"body", "hi"}, {"msgtype", "m.text"}}});
  EXPECT_EQ(ids(b.pdu.at("prev_events")), std::set<std::string>{before});
  EXPECT_EQ(b.depth, 5);
  EXPECT_EQ(b.pdu.at("depth").as_int64(), 5);
  // create, power levels, the sender's membership: not the join rules.
  EXPECT_EQ(ids(b.pdu.at("auth_events")),
            (std::set<std::string>{room.state.at({"m.room.create", ""}), room.state.at({"m.room.power_levels", ""}),
                                   room.state.at({"m.room.member", kAlice})}));
}

TEST_F(EventBuilderTest, TheAuthRulesRefuseANonMember) {
  make_room();
  try {
    build({room_id, kBob, "m.room.message", std::nullopt, json::object{{"body", "hi"}}});
    FAIL() << "a non-member's message was built";
  } catch (const MatrixError& e) {
    EXPECT_EQ(e.status(), 403);
  }
  // A join is allowed by the public join rule, and names it among its auth events.
  auto join = build({room_id, kBob, "m.room.member", std::string(kBob), json::object{{"membership", "join"}}});
  EXPECT_TRUE(ids(join.pdu.at("auth_events")).count(room.state.at({"m.room.join_rules", ""})));
}

TEST_F(EventBuilderTest, RedactingAnothersEventNeedsTheRedactLevel) {
  make_room();
  send({room_id, kBob, "m.room.member", std::string(kBob), json::object{{"membership", "join"}}});
  auto msg = send({room_id, kAlice, "m.room.message", std::nullopt, json::object{{"body", "x"}}});
  EventDraft redaction{room_id, kBob, "m.room.redaction", std::nullopt, json::object{}, msg.event_id};
  EXPECT_THROW(build(redaction), MatrixError);
  // Their own event they may redact.
  auto own = send({room_id, kBob, "m.room.message", std::nullopt, json::object{{"body", "y"}}});
  redaction.redacts = own.event_id;
  EXPECT_NO_THROW(build(redaction));
  // And the room's admin may redact anyone's.
  redaction.sender = kAlice;
  EXPECT_NO_THROW(build(redaction));
}

TEST_F(EventBuilderTest, BadDraftsGetTheSpecsErrors) {
  make_room();
  auto status_of = [&](EventDraft d) {
    try {
      build(std::move(d));
    } catch (const MatrixError& e) {
      return e.status();
    }
    return 200;
  };
  EXPECT_EQ(status_of({room_id, kAlice, std::string(256, 't'), std::nullopt, json::object{}}), 413);
  EXPECT_EQ(status_of({room_id, kAlice, "m.room.topic", std::string(256, 'k'), json::object{}}), 413);
  EXPECT_EQ(status_of({room_id, kAlice, "m.room.tombstone", std::string(""), json::object{{"replacement_room", room_id}}}), 400);
  EXPECT_EQ(status_of({room_id, kAlice, "m.room.message", std::nullopt, json::object{{"n", 1.5}}}), 400);
  EXPECT_EQ(status_of({room_id, kAlice, "m.room.message", std::nullopt, json::object{{"body", "ok"}}}), 200);
}

TEST_F(EventBuilderTest, V12CreateNamesTheRoomAndMovesOnFromATakenId) {
  EventDraft create{"", kAlice, "m.room.create", std::string(""), json::object{{"room_version", "12"}}};
  create.origin_server_ts = 1750000000000;
  const auto& v12 = room::version_for(create, "");
  auto first = room::build_event(create, v12, room, origin);
  EXPECT_FALSE(first.pdu.contains("room_id"));
  EXPECT_EQ(first.room_id, "!" + first.event_id.substr(1));
  room.store(first);
  // The same create event again would name the same room: its timestamp moves on instead.
  room.extremity.clear();
  auto second = room::build_event(create, v12, room, origin);
  EXPECT_NE(second.room_id, first.room_id);
  EXPECT_EQ(second.pdu.at("origin_server_ts").as_int64(), 1750000000001);
}

TEST_F(EventBuilderTest, UnknownRoomVersionIsRefused) {
  EventDraft create{room_id, kAlice, "m.room.create", std::string(""), json::object{{"room_version", "999"}}};
  try {
    room::version_for(create, "10");
    FAIL() << "an unknown room version was accepted";
  } catch (const MatrixError& e) {
    EXPECT_EQ(e.errcode(), "M_UNSUPPORTED_ROOM_VERSION");
  }
}

}  // namespace
