// Unit tests for the room authorisation rules (src/room/auth_rules.hpp), following the numbered
// rules in the spec's rooms/v*.md.
#include "room/auth_rules.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

namespace json = boost::json;
using trestle::room::auth_event_keys;
using trestle::room::check_event_auth;
using trestle::room::find_room_version;
using trestle::room::named_power_level;
using trestle::room::required_power_level;
using trestle::room::RoomVersion;
using trestle::room::StateMap;
using trestle::room::user_power_level;

constexpr const char* kRoomId = "!room:example.org";
constexpr const char* kAlice = "@alice:example.org";  // creator, level 100
constexpr const char* kBob = "@bob:example.org";      // moderator once promoted, level 50
constexpr const char* kCarol = "@carol:example.org";  // plain member, level 0
constexpr const char* kDave = "@dave:remote.org";     // outsider unless a test lets him in

const RoomVersion& version(const char* id) {
  const RoomVersion* found = find_room_version(id);
  if (!found) throw std::runtime_error(std::string("missing room version ") + id);
  return *found;
}

json::object parse_object(const char* text) { return json::parse(text).as_object(); }

// A room built event by event: every event is checked against the state the previous ones left,
// and only allowed state events change that state, as the homeserver does.
class TestRoom {
 public:
  explicit TestRoom(const char* version_id) : version_(version(version_id)) {}

  const RoomVersion& room_version() const { return version_; }
  StateMap& state() { return state_; }

  json::object event(const std::string& type, const std::string& sender, json::object content,
                     std::optional<std::string> state_key = std::nullopt) {
    json::object ev;
    ev["event_id"] = "$" + std::to_string(++counter_) + ":" + server_of(sender);
    ev["type"] = type;
    ev["room_id"] = kRoomId;
    ev["sender"] = sender;
    if (state_key) ev["state_key"] = *state_key;
    ev["content"] = std::move(content);
    json::array prev;
    if (!last_event_id_.empty()) prev.emplace_back(last_event_id_);
    ev["prev_events"] = std::move(prev);
    ev["auth_events"] = json::array{};
    ev["depth"] = counter_;
    ev["origin_server_ts"] = 1700000000000 + counter_;
    return ev;
  }

  json::object member(const std::string& sender, const std::string& target,
                      const std::string& membership, json::object extra = {}) {
    extra["membership"] = membership;
    return event("m.room.member", sender, std::move(extra), target);
  }

  std::optional<std::string> check(const json::object& ev) const {
    return check_event_auth(ev, state_, version_);
  }

  // Checks and, when allowed, applies the event. Returns the rejection reason, if any.
  std::optional<std::string> send(const json::object& ev) {
    auto rejection = check(ev);
    if (!rejection) {
      last_event_id_ = std::string(ev.at("event_id").as_string());
      if (const json::value* key = ev.if_contains("state_key"))
        state_[{std::string(ev.at("type").as_string()), std::string(key->as_string())}] = ev;
    }
    return rejection;
  }

  // Sends and requires success; for the set-up steps of a test.
  void must_send(const json::object& ev) {
    auto rejection = send(ev);
    ASSERT_FALSE(rejection) << *rejection << " for " << json::serialize(ev);
  }

  json::object create_content(const std::string& creator) const {
    json::object content{{"room_version", version_.id}};
    if (!version_.v11_redaction_and_create) content["creator"] = creator;
    return content;
  }

  // m.room.create and the creator's join, nothing else.
  void create_bare(const std::string& creator = kAlice) {
    must_send(event("m.room.create", creator, create_content(creator), ""));
    must_send(member(creator, creator, "join"));
  }

  // The usual creation sequence: create, join, power levels (alice 100, bob 50), join rules.
  void create(const std::string& join_rule = "public", json::object extra_levels = {}) {
    create_bare();
    json::object levels{{"users", json::object{{kAlice, 100}, {kBob, 50}}},
                        {"users_default", 0},
                        {"events_default", 0},
                        {"state_default", 50},
                        {"ban", 50},
                        {"kick", 50},
                        {"redact", 50},
                        {"invite", 0},
                        {"events", json::object{{"m.room.power_levels", 100}}}};
    for (const auto& entry : extra_levels) levels[entry.key()] = entry.value();
    must_send(event("m.room.power_levels", kAlice, std::move(levels), ""));
    set_join_rule(join_rule);
  }

  void set_join_rule(const std::string& rule) {
    must_send(event("m.room.join_rules", kAlice, json::object{{"join_rule", rule}}, ""));
  }

  // Puts a membership directly into the state, for set-ups the rules would take several steps for.
  void force_membership(const std::string& user, const std::string& membership) {
    json::object ev = member(user, user, membership);
    state_[{"m.room.member", user}] = ev;
  }

  // Joins `user` to a public room (temporarily switching the join rule if needed).
  void join(const std::string& user) {
    const std::string rule = current_join_rule();
    if (rule != "public") set_join_rule("public");
    must_send(member(user, user, "join"));
    if (rule != "public") set_join_rule(rule);
  }

  std::string current_join_rule() const {
    auto it = state_.find({"m.room.join_rules", ""});
    if (it == state_.end()) return {};
    return std::string(it->second.at("content").at("join_rule").as_string());
  }

  json::object power_levels() const {
    return state_.at({"m.room.power_levels", ""}).at("content").as_object();
  }

 private:
  static std::string server_of(const std::string& user) { return user.substr(user.find(':') + 1); }

  const RoomVersion& version_;
  StateMap state_;
  std::string last_event_id_;
  int counter_ = 0;
};

// ---- m.room.create -----------------------------------------------------------------------------

TEST(AuthRulesCreate, CreationSequenceIsAllowedInEveryVersion) {
  for (const char* id : {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"}) {
    SCOPED_TRACE(id);
    TestRoom room(id);
    room.create("invite");
    room.must_send(room.event("m.room.name", kAlice, json::object{{"name", "Room"}}, ""));
    room.must_send(room.member(kAlice, kCarol, "invite"));
    room.must_send(room.member(kCarol, kCarol, "join"));
    room.must_send(room.event("m.room.message", kCarol, json::object{{"body", "hi"}}));
  }
}

TEST(AuthRulesCreate, RejectsPrevEvents) {
  TestRoom room("10");
  auto create = room.event("m.room.create", kAlice, room.create_content(kAlice), "");
  create["prev_events"] = json::array{"$earlier:example.org"};
  EXPECT_TRUE(room.check(create));
}

TEST(AuthRulesCreate, RejectsSenderFromAnotherServerThanTheRoomId) {
  for (const char* id : {"1", "10", "11"}) {
    SCOPED_TRACE(id);
    TestRoom room(id);
    EXPECT_TRUE(room.check(room.event("m.room.create", kDave, room.create_content(kDave), "")));
    EXPECT_FALSE(room.check(room.event("m.room.create", kAlice, room.create_content(kAlice), "")));
  }
}

TEST(AuthRulesCreate, RejectsUnrecognisedRoomVersion) {
  TestRoom room("10");
  auto content = room.create_content(kAlice);
  content["room_version"] = "9999";
  EXPECT_TRUE(room.check(room.event("m.room.create", kAlice, content, "")));
  content["room_version"] = 10;  // must be a string naming a version
  EXPECT_TRUE(room.check(room.event("m.room.create", kAlice, content, "")));
  content.erase("room_version");  // absent means v1 and is allowed
  EXPECT_FALSE(room.check(room.event("m.room.create", kAlice, content, "")));
}

TEST(AuthRulesCreate, CreatorRequiredBeforeV11Only) {
  TestRoom v10("10");
  json::object no_creator{{"room_version", "10"}};
  EXPECT_TRUE(v10.check(v10.event("m.room.create", kAlice, no_creator, "")));
  TestRoom v11("11");
  EXPECT_FALSE(
      v11.check(v11.event("m.room.create", kAlice, json::object{{"room_version", "11"}}, "")));
}

// ---- auth events and federation ----------------------------------------------------------------

TEST(AuthRulesAuthEvents, RejectsEventsWithoutCreateEvent) {
  TestRoom room("10");
  room.create();
  room.state().erase({"m.room.create", ""});
  auto rejection = room.check(room.event("m.room.message", kAlice, json::object{{"body", "x"}}));
  ASSERT_TRUE(rejection);
  EXPECT_NE(rejection->find("m.room.create"), std::string::npos);
  EXPECT_TRUE(room.check(room.member(kCarol, kCarol, "join")));
}

TEST(AuthRulesAuthEvents, RejectsAuthEventsFromAnotherRoom) {
  TestRoom room("10");
  room.create();
  room.state().at({"m.room.power_levels", ""})["room_id"] = "!other:example.org";
  EXPECT_TRUE(room.check(room.event("m.room.message", kAlice, json::object{{"body", "x"}})));
}

TEST(AuthRulesAuthEvents, NonFederatedRoomRejectsRemoteSenders) {
  TestRoom room("10");
  auto content = room.create_content(kAlice);
  content["m.federate"] = false;
  room.must_send(room.event("m.room.create", kAlice, content, ""));
  room.must_send(room.member(kAlice, kAlice, "join"));
  room.set_join_rule("public");
  EXPECT_TRUE(room.check(room.member(kDave, kDave, "join")));
  EXPECT_FALSE(room.check(room.member(kCarol, kCarol, "join")));
}

// ---- m.room.member: join -----------------------------------------------------------------------

TEST(AuthRulesJoin, CreatorMayJoinRightAfterCreate) {
  for (const char* id : {"1", "10", "11"}) {
    SCOPED_TRACE(id);
    TestRoom room(id);
    room.must_send(room.event("m.room.create", kAlice, room.create_content(kAlice), ""));
    EXPECT_FALSE(room.check(room.member(kAlice, kAlice, "join")));
    // Nobody else can: there is no join rule yet.
    EXPECT_TRUE(room.check(room.member(kCarol, kCarol, "join")));
  }
}

TEST(AuthRulesJoin, CreatorFirstJoinMustFollowTheCreateEvent) {
  TestRoom room("10");
  room.must_send(room.event("m.room.create", kAlice, room.create_content(kAlice), ""));
  auto join = room.member(kAlice, kAlice, "join");
  join["prev_events"] = json::array{"$not-the-create:example.org"};
  EXPECT_TRUE(room.check(join));
  join["prev_events"] = json::array{};
  EXPECT_TRUE(room.check(join));
  // v1/v2 list prev events as [event_id, hashes] pairs.
  TestRoom v1("1");
  v1.must_send(v1.event("m.room.create", kAlice, v1.create_content(kAlice), ""));
  auto v1_join = v1.member(kAlice, kAlice, "join");
  const json::value create_id = v1.state().at({"m.room.create", ""}).at("event_id");
  v1_join["prev_events"] = json::array{json::array{create_id, json::object{{"sha256", "abc"}}}};
  EXPECT_FALSE(v1.check(v1_join));
}

TEST(AuthRulesJoin, CreatorFirstJoinWithoutStoredEventIds) {
  // v3+ PDUs carry no event_id; the first join is then recognised by the room having no other
  // state.
  TestRoom room("11");
  auto create = room.event("m.room.create", kAlice, room.create_content(kAlice), "");
  create.erase("event_id");
  room.state()[{"m.room.create", ""}] = create;
  auto join = room.member(kAlice, kAlice, "join");
  join["prev_events"] = json::array{"$the-create"};
  EXPECT_FALSE(room.check(join));
  room.force_membership(kCarol, "leave");
  EXPECT_TRUE(room.check(join));
}

TEST(AuthRulesJoin, PublicRoomAllowsJoin) {
  TestRoom room("10");
  room.create("public");
  EXPECT_FALSE(room.send(room.member(kCarol, kCarol, "join")));
  EXPECT_FALSE(room.send(room.member(kDave, kDave, "join")));
}

TEST(AuthRulesJoin, CannotJoinOnBehalfOfSomeoneElse) {
  TestRoom room("10");
  room.create("public");
  EXPECT_TRUE(room.check(room.member(kAlice, kCarol, "join")));
}

TEST(AuthRulesJoin, InviteOnlyRoomNeedsInvite) {
  TestRoom room("10");
  room.create("invite");
  EXPECT_TRUE(room.check(room.member(kCarol, kCarol, "join")));
  room.must_send(room.member(kAlice, kCarol, "invite"));
  EXPECT_FALSE(room.send(room.member(kCarol, kCarol, "join")));
  // Already joined members may re-join (e.g. to change their display name).
  EXPECT_FALSE(room.check(room.member(kCarol, kCarol, "join", json::object{{"displayname", "C"}})));
}

TEST(AuthRulesJoin, NoJoinRulesMeansNoJoins) {
  TestRoom room("10");
  room.create_bare();
  EXPECT_TRUE(room.check(room.member(kCarol, kCarol, "join")));
}

TEST(AuthRulesJoin, UnknownJoinRuleRejected) {
  TestRoom room("10");
  room.create("private");
  EXPECT_TRUE(room.check(room.member(kCarol, kCarol, "join")));
}

TEST(AuthRulesJoin, BannedUserCannotJoinPublicRoom) {
  TestRoom room("10");
  room.create("public");
  room.must_send(room.member(kAlice, kCarol, "ban"));
  EXPECT_TRUE(room.check(room.member(kCarol, kCarol, "join")));
}

TEST(AuthRulesJoin, KnockJoinRuleActsAsInviteFromV7) {
  TestRoom v7("7");
  v7.create("knock");
  EXPECT_TRUE(v7.check(v7.member(kCarol, kCarol, "join")));
  v7.must_send(v7.member(kAlice, kCarol, "invite"));
  EXPECT_FALSE(v7.check(v7.member(kCarol, kCarol, "join")));

  TestRoom v6("6");  // "knock" means nothing in v6, so nobody can join by invite either
  v6.create("knock");
  v6.must_send(v6.member(kAlice, kCarol, "invite"));
  EXPECT_TRUE(v6.check(v6.member(kCarol, kCarol, "join")));
}

// ---- restricted joins --------------------------------------------------------------------------

json::object via(const char* user) {
  return json::object{{"join_authorised_via_users_server", user}};
}

TEST(AuthRulesRestricted, JoinAuthorisedByJoinedUserWithInvitePower) {
  TestRoom room("9");
  room.create("restricted", json::object{{"invite", 50}});
  room.join(kBob);
  room.join(kCarol);
  EXPECT_FALSE(room.check(room.member(kDave, kDave, "join", via(kBob))));
  EXPECT_TRUE(room.check(room.member(kDave, kDave, "join", via(kCarol))));  // level 0 < invite 50
}

TEST(AuthRulesRestricted, AuthoriserMustBeJoined) {
  TestRoom room("10");
  room.create("restricted");
  EXPECT_TRUE(room.check(room.member(kDave, kDave, "join", via(kBob))));  // bob never joined
  room.join(kBob);
  EXPECT_FALSE(room.check(room.member(kDave, kDave, "join", via(kBob))));
}

TEST(AuthRulesRestricted, JoinWithoutAuthoriserRejectedUnlessInvited) {
  TestRoom room("10");
  room.create("restricted");
  EXPECT_TRUE(room.check(room.member(kDave, kDave, "join")));
  room.must_send(room.member(kAlice, kDave, "invite"));
  EXPECT_FALSE(room.check(room.member(kDave, kDave, "join")));
}

TEST(AuthRulesRestricted, AuthoriserMustBeAUserId) {
  TestRoom room("10");
  room.create("restricted");
  EXPECT_TRUE(room.check(room.member(kDave, kDave, "join", via("not-a-user"))));
  EXPECT_TRUE(room.check(
      room.member(kDave, kDave, "join", json::object{{"join_authorised_via_users_server", 5}})));
}

TEST(AuthRulesRestricted, RestrictedOnlyFromV8) {
  TestRoom room("7");
  room.create("restricted");
  EXPECT_TRUE(room.check(room.member(kDave, kDave, "join", via(kAlice))));
  TestRoom v8("8");
  v8.create("restricted");
  EXPECT_FALSE(v8.check(v8.member(kDave, kDave, "join", via(kAlice))));
}

TEST(AuthRulesRestricted, KnockRestrictedOnlyFromV10) {
  TestRoom v10("10");
  v10.create("knock_restricted");
  EXPECT_FALSE(v10.check(v10.member(kDave, kDave, "join", via(kAlice))));
  EXPECT_TRUE(v10.check(v10.member(kDave, kDave, "join")));
  TestRoom v9("9");
  v9.create("knock_restricted");
  EXPECT_TRUE(v9.check(v9.member(kDave, kDave, "join", via(kAlice))));
}

// ---- m.room.member: invite ---------------------------------------------------------------------

TEST(AuthRulesInvite, MemberWithInviteLevelMayInvite) {
  TestRoom room("10");
  room.create("invite");
  room.join(kBob);
  EXPECT_FALSE(room.check(room.member(kBob, kCarol, "invite")));
}

TEST(AuthRulesInvite, InviteWithoutPowerRejected) {
  TestRoom room("10");
  room.create("invite", json::object{{"invite", 50}});
  room.join(kCarol);
  EXPECT_TRUE(room.check(room.member(kCarol, kDave, "invite")));
  EXPECT_FALSE(room.check(room.member(kAlice, kDave, "invite")));
}

TEST(AuthRulesInvite, NonMemberCannotInvite) {
  TestRoom room("10");
  room.create("invite");
  EXPECT_TRUE(room.check(room.member(kBob, kDave, "invite")));
}

TEST(AuthRulesInvite, CannotInviteJoinedOrBannedUser) {
  TestRoom room("10");
  room.create("public");
  room.join(kCarol);
  EXPECT_TRUE(room.check(room.member(kAlice, kCarol, "invite")));
  room.must_send(room.member(kAlice, kDave, "ban"));
  EXPECT_TRUE(room.check(room.member(kAlice, kDave, "invite")));
}

TEST(AuthRulesInvite, ReinvitingAnInvitedUserIsAllowed) {
  TestRoom room("10");
  room.create("invite");
  room.must_send(room.member(kAlice, kCarol, "invite"));
  EXPECT_FALSE(room.check(room.member(kAlice, kCarol, "invite")));
}

// ---- third party invites -----------------------------------------------------------------------

class AuthRulesThirdPartyInviteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    room.create("invite");
    room.must_send(room.event("m.room.third_party_invite", kAlice,
                              json::object{{"display_name", "c...@example.com"},
                                           {"key_validity_url", "https://id.example/validity"},
                                           {"public_key", "base64key"}},
                              "tok123"));
  }

  json::object invite_content(const char* mxid = kCarol, const char* token = "tok123") {
    json::object signed_block{
        {"mxid", mxid},
        {"token", token},
        {"signatures", json::object{{"id.example", json::object{{"ed25519:0", "sig"}}}}}};
    return json::object{{"third_party_invite", json::object{{"display_name", "c...@example.com"},
                                                            {"signed", signed_block}}}};
  }

  TestRoom room{"10"};
};

TEST_F(AuthRulesThirdPartyInviteTest, ValidTokenInviteAllowed) {
  EXPECT_FALSE(room.check(room.member(kAlice, kCarol, "invite", invite_content())));
}

TEST_F(AuthRulesThirdPartyInviteTest, PublicKeysListAccepted) {
  auto& token = room.state().at({"m.room.third_party_invite", "tok123"});
  token["content"] = json::object{{"public_keys", json::array{json::object{{"public_key", "k2"}}}}};
  EXPECT_FALSE(room.check(room.member(kAlice, kCarol, "invite", invite_content())));
  token["content"] = json::object{{"display_name", "x"}};
  EXPECT_TRUE(room.check(room.member(kAlice, kCarol, "invite", invite_content())));
}

TEST_F(AuthRulesThirdPartyInviteTest, MxidMustMatchTarget) {
  EXPECT_TRUE(room.check(room.member(kAlice, kCarol, "invite", invite_content(kDave))));
}

TEST_F(AuthRulesThirdPartyInviteTest, TokenMustExist) {
  EXPECT_TRUE(room.check(room.member(kAlice, kCarol, "invite", invite_content(kCarol, "nope"))));
}

TEST_F(AuthRulesThirdPartyInviteTest, SenderMustBeTheTokenSender) {
  room.join(kBob);
  EXPECT_TRUE(room.check(room.member(kBob, kCarol, "invite", invite_content())));
}

TEST_F(AuthRulesThirdPartyInviteTest, SignedBlockMustBeComplete) {
  auto content = invite_content();
  content["third_party_invite"].as_object().erase("signed");
  EXPECT_TRUE(room.check(room.member(kAlice, kCarol, "invite", content)));

  content = invite_content();
  content["third_party_invite"].as_object()["signed"].as_object().erase("token");
  EXPECT_TRUE(room.check(room.member(kAlice, kCarol, "invite", content)));

  content = invite_content();
  content["third_party_invite"].as_object()["signed"].as_object()["signatures"] = json::object{};
  EXPECT_TRUE(room.check(room.member(kAlice, kCarol, "invite", content)));
}

TEST_F(AuthRulesThirdPartyInviteTest, BannedTargetRejected) {
  room.must_send(room.member(kAlice, kCarol, "ban"));
  EXPECT_TRUE(room.check(room.member(kAlice, kCarol, "invite", invite_content())));
}

TEST_F(AuthRulesThirdPartyInviteTest, CreatingTokenNeedsInviteLevel) {
  auto levels = room.power_levels();
  levels["invite"] = 50;
  room.must_send(room.event("m.room.power_levels", kAlice, levels, ""));
  room.join(kCarol);
  auto token =
      room.event("m.room.third_party_invite", kCarol, json::object{{"public_key", "k"}}, "t2");
  EXPECT_TRUE(room.check(token));
  room.join(kBob);
  token = room.event("m.room.third_party_invite", kBob, json::object{{"public_key", "k"}}, "t2");
  EXPECT_FALSE(room.check(token));
}

// ---- m.room.member: leave, kick, ban, unban ----------------------------------------------------

TEST(AuthRulesLeave, MembersAndInviteesMayLeave) {
  TestRoom room("10");
  room.create("invite");
  room.must_send(room.member(kAlice, kCarol, "invite"));
  EXPECT_FALSE(room.check(room.member(kCarol, kCarol, "leave")));  // rejecting the invite
  room.join(kBob);
  EXPECT_FALSE(room.check(room.member(kBob, kBob, "leave")));
}

TEST(AuthRulesLeave, CannotLeaveWithoutMembership) {
  TestRoom room("10");
  room.create("public");
  EXPECT_TRUE(room.check(room.member(kCarol, kCarol, "leave")));
  room.force_membership(kCarol, "ban");
  EXPECT_TRUE(room.check(room.member(kCarol, kCarol, "leave")));
}

TEST(AuthRulesLeave, KickNeedsKickLevelAndHigherLevelThanTarget) {
  TestRoom room("10");
  room.create("public");
  room.join(kBob);
  room.join(kCarol);
  EXPECT_TRUE(room.check(room.member(kCarol, kBob, "leave")));   // 0 < kick 50
  EXPECT_FALSE(room.check(room.member(kBob, kCarol, "leave")));  // 50 >= 50, carol 0 < 50
  EXPECT_TRUE(room.check(room.member(kBob, kAlice, "leave")));   // alice 100 >= bob 50
  EXPECT_FALSE(room.check(room.member(kAlice, kBob, "leave")));
}

TEST(AuthRulesLeave, KickOfEqualLevelRejected) {
  TestRoom room("10");
  room.create("public",
              json::object{{"users", json::object{{kAlice, 100}, {kBob, 50}, {kCarol, 50}}}});
  room.join(kBob);
  room.join(kCarol);
  EXPECT_TRUE(room.check(room.member(kBob, kCarol, "leave")));
}

TEST(AuthRulesLeave, KickerMustBeJoined) {
  TestRoom room("10");
  room.create("public");
  room.join(kCarol);
  room.must_send(room.member(kAlice, kBob, "invite"));  // bob has level 50 but is only invited
  EXPECT_TRUE(room.check(room.member(kBob, kCarol, "leave")));
}

TEST(AuthRulesLeave, UnbanNeedsBanLevelAsWellAsKickLevel) {
  TestRoom room("10");
  room.create("public", json::object{{"ban", 75}});
  room.join(kBob);
  room.must_send(room.member(kAlice, kDave, "ban"));
  EXPECT_TRUE(room.check(room.member(kBob, kDave, "leave")));  // kick 50 ok, ban 75 not
  EXPECT_FALSE(room.send(room.member(kAlice, kDave, "leave")));
  EXPECT_FALSE(room.check(room.member(kDave, kDave, "join")));  // unbanned: may join again
}

TEST(AuthRulesBan, BanNeedsBanLevelAndHigherLevelThanTarget) {
  TestRoom room("10");
  room.create("public");
  room.join(kBob);
  room.join(kCarol);
  EXPECT_FALSE(room.check(room.member(kBob, kCarol, "ban")));
  EXPECT_FALSE(room.check(room.member(kBob, kDave, "ban")));  // banning a non-member pre-emptively
  EXPECT_TRUE(room.check(room.member(kCarol, kBob, "ban")));
  EXPECT_TRUE(room.check(room.member(kBob, kAlice, "ban")));
}

TEST(AuthRulesBan, BannerMustBeJoined) {
  TestRoom room("10");
  room.create("public");
  EXPECT_TRUE(room.check(room.member(kBob, kCarol, "ban")));
}

TEST(AuthRulesMember, UnknownMembershipAndMalformedEventsRejected) {
  TestRoom room("10");
  room.create("public");
  EXPECT_TRUE(room.check(room.member(kAlice, kAlice, "dance")));
  auto no_membership = room.event("m.room.member", kCarol, json::object{}, kCarol);
  EXPECT_TRUE(room.check(no_membership));
  auto no_state_key = room.event("m.room.member", kCarol, json::object{{"membership", "join"}});
  EXPECT_TRUE(room.check(no_state_key));
}

// ---- knock -------------------------------------------------------------------------------------

TEST(AuthRulesKnock, KnockAllowedFromV7WithKnockRule) {
  TestRoom room("7");
  room.create("knock");
  EXPECT_FALSE(room.send(room.member(kDave, kDave, "knock")));
  EXPECT_FALSE(room.check(room.member(kDave, kDave, "leave")));  // rescinding the knock
  EXPECT_FALSE(room.check(room.member(kAlice, kDave, "invite")));
}

TEST(AuthRulesKnock, KnockRejectedBeforeV7) {
  TestRoom room("6");
  room.create("knock");
  EXPECT_TRUE(room.check(room.member(kDave, kDave, "knock")));
}

TEST(AuthRulesKnock, KnockNeedsKnockJoinRule) {
  TestRoom room("10");
  room.create("invite");
  EXPECT_TRUE(room.check(room.member(kDave, kDave, "knock")));
  room.set_join_rule("public");
  EXPECT_TRUE(room.check(room.member(kDave, kDave, "knock")));
}

TEST(AuthRulesKnock, KnockRestrictedFromV10) {
  TestRoom v10("10");
  v10.create("knock_restricted");
  EXPECT_FALSE(v10.check(v10.member(kDave, kDave, "knock")));
  TestRoom v9("9");
  v9.create("knock_restricted");
  EXPECT_TRUE(v9.check(v9.member(kDave, kDave, "knock")));
}

TEST(AuthRulesKnock, CannotKnockForOthersOrWhenBannedInvitedOrJoined) {
  TestRoom room("10");
  room.create("knock");
  EXPECT_TRUE(room.check(room.member(kAlice, kDave, "knock")));
  EXPECT_TRUE(room.check(room.member(kAlice, kAlice, "knock")));
  room.must_send(room.member(kAlice, kCarol, "invite"));
  EXPECT_TRUE(room.check(room.member(kCarol, kCarol, "knock")));
  room.must_send(room.member(kAlice, kDave, "ban"));
  EXPECT_TRUE(room.check(room.member(kDave, kDave, "knock")));
}

// ---- non-member events -------------------------------------------------------------------------

TEST(AuthRulesEvents, MessageFromNonMemberRejected) {
  TestRoom room("10");
  room.create("public");
  EXPECT_TRUE(room.check(room.event("m.room.message", kCarol, json::object{{"body", "x"}})));
  room.join(kCarol);
  EXPECT_FALSE(room.check(room.event("m.room.message", kCarol, json::object{{"body", "x"}})));
  room.must_send(room.member(kCarol, kCarol, "leave"));
  EXPECT_TRUE(room.check(room.event("m.room.message", kCarol, json::object{{"body", "x"}})));
}

TEST(AuthRulesEvents, StateEventNeedsStateDefault) {
  TestRoom room("10");
  room.create("public");
  room.join(kBob);
  room.join(kCarol);
  auto topic = [&](const char* sender) {
    return room.event("m.room.topic", sender, json::object{{"topic", "t"}}, "");
  };
  EXPECT_TRUE(room.check(topic(kCarol)));
  EXPECT_FALSE(room.check(topic(kBob)));
}

TEST(AuthRulesEvents, EventsMapOverridesDefaults) {
  TestRoom room("10");
  room.create("public", json::object{{"events", json::object{{"m.room.topic", 0},
                                                             {"m.room.message", 10},
                                                             {"m.room.power_levels", 100}}}});
  room.join(kCarol);
  EXPECT_FALSE(room.check(room.event("m.room.topic", kCarol, json::object{{"topic", "t"}}, "")));
  EXPECT_TRUE(room.check(room.event("m.room.message", kCarol, json::object{{"body", "x"}})));
  EXPECT_FALSE(room.check(room.event("m.reaction", kCarol, json::object{})));
}

TEST(AuthRulesEvents, EventsDefaultAppliesToMessages) {
  TestRoom room("10");
  room.create("public", json::object{{"events_default", 20}});
  room.join(kCarol);
  room.join(kBob);
  EXPECT_TRUE(room.check(room.event("m.room.message", kCarol, json::object{{"body", "x"}})));
  EXPECT_FALSE(room.check(room.event("m.room.message", kBob, json::object{{"body", "x"}})));
}

TEST(AuthRulesEvents, StateKeyNamingAnotherUserRejected) {
  TestRoom room("10");
  room.create("public", json::object{{"state_default", 0}});
  room.join(kCarol);
  EXPECT_TRUE(room.check(room.event("org.example.profile", kCarol, json::object{}, kBob)));
  EXPECT_FALSE(room.check(room.event("org.example.profile", kCarol, json::object{}, kCarol)));
  EXPECT_TRUE(room.check(room.event("org.example.profile", kAlice, json::object{}, kCarol)));
  EXPECT_FALSE(room.check(room.event("org.example.profile", kCarol, json::object{}, "plain")));
}

TEST(AuthRulesEvents, AliasesRuleInV1ToV5Only) {
  TestRoom v5("5");
  v5.create("public");
  // Before v6 the sender's server owns its aliases key, membership and levels notwithstanding.
  EXPECT_FALSE(v5.check(v5.event("m.room.aliases", kDave, json::object{}, "remote.org")));
  EXPECT_TRUE(v5.check(v5.event("m.room.aliases", kDave, json::object{}, "example.org")));
  EXPECT_TRUE(v5.check(v5.event("m.room.aliases", kDave, json::object{})));

  TestRoom v6("6");
  v6.create("public");
  EXPECT_TRUE(v6.check(v6.event("m.room.aliases", kDave, json::object{}, "remote.org")));
  v6.join(kCarol);
  EXPECT_TRUE(v6.check(v6.event("m.room.aliases", kCarol, json::object{}, "example.org")));
  EXPECT_FALSE(v6.check(v6.event("m.room.aliases", kAlice, json::object{}, "remote.org")));
}

TEST(AuthRulesEvents, MalformedEventsRejected) {
  TestRoom room("10");
  room.create("public");
  auto ev = room.event("m.room.message", kAlice, json::object{{"body", "x"}});
  ev.erase("sender");
  EXPECT_TRUE(room.check(ev));
  ev = room.event("m.room.message", kAlice, json::object{});
  ev["content"] = "text";
  EXPECT_TRUE(room.check(ev));
  ev = room.event("m.room.topic", kAlice, json::object{});
  ev["state_key"] = 3;
  EXPECT_TRUE(room.check(ev));
}

// ---- m.room.power_levels -----------------------------------------------------------------------

class AuthRulesPowerLevelsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    room.create("public", json::object{{"events", json::object{{"m.room.power_levels", 50},
                                                               {"m.room.tombstone", 100}}},
                                       {"notifications", json::object{{"room", 50}}}});
    room.join(kBob);
    room.join(kCarol);
  }

  std::optional<std::string> change(const char* sender, const char* field, json::value value) {
    auto levels = room.power_levels();
    levels[field] = std::move(value);
    return room.check(room.event("m.room.power_levels", sender, levels, ""));
  }
  std::optional<std::string> change_user(const char* sender, const char* user, json::value value) {
    auto levels = room.power_levels();
    levels["users"].as_object()[user] = std::move(value);
    return room.check(room.event("m.room.power_levels", sender, levels, ""));
  }

  TestRoom room{"10"};
};

TEST(AuthRulesPowerLevels, FirstPowerLevelsOnlyNeedsStateLevel) {
  TestRoom fresh("10");
  fresh.create_bare();
  json::object levels{{"users", json::object{{kAlice, 100}}}};
  EXPECT_FALSE(fresh.check(fresh.event("m.room.power_levels", kAlice, levels, "")));
  fresh.set_join_rule("public");
  fresh.join(kCarol);
  // Without power levels everyone but the creator is at 0 and state needs 50.
  EXPECT_TRUE(fresh.check(fresh.event("m.room.power_levels", kCarol, levels, "")));
}

TEST_F(AuthRulesPowerLevelsTest, CannotRaiseOwnLevelAboveCurrent) {
  EXPECT_TRUE(change_user(kBob, kBob, 100));
  EXPECT_TRUE(change_user(kBob, kBob, 51));
  EXPECT_FALSE(change_user(kBob, kBob, 50));
}

TEST_F(AuthRulesPowerLevelsTest, MayLowerOwnLevel) {
  EXPECT_FALSE(change_user(kBob, kBob, 10));
  EXPECT_FALSE(change_user(kAlice, kAlice, 0));
}

TEST_F(AuthRulesPowerLevelsTest, CannotGrantAboveOwnLevel) {
  EXPECT_TRUE(change_user(kBob, kCarol, 60));
  EXPECT_FALSE(change_user(kBob, kCarol, 50));
  EXPECT_FALSE(change_user(kBob, kDave, 20));
}

TEST_F(AuthRulesPowerLevelsTest, CannotChangeUsersAtOrAboveOwnLevel) {
  EXPECT_TRUE(change_user(kBob, kAlice, 0));
  auto levels = room.power_levels();
  levels["users"].as_object()[kDave] = 50;
  room.must_send(room.event("m.room.power_levels", kAlice, levels, ""));
  EXPECT_TRUE(change_user(kBob, kDave, 0));  // equal level
  levels = room.power_levels();
  levels["users"].as_object().erase(kDave);  // removal counts as a change
  EXPECT_TRUE(room.check(room.event("m.room.power_levels", kBob, levels, "")));
  EXPECT_FALSE(room.check(room.event("m.room.power_levels", kAlice, levels, "")));
}

TEST_F(AuthRulesPowerLevelsTest, UnchangedEntriesAreNotChecked) {
  // Bob may edit other fields while alice's 100 stays as it is.
  EXPECT_FALSE(change(kBob, "kick", 40));
}

TEST_F(AuthRulesPowerLevelsTest, ScalarLevelsLimitedBySenderLevel) {
  EXPECT_TRUE(change(kBob, "state_default", 60));
  EXPECT_FALSE(change(kBob, "state_default", 40));
  EXPECT_TRUE(change(kBob, "users_default", 51));
  EXPECT_FALSE(change(kAlice, "users_default", 100));
  auto levels = room.power_levels();
  levels["ban"] = 80;
  room.must_send(room.event("m.room.power_levels", kAlice, levels, ""));
  EXPECT_TRUE(change(kBob, "ban", 10));  // current value 80 is above bob
  levels = room.power_levels();
  levels.erase("ban");
  EXPECT_TRUE(room.check(room.event("m.room.power_levels", kBob, levels, "")));
}

TEST_F(AuthRulesPowerLevelsTest, EventAndNotificationLevelsLimitedBySenderLevel) {
  auto levels = room.power_levels();
  levels["events"].as_object()["m.room.tombstone"] = 50;
  EXPECT_TRUE(room.check(room.event("m.room.power_levels", kBob, levels, "")));
  levels = room.power_levels();
  levels["events"].as_object()["m.room.name"] = 75;
  EXPECT_TRUE(room.check(room.event("m.room.power_levels", kBob, levels, "")));
  levels["events"].as_object()["m.room.name"] = 25;
  EXPECT_FALSE(room.check(room.event("m.room.power_levels", kBob, levels, "")));
  levels = room.power_levels();
  levels["notifications"].as_object()["room"] = 90;
  EXPECT_TRUE(room.check(room.event("m.room.power_levels", kBob, levels, "")));
}

TEST_F(AuthRulesPowerLevelsTest, NeedsTheLevelForPowerLevelsEvents) {
  EXPECT_TRUE(change(kCarol, "kick", 0));
}

TEST_F(AuthRulesPowerLevelsTest, UsersMustBeValidUserIdsWithIntegers) {
  EXPECT_TRUE(change_user(kAlice, "not-a-user", 10));
  EXPECT_TRUE(change_user(kAlice, "@nocolon", 10));
  EXPECT_TRUE(change_user(kAlice, kCarol, json::value(nullptr)));
  EXPECT_TRUE(change(kAlice, "users", json::array{}));
  EXPECT_TRUE(change(kAlice, "events", 5));
}

TEST(AuthRulesPowerLevelSyntax, StringLevelsRejectedInV10) {
  TestRoom room("10");
  room.create("public");
  auto levels = room.power_levels();
  levels["users"].as_object()[kCarol] = "10";
  auto rejection = room.check(room.event("m.room.power_levels", kAlice, levels, ""));
  ASSERT_TRUE(rejection);
  levels = room.power_levels();
  levels["ban"] = "50";
  EXPECT_TRUE(room.check(room.event("m.room.power_levels", kAlice, levels, "")));
  levels = room.power_levels();
  levels["notifications"] = json::object{{"room", "50"}};
  EXPECT_TRUE(room.check(room.event("m.room.power_levels", kAlice, levels, "")));
  levels = room.power_levels();
  levels["events"].as_object()["m.room.name"] = 50.0;
  EXPECT_TRUE(room.check(room.event("m.room.power_levels", kAlice, levels, "")));
}

TEST(AuthRulesPowerLevelSyntax, StringLevelsAcceptedInV9) {
  TestRoom room("9");
  room.create("public");
  auto levels = room.power_levels();
  levels["users"].as_object()[kCarol] = " +0040 ";
  levels["ban"] = "60";
  levels["events"].as_object()["m.room.name"] = "-1";
  EXPECT_FALSE(room.send(room.event("m.room.power_levels", kAlice, levels, "")));
  EXPECT_EQ(user_power_level(room.state(), kCarol, room.room_version()), 40);
  EXPECT_EQ(named_power_level(room.state(), "ban"), 60);
  EXPECT_EQ(required_power_level(room.state(), "m.room.name", true), -1);
}

TEST(AuthRulesPowerLevelSyntax, StringLevelsMustHoldIntegers) {
  TestRoom room("9");
  room.create("public");
  for (const char* bad : {"abc", "50.5", "", "+-5", "1e3", "99999999999999999999"}) {
    SCOPED_TRACE(bad);
    auto levels = room.power_levels();
    levels["users"].as_object()[kCarol] = bad;
    EXPECT_TRUE(room.check(room.event("m.room.power_levels", kAlice, levels, "")));
    levels = room.power_levels();
    levels["kick"] = bad;
    EXPECT_TRUE(room.check(room.event("m.room.power_levels", kAlice, levels, "")));
  }
}

TEST(AuthRulesPowerLevelSyntax, FloatsOnlyBeforeV6) {
  TestRoom v5("5");
  v5.create("public");
  auto levels = v5.power_levels();
  levels["users"].as_object()[kCarol] = 50.57;
  EXPECT_FALSE(v5.send(v5.event("m.room.power_levels", kAlice, levels, "")));
  EXPECT_EQ(user_power_level(v5.state(), kCarol, v5.room_version()), 50);

  TestRoom v6("6");
  v6.create("public");
  levels = v6.power_levels();
  levels["users"].as_object()[kCarol] = 50.57;
  EXPECT_TRUE(v6.check(v6.event("m.room.power_levels", kAlice, levels, "")));
}

TEST(AuthRulesPowerLevelSyntax, StringAndIntegerOfSameValueAreNoChange) {
  TestRoom room("9");
  room.create("public");
  room.join(kBob);
  auto levels = room.power_levels();
  levels["users"].as_object()[kAlice] = "100";  // bob could not change alice, but this is no change
  EXPECT_FALSE(room.check(room.event("m.room.power_levels", kAlice, levels, "")));
  levels["events"].as_object()["m.room.power_levels"] = "50";
  room.must_send(room.event("m.room.power_levels", kAlice, levels, ""));
  levels["events"].as_object()["m.room.power_levels"] = 50;
  levels["kick"] = "50";
  EXPECT_FALSE(room.check(room.event("m.room.power_levels", kBob, levels, "")));
}

TEST(AuthRulesPowerLevelSyntax, NotificationsNotComparedBeforeV6) {
  TestRoom v5("5");
  v5.create("public", json::object{{"events", json::object{{"m.room.power_levels", 50}}}});
  v5.join(kBob);
  auto levels = v5.power_levels();
  levels["notifications"] = json::object{{"room", 100}};
  EXPECT_FALSE(v5.check(v5.event("m.room.power_levels", kBob, levels, "")));

  TestRoom v6("6");
  v6.create("public", json::object{{"events", json::object{{"m.room.power_levels", 50}}}});
  v6.join(kBob);
  levels = v6.power_levels();
  levels["notifications"] = json::object{{"room", 100}};
  EXPECT_TRUE(v6.check(v6.event("m.room.power_levels", kBob, levels, "")));
}

// ---- m.room.redaction --------------------------------------------------------------------------

TEST(AuthRulesRedaction, V1NeedsRedactLevelOrSameDomain) {
  for (const char* id : {"1", "2"}) {
    SCOPED_TRACE(id);
    TestRoom room(id);
    room.create("public");
    room.join(kCarol);
    room.join(kDave);
    auto redaction = [&](const char* sender, const char* redacts) {
      auto ev = room.event("m.room.redaction", sender, json::object{});
      ev["redacts"] = redacts;
      return ev;
    };
    EXPECT_FALSE(room.check(redaction(kCarol, "$1:example.org")));  // same domain as carol's event
    EXPECT_TRUE(room.check(redaction(kCarol, "$1:remote.org")));
    EXPECT_TRUE(room.check(redaction(kCarol, "$no-domain")));
    EXPECT_TRUE(room.check(redaction(kBob, "$1:remote.org")));  // bob is not joined
    room.join(kBob);
    EXPECT_FALSE(room.check(redaction(kBob, "$1:remote.org")));  // redact level 50
  }
}

TEST(AuthRulesRedaction, FromV3RedactLevelIsNotAnAuthRule) {
  TestRoom room("10");
  room.create("public");
  room.join(kCarol);
  auto redaction = room.event("m.room.redaction", kCarol, json::object{{"redacts", "$x"}});
  redaction["redacts"] = "$x";
  EXPECT_FALSE(room.check(redaction));
}

TEST(AuthRulesRedaction, RedactionEventLevelStillApplies) {
  TestRoom room("11");
  room.create("public", json::object{{"events", json::object{{"m.room.redaction", 50},
                                                             {"m.room.power_levels", 100}}}});
  room.join(kCarol);
  room.join(kBob);
  auto by = [&](const char* sender) {
    return room.event("m.room.redaction", sender, json::object{{"redacts", "$x"}});
  };
  EXPECT_TRUE(room.check(by(kCarol)));
  EXPECT_FALSE(room.check(by(kBob)));
}

// ---- power level helpers -----------------------------------------------------------------------

TEST(AuthRulesHelpers, UserPowerLevelWithoutPowerLevelsEvent) {
  TestRoom v10("10");
  v10.create_bare();
  EXPECT_EQ(user_power_level(v10.state(), kAlice, v10.room_version()), 100);
  EXPECT_EQ(user_power_level(v10.state(), kCarol, v10.room_version()), 0);

  // v10 reads the creator from content.creator, v11 from the sender.
  TestRoom v10b("10");
  v10b.must_send(v10b.event("m.room.create", kAlice, v10b.create_content(kCarol), ""));
  EXPECT_EQ(user_power_level(v10b.state(), kCarol, v10b.room_version()), 100);
  EXPECT_EQ(user_power_level(v10b.state(), kAlice, v10b.room_version()), 0);

  TestRoom v11("11");
  v11.create_bare();
  EXPECT_EQ(user_power_level(v11.state(), kAlice, v11.room_version()), 100);
  EXPECT_EQ(user_power_level(v11.state(), kCarol, v11.room_version()), 0);
}

TEST(AuthRulesHelpers, UserPowerLevelFromPowerLevelsEvent) {
  TestRoom room("10");
  room.create("public");
  EXPECT_EQ(user_power_level(room.state(), kBob, room.room_version()), 50);
  EXPECT_EQ(user_power_level(room.state(), kCarol, room.room_version()), 0);
  auto levels = room.power_levels();
  levels["users_default"] = 5;
  levels["users"].as_object().erase(kAlice);
  room.must_send(room.event("m.room.power_levels", kAlice, levels, ""));
  EXPECT_EQ(user_power_level(room.state(), kCarol, room.room_version()), 5);
  EXPECT_EQ(user_power_level(room.state(), kAlice, room.room_version()), 5);  // no creator bonus
  levels.erase("users_default");
  room.state().at({"m.room.power_levels", ""})["content"] = levels;
  EXPECT_EQ(user_power_level(room.state(), kCarol, room.room_version()), 0);
}

TEST(AuthRulesHelpers, RequiredPowerLevel) {
  TestRoom room("10");
  room.create_bare();
  EXPECT_EQ(required_power_level(room.state(), "m.room.name", true), 50);
  EXPECT_EQ(required_power_level(room.state(), "m.room.message", false), 0);
  room.must_send(room.event("m.room.power_levels", kAlice,
                            json::object{{"users", json::object{{kAlice, 100}}},
                                         {"events", json::object{{"m.room.name", 30}}},
                                         {"events_default", 10}},
                            ""));
  EXPECT_EQ(required_power_level(room.state(), "m.room.name", true), 30);
  EXPECT_EQ(required_power_level(room.state(), "m.room.topic", true), 50);
  EXPECT_EQ(required_power_level(room.state(), "m.room.message", false), 10);
  auto levels = room.power_levels();
  levels["state_default"] = 20;
  room.must_send(room.event("m.room.power_levels", kAlice, levels, ""));
  EXPECT_EQ(required_power_level(room.state(), "m.room.topic", true), 20);
}

TEST(AuthRulesHelpers, NamedPowerLevelDefaults) {
  TestRoom room("10");
  room.create_bare();
  EXPECT_EQ(named_power_level(room.state(), "ban"), 50);
  EXPECT_EQ(named_power_level(room.state(), "kick"), 50);
  EXPECT_EQ(named_power_level(room.state(), "redact"), 50);
  EXPECT_EQ(named_power_level(room.state(), "invite"), 0);
  room.must_send(room.event(
      "m.room.power_levels", kAlice,
      json::object{{"users", json::object{{kAlice, 100}}}, {"kick", 20}, {"invite", 40}}, ""));
  EXPECT_EQ(named_power_level(room.state(), "ban"), 50);
  EXPECT_EQ(named_power_level(room.state(), "kick"), 20);
  EXPECT_EQ(named_power_level(room.state(), "invite"), 40);
}

// ---- auth_event_keys ---------------------------------------------------------------------------

using Key = std::pair<std::string, std::string>;
using Keys = std::vector<Key>;

TEST(AuthEventKeys, CreateHasNoAuthEvents) {
  auto create =
      parse_object(R"({"type":"m.room.create","sender":"@a:x","state_key":"","content":{}})");
  EXPECT_TRUE(auth_event_keys(create).empty());
}

TEST(AuthEventKeys, MessageNeedsCreatePowerLevelsAndSenderMember) {
  auto message = parse_object(R"({"type":"m.room.message","sender":"@a:x","content":{}})");
  EXPECT_EQ(auth_event_keys(message),
            (Keys{{"m.room.create", ""}, {"m.room.power_levels", ""}, {"m.room.member", "@a:x"}}));
}

TEST(AuthEventKeys, JoinAddsJoinRulesAndDeduplicatesSelf) {
  auto join = parse_object(
      R"({"type":"m.room.member","sender":"@a:x","state_key":"@a:x","content":{"membership":"join"}})");
  EXPECT_EQ(auth_event_keys(join), (Keys{{"m.room.create", ""},
                                         {"m.room.power_levels", ""},
                                         {"m.room.member", "@a:x"},
                                         {"m.room.join_rules", ""}}));
}

TEST(AuthEventKeys, KickHasTargetButNoJoinRules) {
  auto kick = parse_object(
      R"({"type":"m.room.member","sender":"@a:x","state_key":"@b:x","content":{"membership":"leave"}})");
  EXPECT_EQ(auth_event_keys(kick), (Keys{{"m.room.create", ""},
                                         {"m.room.power_levels", ""},
                                         {"m.room.member", "@a:x"},
                                         {"m.room.member", "@b:x"}}));
}

TEST(AuthEventKeys, ThirdPartyInviteAddsToken) {
  auto invite = parse_object(R"({"type":"m.room.member","sender":"@a:x","state_key":"@b:x",
      "content":{"membership":"invite","third_party_invite":{"signed":{"mxid":"@b:x","token":"tok"}}}})");
  EXPECT_EQ(auth_event_keys(invite), (Keys{{"m.room.create", ""},
                                           {"m.room.power_levels", ""},
                                           {"m.room.member", "@a:x"},
                                           {"m.room.member", "@b:x"},
                                           {"m.room.join_rules", ""},
                                           {"m.room.third_party_invite", "tok"}}));
}

TEST(AuthEventKeys, RestrictedJoinAddsAuthoriserMember) {
  auto join = parse_object(R"({"type":"m.room.member","sender":"@b:x","state_key":"@b:x",
      "content":{"membership":"join","join_authorised_via_users_server":"@a:x"}})");
  EXPECT_EQ(auth_event_keys(join), (Keys{{"m.room.create", ""},
                                         {"m.room.power_levels", ""},
                                         {"m.room.member", "@b:x"},
                                         {"m.room.join_rules", ""},
                                         {"m.room.member", "@a:x"}}));
}

TEST(AuthEventKeys, KnockAddsJoinRules) {
  auto knock = parse_object(
      R"({"type":"m.room.member","sender":"@b:x","state_key":"@b:x","content":{"membership":"knock"}})");
  auto keys = auth_event_keys(knock);
  EXPECT_NE(std::find(keys.begin(), keys.end(), Key{"m.room.join_rules", ""}), keys.end());
}

}  // namespace
