// Room version 12 (spec: content/rooms/v12.md; MSC4289 privileged creators, MSC4291 room IDs as
// the create event's ID): the auth rules that differ from v11, and the room ID derivation.
#include "room/auth_rules.hpp"
#include "room/event_crypto.hpp"
#include "room/room_version.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <optional>
#include <string>

namespace {

namespace json = boost::json;
using trestle::room::auth_event_keys;
using trestle::room::check_event_auth;
using trestle::room::compute_event_id;
using trestle::room::find_room_version;
using trestle::room::RoomVersion;
using trestle::room::StateMap;
using trestle::room::user_power_level;

constexpr const char* kAlice = "@alice:example.org";  // the create event's sender
constexpr const char* kBob = "@bob:example.org";      // an additional creator
constexpr const char* kCarol = "@carol:example.org";  // a moderator (level 100 in `users`)
constexpr const char* kDave = "@dave:example.org";    // a plain member

const RoomVersion& v12() { return *find_room_version("12"); }

// A v12 room built event by event, as the homeserver builds it: the create event has no room_id
// and names the room; later events carry that room ID and never cite the create event.
class V12Room {
 public:
  explicit V12Room(json::array additional_creators = {}) {
    json::object content{{"room_version", "12"}};
    if (!additional_creators.empty()) content["additional_creators"] = std::move(additional_creators);
    create_ = json::object{{"type", "m.room.create"},  {"state_key", ""},      {"sender", kAlice},
                           {"content", content},       {"prev_events", json::array{}},
                           {"auth_events", json::array{}}, {"depth", 1}, {"origin_server_ts", 1750000000000}};
    create_id_ = compute_event_id(create_, v12());
    room_id_ = "!" + create_id_.substr(1);
    EXPECT_FALSE(check_event_auth(create_, {}, v12()));
    json::object in_state = create_;
    in_state["event_id"] = create_id_;  // what the server adds when it reads its state
    state_[{"m.room.create", ""}] = in_state;
    last_ = create_id_;
  }

  const std::string& room_id() const { return room_id_; }
  StateMap& state() { return state_; }

  json::object event(const std::string& type, const std::string& sender, json::object content,
                     std::optional<std::string> state_key = std::nullopt) {
    json::object ev{{"type", type}, {"sender", sender}, {"room_id", room_id_}, {"content", std::move(content)},
                    {"prev_events", json::array{json::value(last_)}}, {"auth_events", json::array{}},
                    {"depth", ++depth_}, {"origin_server_ts", 1750000000000 + depth_}};
    if (state_key) ev["state_key"] = *state_key;
    return ev;
  }
  json::object member(const std::string& sender, const std::string& target, const std::string& membership) {
    return event("m.room.member", sender, json::object{{"membership", membership}}, target);
  }
  json::object power_levels(const std::string& sender, json::object users) {
    return event("m.room.power_levels", sender,
                 json::object{{"users", std::move(users)}, {"state_default", 50}, {"kick", 50}, {"ban", 50},
                              {"events", json::object{{"m.room.tombstone", 150}}}},
                 "");
  }

  std::optional<std::string> check(const json::object& ev) const { return check_event_auth(ev, state_, v12()); }
  std::optional<std::string> send(const json::object& ev) {
    auto rejection = check(ev);
    if (!rejection) {
      last_ = "$" + std::to_string(depth_);
      state_[{std::string(ev.at("type").as_string()), std::string(ev.at("state_key").as_string())}] = ev;
    }
    return rejection;
  }
  void must_send(const json::object& ev) {
    auto rejection = send(ev);
    ASSERT_FALSE(rejection) << *rejection << " for " << json::serialize(ev);
  }

  // Create, alice joins, power levels (carol 100), public join rule, bob/carol/dave join.
  void set_up() {
    must_send(member(kAlice, kAlice, "join"));
    must_send(power_levels(kAlice, json::object{{kCarol, 100}}));
    must_send(event("m.room.join_rules", kAlice, json::object{{"join_rule", "public"}}, ""));
    for (const char* user : {kBob, kCarol, kDave}) must_send(member(user, user, "join"));
  }

 private:
  json::object create_;
  std::string create_id_;
  std::string room_id_;
  std::string last_;
  StateMap state_;
  int depth_ = 1;
};

TEST(RoomV12, VersionTable) {
  const RoomVersion* version = find_room_version("12");
  ASSERT_NE(version, nullptr);
  EXPECT_TRUE(version->privileged_creators);
  EXPECT_TRUE(version->room_id_is_create_event_id);
  EXPECT_TRUE(version->v11_redaction_and_create);
  EXPECT_TRUE(version->integer_power_levels_only);
  EXPECT_FALSE(find_room_version("11")->privileged_creators);
  EXPECT_FALSE(find_room_version("11")->room_id_is_create_event_id);
}

// MSC4291: "!" + the create event's ID without its "$": unpadded URL-safe base64 of the
// reference hash, 43 characters, no domain.
TEST(RoomV12, RoomIdIsTheCreateEventsReferenceHash) {
  V12Room room;
  const std::string& id = room.room_id();
  ASSERT_EQ(id.size(), 44u);
  EXPECT_EQ(id.front(), '!');
  EXPECT_EQ(id.find(':'), std::string::npos);
  EXPECT_EQ(id.find_first_of("+/="), std::string::npos);
  // Any change to the create event names another room.
  V12Room other(json::array{json::value(kBob)});
  EXPECT_NE(other.room_id(), id);
}

TEST(RoomV12, CreateEventMustNotHaveARoomId) {
  json::object create{{"type", "m.room.create"}, {"state_key", ""}, {"sender", kAlice},
                      {"content", json::object{{"room_version", "12"}}}, {"prev_events", json::array{}},
                      {"auth_events", json::array{}}};
  EXPECT_FALSE(check_event_auth(create, {}, v12()));
  create["room_id"] = "!abc:example.org";
  EXPECT_TRUE(check_event_auth(create, {}, v12()));
  // In v11 the create event needs a room ID on its sender's server.
  EXPECT_FALSE(check_event_auth(create, {}, *find_room_version("11")));
}

TEST(RoomV12, AdditionalCreatorsMustBeUserIds) {
  auto with = [](json::value additional) {
    json::object create{{"type", "m.room.create"}, {"state_key", ""}, {"sender", kAlice},
                        {"content", json::object{{"room_version", "12"}, {"additional_creators", additional}}},
                        {"prev_events", json::array{}}, {"auth_events", json::array{}}};
    return check_event_auth(create, {}, v12());
  };
  EXPECT_FALSE(with(json::array{}));
  EXPECT_FALSE(with(json::array{json::value(kBob), json::value("@x:remote.org")}));
  EXPECT_TRUE(with("@bob:example.org"));
  EXPECT_TRUE(with(json::array{json::value(5)}));
  EXPECT_TRUE(with(json::array{json::value("bob")}));
  EXPECT_TRUE(with(json::array{json::value("@bob")}));
}

TEST(RoomV12, RoomIdMustBeTheCreateEventsId) {
  V12Room room;
  auto join = room.member(kAlice, kAlice, "join");
  join["room_id"] = "!someotherroom:example.org";
  EXPECT_TRUE(room.check(join));
  join["room_id"] = room.room_id();
  EXPECT_FALSE(room.check(join));
  // Without the create event's ID the room ID cannot be checked: rejected.
  room.state()[{"m.room.create", ""}].erase("event_id");
  EXPECT_TRUE(room.check(join));
}

TEST(RoomV12, CreateEventIsNeededButNeverAnAuthEventKeyOfItself) {
  V12Room room;
  auto keys = auth_event_keys(room.member(kAlice, kAlice, "join"));
  // The rules read m.room.create; the server leaves it out of auth_events (rooms.cpp).
  EXPECT_NE(std::find(keys.begin(), keys.end(), std::make_pair(std::string("m.room.create"), std::string())),
            keys.end());
}

TEST(RoomV12, CreatorsHaveInfinitePower) {
  V12Room room(json::array{json::value(kBob)});
  room.set_up();
  EXPECT_EQ(user_power_level(room.state(), kAlice, v12()), LLONG_MAX);
  EXPECT_EQ(user_power_level(room.state(), kBob, v12()), LLONG_MAX);
  EXPECT_EQ(user_power_level(room.state(), kCarol, v12()), 100);
  EXPECT_EQ(user_power_level(room.state(), kDave, v12()), 0);
  // In v11 the same state gives alice only what `users` says.
  EXPECT_EQ(user_power_level(room.state(), kAlice, *find_room_version("11")), 0);
}

TEST(RoomV12, PowerLevelsMayNotNameACreator) {
  V12Room room(json::array{json::value(kBob)});
  room.set_up();
  EXPECT_TRUE(room.check(room.power_levels(kAlice, json::object{{kCarol, 100}, {kAlice, 100}})));
  EXPECT_TRUE(room.check(room.power_levels(kAlice, json::object{{kCarol, 100}, {kBob, 50}})));
  EXPECT_FALSE(room.check(room.power_levels(kAlice, json::object{{kCarol, 100}, {kDave, 50}})));
}

TEST(RoomV12, CreatorsMayDemoteAnyoneAndNobodyMayTouchThem) {
  V12Room room(json::array{json::value(kBob)});
  room.set_up();
  // A creator (bob) may lower carol's 100; carol may not lower dave's 100, alice may.
  EXPECT_FALSE(room.check(room.power_levels(kBob, json::object{{kCarol, 0}})));
  room.must_send(room.power_levels(kAlice, json::object{{kCarol, 100}, {kDave, 100}}));
  EXPECT_TRUE(room.check(room.power_levels(kCarol, json::object{{kCarol, 100}, {kDave, 0}})));
  EXPECT_FALSE(room.check(room.power_levels(kAlice, json::object{{kCarol, 100}, {kDave, 0}})));
  // Levels above 100 are no obstacle for a creator.
  EXPECT_FALSE(room.check(room.power_levels(kAlice, json::object{{kCarol, 9007199254740991}})));
}

TEST(RoomV12, CreatorsCannotBeKickedOrBanned) {
  V12Room room(json::array{json::value(kBob)});
  room.set_up();
  EXPECT_TRUE(room.check(room.member(kCarol, kAlice, "leave")));  // moderator 100 vs creator
  EXPECT_TRUE(room.check(room.member(kCarol, kBob, "ban")));
  EXPECT_TRUE(room.check(room.member(kBob, kAlice, "leave")));    // creator vs creator
  EXPECT_FALSE(room.check(room.member(kAlice, kCarol, "leave")));  // creator kicks the moderator
  EXPECT_FALSE(room.check(room.member(kBob, kDave, "ban")));
  EXPECT_FALSE(room.check(room.member(kAlice, kAlice, "leave")));  // leaving is always possible
}

TEST(RoomV12, TombstoneNeedsMoreThanStateDefault) {
  V12Room room;
  room.set_up();
  auto tombstone = room.event("m.room.tombstone", kCarol, json::object{{"replacement_room", "!new"}}, "");
  EXPECT_TRUE(room.check(tombstone));  // carol's 100 is below the 150 the room asks
  tombstone["sender"] = kAlice;
  EXPECT_FALSE(room.check(tombstone));
}

TEST(RoomV12, AuthEventsFromAnotherRoomAreRejected) {
  V12Room room;
  room.set_up();
  room.state()[{"m.room.member", kDave}]["room_id"] = "!elsewhere";
  EXPECT_TRUE(room.check(room.event("m.room.message", kDave, json::object{{"body", "hi"}})));
  EXPECT_FALSE(room.check(room.event("m.room.message", kCarol, json::object{{"body", "hi"}})));
}

}  // namespace
