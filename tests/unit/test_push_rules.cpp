// Unit tests for push rules: the spec's predefined rules, evaluation and glob matching.
#include "service/push/push_rules.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <gtest/gtest.h>

#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace json = boost::json;
using trestle::service::push::default_ruleset;
using trestle::service::push::evaluate;
using trestle::service::push::EvaluationContext;
using trestle::service::push::glob_matches;
using trestle::service::push::PushDecision;

namespace {

const std::string kUser = "@alice:example.org";
const std::string kOther = "@bob:example.org";
const std::string kRoom = "!room:example.org";

json::object obj(const char* text) { return json::parse(text).as_object(); }

json::object message(const std::string& body, const std::string& sender = kOther) {
  json::object ev;
  ev["type"] = "m.room.message";
  ev["sender"] = sender;
  ev["room_id"] = kRoom;
  ev["event_id"] = "$ev:example.org";
  json::object content;
  content["msgtype"] = "m.text";
  content["body"] = body;
  ev["content"] = std::move(content);
  return ev;
}

EvaluationContext ctx(long long members = 5, std::string display_name = "Alice") {
  EvaluationContext c;
  c.user_id = kUser;
  c.display_name = std::move(display_name);
  c.room_member_count = members;
  c.sender_power_level = 0;
  return c;
}

std::vector<std::string> ids(const json::object& ruleset, const char* kind) {
  std::vector<std::string> out;
  for (const auto& r : ruleset.at(kind).as_array()) {
    out.emplace_back(r.as_object().at("rule_id").as_string());
  }
  return out;
}

const json::object& rule(const json::object& ruleset, const char* kind, const std::string& id) {
  for (const auto& r : ruleset.at(kind).as_array()) {
    if (r.as_object().at("rule_id").as_string() == id) return r.as_object();
  }
  throw std::runtime_error("rule not found: " + id);
}

// A ruleset with one override rule and nothing else.
json::object single_override(const json::object& r) {
  json::object rs = obj(R"({"override":[],"content":[],"room":[],"sender":[],"underride":[]})");
  rs["override"].as_array().push_back(r);
  return rs;
}

// Evaluates `ev` against a ruleset containing only an override rule with `conditions`.
bool conditions_match(const char* conditions, const json::object& ev,
                      const EvaluationContext& c = ctx()) {
  json::object r;
  r["rule_id"] = "test";
  r["enabled"] = true;
  r["default"] = false;
  r["conditions"] = json::parse(conditions);
  r["actions"] = json::array{"notify"};
  return evaluate(single_override(r), ev, c).notify;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Default ruleset shape
// ---------------------------------------------------------------------------------------------

TEST(PushDefaults, KindsPresentInOrder) {
  const auto rs = default_ruleset(kUser);
  std::vector<std::string> keys;
  for (const auto& kv : rs) keys.emplace_back(kv.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"override", "content", "room", "sender", "underride"}));
  EXPECT_TRUE(rs.at("content").as_array().empty());
  EXPECT_TRUE(rs.at("room").as_array().empty());
  EXPECT_TRUE(rs.at("sender").as_array().empty());
}

TEST(PushDefaults, OverrideOrderMatchesSpec) {
  const auto rs = default_ruleset(kUser);
  EXPECT_EQ(ids(rs, "override"),
            (std::vector<std::string>{".m.rule.master", ".m.rule.suppress_notices",
                                      ".m.rule.invite_for_me", ".m.rule.member_event",
                                      ".m.rule.is_user_mention", ".m.rule.is_room_mention",
                                      ".m.rule.tombstone", ".m.rule.reaction",
                                      ".m.rule.room.server_acl", ".m.rule.suppress_edits"}));
}

TEST(PushDefaults, UnderrideOrderMatchesSpec) {
  const auto rs = default_ruleset(kUser);
  EXPECT_EQ(ids(rs, "underride"),
            (std::vector<std::string>{".m.rule.call", ".m.rule.encrypted_room_one_to_one",
                                      ".m.rule.room_one_to_one", ".m.rule.message",
                                      ".m.rule.encrypted"}));
}

TEST(PushDefaults, EveryRuleIsDefaultAndOnlyMasterDisabled) {
  const auto rs = default_ruleset(kUser);
  int count = 0;
  for (const char* kind : {"override", "content", "room", "sender", "underride"}) {
    for (const auto& r : rs.at(kind).as_array()) {
      const auto& o = r.as_object();
      ++count;
      EXPECT_EQ(o.at("default"), json::value(true)) << o.at("rule_id");
      const bool master = o.at("rule_id").as_string() == ".m.rule.master";
      EXPECT_EQ(o.at("enabled"), json::value(!master)) << o.at("rule_id");
      EXPECT_TRUE(o.at("actions").is_array());
      EXPECT_TRUE(o.at("conditions").is_array());
    }
  }
  EXPECT_EQ(count, 15);
}

TEST(PushDefaults, RulesMatchSpecJsonExactly) {
  const auto rs = default_ruleset(kUser);
  EXPECT_EQ(rule(rs, "override", ".m.rule.master"),
            obj(R"({"rule_id":".m.rule.master","default":true,"enabled":false,
                    "conditions":[],"actions":[]})"));
  EXPECT_EQ(rule(rs, "override", ".m.rule.invite_for_me"),
            obj(R"({"rule_id":".m.rule.invite_for_me","default":true,"enabled":true,
                    "conditions":[
                      {"key":"type","kind":"event_match","pattern":"m.room.member"},
                      {"key":"content.membership","kind":"event_match","pattern":"invite"},
                      {"key":"state_key","kind":"event_match","pattern":"@alice:example.org"}],
                    "actions":["notify",{"set_tweak":"sound","value":"default"}]})"));
  EXPECT_EQ(rule(rs, "override", ".m.rule.is_user_mention"),
            obj(R"({"rule_id":".m.rule.is_user_mention","default":true,"enabled":true,
                    "conditions":[{"kind":"event_property_contains",
                                   "key":"content.m\\.mentions.user_ids",
                                   "value":"@alice:example.org"}],
                    "actions":["notify",{"set_tweak":"sound","value":"default"},
                               {"set_tweak":"highlight"}]})"));
  EXPECT_EQ(rule(rs, "override", ".m.rule.is_room_mention"),
            obj(R"({"rule_id":".m.rule.is_room_mention","default":true,"enabled":true,
                    "conditions":[{"kind":"event_property_is","key":"content.m\\.mentions.room",
                                   "value":true},
                                  {"kind":"sender_notification_permission","key":"room"}],
                    "actions":["notify",{"set_tweak":"highlight"}]})"));
  EXPECT_EQ(rule(rs, "override", ".m.rule.tombstone"),
            obj(R"({"rule_id":".m.rule.tombstone","default":true,"enabled":true,
                    "conditions":[{"kind":"event_match","key":"type","pattern":"m.room.tombstone"},
                                  {"kind":"event_match","key":"state_key","pattern":""}],
                    "actions":["notify",{"set_tweak":"highlight"}]})"));
  EXPECT_EQ(rule(rs, "override", ".m.rule.suppress_edits"),
            obj(R"({"rule_id":".m.rule.suppress_edits","default":true,"enabled":true,
                    "conditions":[{"kind":"event_property_is",
                                   "key":"content.m\\.relates_to.rel_type","value":"m.replace"}],
                    "actions":[]})"));
  EXPECT_EQ(rule(rs, "underride", ".m.rule.call"),
            obj(R"({"rule_id":".m.rule.call","default":true,"enabled":true,
                    "conditions":[{"key":"type","kind":"event_match","pattern":"m.call.invite"}],
                    "actions":["notify",{"set_tweak":"sound","value":"ring"}]})"));
  EXPECT_EQ(rule(rs, "underride", ".m.rule.room_one_to_one"),
            obj(R"({"rule_id":".m.rule.room_one_to_one","default":true,"enabled":true,
                    "conditions":[{"kind":"room_member_count","is":"2"},
                                  {"kind":"event_match","key":"type","pattern":"m.room.message"}],
                    "actions":["notify",{"set_tweak":"sound","value":"default"}]})"));
  EXPECT_EQ(rule(rs, "underride", ".m.rule.message"),
            obj(R"({"rule_id":".m.rule.message","default":true,"enabled":true,
                    "conditions":[{"kind":"event_match","key":"type","pattern":"m.room.message"}],
                    "actions":["notify"]})"));
}

TEST(PushDefaults, UserIdIsEmbeddedNotInterpolated) {
  // A user id with JSON-special characters must survive as a plain string value.
  const std::string odd = "@we\"ird\\:example.org";
  const auto rs = default_ruleset(odd);
  const auto& conds = rule(rs, "override", ".m.rule.invite_for_me").at("conditions").as_array();
  EXPECT_EQ(conds.at(2).as_object().at("pattern").as_string(), odd);
}

// ---------------------------------------------------------------------------------------------
// Evaluating messages against the defaults
// ---------------------------------------------------------------------------------------------

TEST(PushEvaluate, OneToOneMessageNotifiesWithSound) {
  const auto d = evaluate(default_ruleset(kUser), message("hello"), ctx(2));
  EXPECT_TRUE(d.notify);
  EXPECT_FALSE(d.highlight);
  EXPECT_EQ(d.actions, rule(default_ruleset(kUser), "underride", ".m.rule.room_one_to_one")
                           .at("actions")
                           .as_array());
}

TEST(PushEvaluate, GroupMessageNotifiesViaMessageRuleWithoutHighlight) {
  const auto d = evaluate(default_ruleset(kUser), message("hello everyone"), ctx(7));
  EXPECT_TRUE(d.notify);
  EXPECT_FALSE(d.highlight);
  EXPECT_EQ(d.actions, json::array{"notify"});
}

TEST(PushEvaluate, UserMentionHighlights) {
  auto ev = message("hey you");
  ev["content"].as_object()["m.mentions"] = json::parse(R"({"user_ids":["@alice:example.org"]})");
  const auto d = evaluate(default_ruleset(kUser), ev, ctx(7));
  EXPECT_TRUE(d.notify);
  EXPECT_TRUE(d.highlight);
}

TEST(PushEvaluate, MentionOfSomeoneElseDoesNotHighlight) {
  auto ev = message("hey bob");
  ev["content"].as_object()["m.mentions"] = json::parse(R"({"user_ids":["@carol:example.org"]})");
  const auto d = evaluate(default_ruleset(kUser), ev, ctx(7));
  EXPECT_TRUE(d.notify);
  EXPECT_FALSE(d.highlight);
}

TEST(PushEvaluate, MentionsKeyWithoutEscapeIsNotNested) {
  // "content.m.mentions" as nested objects {"m":{"mentions":...}} must not satisfy the escaped
  // path content.m\.mentions.user_ids.
  auto ev = message("hey");
  ev["content"].as_object()["m"] =
      json::parse(R"({"mentions":{"user_ids":["@alice:example.org"]}})");
  EXPECT_FALSE(evaluate(default_ruleset(kUser), ev, ctx(7)).highlight);
}

TEST(PushEvaluate, RoomMentionNeedsPowerLevel) {
  auto ev = message("@room lunch!");
  ev["content"].as_object()["m.mentions"] = json::parse(R"({"room":true})");
  auto c = ctx(7);
  c.sender_power_level = 0;
  auto d = evaluate(default_ruleset(kUser), ev, c);
  EXPECT_TRUE(d.notify);  // still .m.rule.message
  EXPECT_FALSE(d.highlight);

  c.sender_power_level = 50;  // default notifications.room is 50
  d = evaluate(default_ruleset(kUser), ev, c);
  EXPECT_TRUE(d.notify);
  EXPECT_TRUE(d.highlight);

  c.power_levels_content = obj(R"({"notifications":{"room":75}})");
  EXPECT_FALSE(evaluate(default_ruleset(kUser), ev, c).highlight);
  c.sender_power_level = 100;
  EXPECT_TRUE(evaluate(default_ruleset(kUser), ev, c).highlight);
}

TEST(PushEvaluate, RoomMentionStringTrueDoesNotMatch) {
  auto ev = message("@room");
  ev["content"].as_object()["m.mentions"] = json::parse(R"({"room":"true"})");
  auto c = ctx(7);
  c.sender_power_level = 100;
  EXPECT_FALSE(evaluate(default_ruleset(kUser), ev, c).highlight);
}

TEST(PushEvaluate, DisplayNameConditionHighlightsWhenRuleConfigured) {
  // The spec (v1.17+) dropped the default .m.rule.contains_display_name rule; a user can still
  // configure the (deprecated) condition themselves.
  auto rs = default_ruleset(kUser);
  auto& overrides = rs["override"].as_array();
  overrides.insert(overrides.begin() + 1,
                   obj(R"({"rule_id":"dn","default":false,"enabled":true,
                           "conditions":[{"kind":"contains_display_name"}],
                           "actions":["notify",{"set_tweak":"highlight"}]})"));
  auto c = ctx(7, "Alice Smith");
  EXPECT_TRUE(evaluate(rs, message("hi alice smith, how are you?"), c).highlight);
  EXPECT_TRUE(evaluate(rs, message("ALICE SMITH"), c).highlight);
  EXPECT_FALSE(evaluate(rs, message("hi alice smithers"), c).highlight);
  EXPECT_FALSE(evaluate(rs, message("hi alice"), c).highlight);
  // Glob characters in a display name are literal.
  c.display_name = "a*";
  EXPECT_TRUE(evaluate(rs, message("look: a* here"), c).highlight);
  EXPECT_FALSE(evaluate(rs, message("look: abc here"), c).highlight);
  // No display name: never matches.
  c.display_name = "";
  EXPECT_FALSE(evaluate(rs, message("hi"), c).highlight);
}

TEST(PushEvaluate, DisplayNameAloneDoesNotHighlightWithDefaults) {
  const auto d = evaluate(default_ruleset(kUser), message("hi Alice"), ctx(7, "Alice"));
  EXPECT_TRUE(d.notify);
  EXPECT_FALSE(d.highlight);
}

TEST(PushEvaluate, NoticeSuppressed) {
  auto ev = message("bot says hi");
  ev["content"].as_object()["msgtype"] = "m.notice";
  const auto d = evaluate(default_ruleset(kUser), ev, ctx(2));
  EXPECT_FALSE(d.notify);
  EXPECT_FALSE(d.highlight);
  EXPECT_TRUE(d.actions.empty());
}

TEST(PushEvaluate, EditSuppressedEvenWhenMentioning) {
  auto ev = message("* fixed typo");
  auto& content = ev["content"].as_object();
  content["m.relates_to"] = json::parse(R"({"rel_type":"m.replace","event_id":"$orig"})");
  const auto d = evaluate(default_ruleset(kUser), ev, ctx(7));
  EXPECT_FALSE(d.notify);

  // A reply (different rel_type) is not suppressed.
  content["m.relates_to"] = json::parse(R"({"rel_type":"m.thread","event_id":"$orig"})");
  EXPECT_TRUE(evaluate(default_ruleset(kUser), ev, ctx(7)).notify);
}

TEST(PushEvaluate, OwnMessagesNeverNotify) {
  auto ev = message("talking to myself", kUser);
  ev["content"].as_object()["m.mentions"] = json::parse(R"({"user_ids":["@alice:example.org"]})");
  const auto d = evaluate(default_ruleset(kUser), ev, ctx(2));
  EXPECT_FALSE(d.notify);
  EXPECT_FALSE(d.highlight);
}

TEST(PushEvaluate, MasterRuleDisabledVsEnabled) {
  auto rs = default_ruleset(kUser);
  EXPECT_TRUE(evaluate(rs, message("hi"), ctx(2)).notify);
  rs["override"].as_array()[0].as_object()["enabled"] = true;
  auto ev = message("hi");
  ev["content"].as_object()["m.mentions"] = json::parse(R"({"user_ids":["@alice:example.org"]})");
  const auto d = evaluate(rs, ev, ctx(2));
  EXPECT_FALSE(d.notify);
  EXPECT_FALSE(d.highlight);
}

TEST(PushEvaluate, EnabledMasterBeatsEarlierUserOverride) {
  auto rs = default_ruleset(kUser);
  auto& overrides = rs["override"].as_array();
  overrides[0].as_object()["enabled"] = true;
  // Misplaced user rule ahead of master: master still wins.
  overrides.insert(overrides.begin(), obj(R"({"rule_id":"mine","default":false,"enabled":true,
                                            "conditions":[],"actions":["notify"]})"));
  EXPECT_FALSE(evaluate(rs, message("hi"), ctx(7)).notify);
}

TEST(PushEvaluate, InviteForMe) {
  const auto invite = obj(R"({"type":"m.room.member","sender":"@bob:example.org",
                              "room_id":"!room:example.org","state_key":"@alice:example.org",
                              "content":{"membership":"invite"}})");
  auto d = evaluate(default_ruleset(kUser), invite, ctx(7));
  EXPECT_TRUE(d.notify);
  EXPECT_FALSE(d.highlight);

  auto join = invite;
  join["content"].as_object()["membership"] = "join";
  EXPECT_FALSE(evaluate(default_ruleset(kUser), join, ctx(7)).notify);

  auto other = invite;
  other["state_key"] = "@carol:example.org";
  EXPECT_FALSE(evaluate(default_ruleset(kUser), other, ctx(7)).notify);
}

TEST(PushEvaluate, TombstoneHighlightsOnlyAsState) {
  auto ev = obj(R"({"type":"m.room.tombstone","sender":"@bob:example.org","state_key":"",
                    "room_id":"!room:example.org","content":{"body":"moved"}})");
  auto d = evaluate(default_ruleset(kUser), ev, ctx(7));
  EXPECT_TRUE(d.notify);
  EXPECT_TRUE(d.highlight);
  ev.erase("state_key");
  EXPECT_FALSE(evaluate(default_ruleset(kUser), ev, ctx(7)).notify);
}

TEST(PushEvaluate, ReactionsAndAclSuppressed) {
  const auto reaction = obj(R"({"type":"m.reaction","sender":"@bob:example.org",
                                "room_id":"!room:example.org","content":{}})");
  EXPECT_FALSE(evaluate(default_ruleset(kUser), reaction, ctx(2)).notify);
  const auto acl = obj(R"({"type":"m.room.server_acl","sender":"@bob:example.org",
                           "room_id":"!room:example.org","state_key":"","content":{}})");
  EXPECT_FALSE(evaluate(default_ruleset(kUser), acl, ctx(2)).notify);
}

TEST(PushEvaluate, CallAndEncrypted) {
  const auto call = obj(R"({"type":"m.call.invite","sender":"@bob:example.org",
                            "room_id":"!room:example.org","content":{}})");
  auto d = evaluate(default_ruleset(kUser), call, ctx(2));
  EXPECT_TRUE(d.notify);
  EXPECT_EQ(d.actions, json::parse(R"(["notify",{"set_tweak":"sound","value":"ring"}])"));

  const auto enc = obj(R"({"type":"m.room.encrypted","sender":"@bob:example.org",
                           "room_id":"!room:example.org","content":{"ciphertext":"x"}})");
  d = evaluate(default_ruleset(kUser), enc, ctx(2));
  EXPECT_TRUE(d.notify);
  EXPECT_EQ(d.actions, json::parse(R"(["notify",{"set_tweak":"sound","value":"default"}])"));
  d = evaluate(default_ruleset(kUser), enc, ctx(3));
  EXPECT_TRUE(d.notify);
  EXPECT_EQ(d.actions, json::array{"notify"});
}

TEST(PushEvaluate, UnknownEventTypeDoesNotNotify) {
  const auto ev = obj(R"({"type":"org.example.custom","sender":"@bob:example.org",
                          "room_id":"!room:example.org","content":{"body":"hi"}})");
  const auto d = evaluate(default_ruleset(kUser), ev, ctx(2));
  EXPECT_FALSE(d.notify);
  EXPECT_TRUE(d.actions.empty());
}

// ---------------------------------------------------------------------------------------------
// Rule kinds, priority and actions
// ---------------------------------------------------------------------------------------------

TEST(PushEvaluate, ContentRuleMatchesBodyAtWordBoundary) {
  auto rs = default_ruleset(kUser);
  rs["content"].as_array().push_back(
      obj(R"({"rule_id":"cake","default":false,"enabled":true,"pattern":"cake*lie",
              "actions":["notify",{"set_tweak":"highlight"}]})"));
  EXPECT_TRUE(evaluate(rs, message("the CAKE is a lie!"), ctx(7)).highlight);
  EXPECT_FALSE(evaluate(rs, message("the cake is a lies"), ctx(7)).highlight);
  EXPECT_FALSE(evaluate(rs, message("pancake is a lie"), ctx(7)).highlight);
}

TEST(PushEvaluate, RoomAndSenderRules) {
  auto rs = default_ruleset(kUser);
  rs["room"].as_array().push_back(obj(R"({"rule_id":"!room:example.org","default":false,
                                          "enabled":true,"actions":[]})"));
  EXPECT_FALSE(evaluate(rs, message("hi"), ctx(2)).notify);
  auto elsewhere = message("hi");
  elsewhere["room_id"] = "!other:example.org";
  EXPECT_TRUE(evaluate(rs, elsewhere, ctx(2)).notify);

  auto rs2 = default_ruleset(kUser);
  rs2["sender"].as_array().push_back(obj(R"({"rule_id":"@bob:example.org","default":false,
                                             "enabled":true,"actions":["dont_notify"]})"));
  EXPECT_FALSE(evaluate(rs2, message("hi"), ctx(2)).notify);
  EXPECT_TRUE(evaluate(rs2, message("hi", "@carol:example.org"), ctx(2)).notify);
}

TEST(PushEvaluate, KindPriorityOverrideBeforeContentBeforeRoom) {
  auto rs = default_ruleset(kUser);
  rs["room"].as_array().push_back(obj(R"({"rule_id":"!room:example.org","default":false,
                                          "enabled":true,"actions":[]})"));
  rs["content"].as_array().push_back(obj(R"({"rule_id":"tea","default":false,"enabled":true,
                                             "pattern":"tea","actions":["notify"]})"));
  // Content rule outranks the room rule.
  EXPECT_TRUE(evaluate(rs, message("time for tea"), ctx(7)).notify);
  EXPECT_FALSE(evaluate(rs, message("time for coffee"), ctx(7)).notify);
  // Override (suppress_notices) outranks the content rule.
  auto notice = message("time for tea");
  notice["content"].as_object()["msgtype"] = "m.notice";
  EXPECT_FALSE(evaluate(rs, notice, ctx(7)).notify);
}

TEST(PushEvaluate, DisabledRulesAreSkipped) {
  auto rs = default_ruleset(kUser);
  for (auto& r : rs["underride"].as_array()) {
    auto& o = r.as_object();
    if (o["rule_id"] == ".m.rule.room_one_to_one") o["enabled"] = false;
  }
  const auto d = evaluate(rs, message("hi"), ctx(2));
  EXPECT_TRUE(d.notify);
  EXPECT_EQ(d.actions, json::array{"notify"});  // fell through to .m.rule.message
}

TEST(PushEvaluate, ActionsInterpretation) {
  auto run = [](const char* actions) {
    json::object r = obj(R"({"rule_id":"x","default":false,"enabled":true,"conditions":[]})");
    r["actions"] = json::parse(actions);
    return evaluate(single_override(r), message("hi"), ctx(7));
  };
  PushDecision d = run(R"([])");
  EXPECT_FALSE(d.notify);
  d = run(R"(["dont_notify"])");
  EXPECT_FALSE(d.notify);
  EXPECT_EQ(d.actions, json::array{"dont_notify"});  // returned as stored
  d = run(R"(["notify","coalesce"])");
  EXPECT_TRUE(d.notify);
  EXPECT_FALSE(d.highlight);
  d = run(R"(["notify",{"set_tweak":"highlight"}])");
  EXPECT_TRUE(d.highlight);
  d = run(R"(["notify",{"set_tweak":"highlight","value":true}])");
  EXPECT_TRUE(d.highlight);
  d = run(R"(["notify",{"set_tweak":"highlight","value":false}])");
  EXPECT_TRUE(d.notify);
  EXPECT_FALSE(d.highlight);
  d = run(R"(["notify",{"set_tweak":"sound","value":"default"}])");
  EXPECT_FALSE(d.highlight);
}

TEST(PushEvaluate, NoRulesNoNotification) {
  const auto d = evaluate(json::object{}, message("hi"), ctx(2));
  EXPECT_FALSE(d.notify);
  EXPECT_FALSE(d.highlight);
}

TEST(PushEvaluate, RuleWithoutConditionsAlwaysMatches) {
  json::object r = obj(R"({"rule_id":"all","default":false,"enabled":true,"actions":["notify"]})");
  EXPECT_TRUE(evaluate(single_override(r), message("x"), ctx(7)).notify);
}

TEST(PushConditions, UnknownConditionNeverMatches) {
  EXPECT_FALSE(conditions_match(R"([{"kind":"org.example.future"}])", message("hi")));
  EXPECT_FALSE(conditions_match(R"([{"kind":"event_match","key":"type"}])", message("hi")));
}

// ---------------------------------------------------------------------------------------------
// Conditions
// ---------------------------------------------------------------------------------------------

TEST(PushConditions, RoomMemberCountComparisons) {
  const auto ev = message("hi");
  struct Case {
    const char* is;
    long long members;
    bool expect;
  };
  const Case cases[] = {
      {"2", 2, true},    {"2", 3, false},   {"==2", 2, true},  {"==2", 1, false},
      {"<5", 4, true},   {"<5", 5, false},  {">5", 6, true},   {">5", 5, false},
      {"<=5", 5, true},  {"<=5", 6, false}, {">=5", 5, true},  {">=5", 4, false},
      {"10", 10, true},  {"abc", 2, false}, {"", 0, false},    {"<", 0, false},
      {">=x", 9, false}, {"2x", 2, false},  {"=2", 2, false},  {">=100", 150, true},
  };
  for (const auto& c : cases) {
    json::array conds;
    json::object cond;
    cond["kind"] = "room_member_count";
    cond["is"] = c.is;
    conds.push_back(std::move(cond));
    EXPECT_EQ(conditions_match(json::serialize(conds).c_str(), ev, ctx(c.members)), c.expect)
        << "is=" << c.is << " members=" << c.members;
  }
}

TEST(PushConditions, SenderNotificationPermission) {
  const char* cond = R"([{"kind":"sender_notification_permission","key":"room"}])";
  auto c = ctx();
  c.sender_power_level = 49;
  EXPECT_FALSE(conditions_match(cond, message("x"), c));
  c.sender_power_level = 50;
  EXPECT_TRUE(conditions_match(cond, message("x"), c));
  c.power_levels_content = obj(R"({"notifications":{"room":0}})");
  c.sender_power_level = 0;
  EXPECT_TRUE(conditions_match(cond, message("x"), c));
  c.power_levels_content = obj(R"({"notifications":{"other":0}})");
  EXPECT_FALSE(conditions_match(cond, message("x"), c));  // room falls back to 50
}

TEST(PushConditions, EscapedDottedPaths) {
  const auto ev = obj(R"({"type":"m.room.message","sender":"@bob:example.org",
                          "room_id":"!room:example.org",
                          "content":{"m.relates_to":{"rel_type":"m.thread"},
                                     "m":{"relates_to":{"rel_type":"nested"}},
                                     "back\\slash":"yes",
                                     "raw\\x":"kept",
                                     "a.b.c":"deep-dots"}})");
  EXPECT_TRUE(conditions_match(
      R"([{"kind":"event_match","key":"content.m\\.relates_to.rel_type","pattern":"m.thread"}])",
      ev));
  EXPECT_TRUE(conditions_match(
      R"([{"kind":"event_match","key":"content.m.relates_to.rel_type","pattern":"nested"}])", ev));
  EXPECT_FALSE(conditions_match(
      R"([{"kind":"event_match","key":"content.m.relates_to.rel_type","pattern":"m.thread"}])",
      ev));
  // "\\" in a path is one literal backslash.
  EXPECT_TRUE(conditions_match(
      R"([{"kind":"event_match","key":"content.back\\\\slash","pattern":"yes"}])", ev));
  // Other escape sequences are kept as-is: "\x" is a backslash followed by x.
  EXPECT_TRUE(conditions_match(
      R"([{"kind":"event_match","key":"content.raw\\x","pattern":"kept"}])", ev));
  EXPECT_TRUE(conditions_match(
      R"([{"kind":"event_property_is","key":"content.a\\.b\\.c","value":"deep-dots"}])", ev));
  EXPECT_FALSE(conditions_match(
      R"([{"kind":"event_property_is","key":"content.a.b.c","value":"deep-dots"}])", ev));
}

TEST(PushConditions, EventMatchRequiresStringValue) {
  const auto ev = obj(R"({"type":"m.room.topic","sender":"@bob:example.org","state_key":"",
                          "content":{"topic":null,"num":5,"obj":{}}})");
  EXPECT_FALSE(conditions_match(
      R"([{"kind":"event_match","key":"content.topic","pattern":"*"}])", ev));
  EXPECT_FALSE(conditions_match(
      R"([{"kind":"event_match","key":"content.num","pattern":"*"}])", ev));
  EXPECT_FALSE(conditions_match(
      R"([{"kind":"event_match","key":"content.obj","pattern":"*"}])", ev));
  EXPECT_FALSE(conditions_match(
      R"([{"kind":"event_match","key":"content.missing","pattern":"*"}])", ev));
  EXPECT_TRUE(conditions_match(R"([{"kind":"event_match","key":"state_key","pattern":""}])", ev));
}

TEST(PushConditions, EventMatchSpecTopicExample) {
  auto ev = obj(R"({"type":"m.room.topic","sender":"@bob:example.org","state_key":"",
                    "content":{"topic":"Lunch plans"}})");
  const char* cond = R"([{"kind":"event_match","key":"content.topic","pattern":"lunc?*"}])";
  EXPECT_TRUE(conditions_match(cond, ev));
  ev["content"].as_object()["topic"] = "LUNCH";
  EXPECT_TRUE(conditions_match(cond, ev));
  ev["content"].as_object()["topic"] = " lunch";
  EXPECT_FALSE(conditions_match(cond, ev));
  ev["content"].as_object()["topic"] = "lunc";
  EXPECT_FALSE(conditions_match(cond, ev));
}

TEST(PushConditions, EventPropertyIsExactValues) {
  const auto ev = obj(R"({"type":"m.room.create","sender":"@bob:example.org","state_key":"",
                          "content":{"m.federate":true,"n":1,"s":"true","z":null,"f":1.0,
                                     "arr":[1],"neg":-3}})");
  auto is = [&](const char* key, const char* value) {
    std::string c = std::string(R"([{"kind":"event_property_is","key":")") + key +
                    R"(","value":)" + value + "}]";
    return conditions_match(c.c_str(), ev);
  };
  EXPECT_TRUE(is("content.m\\\\.federate", "true"));
  EXPECT_FALSE(is("content.m\\\\.federate", "\"true\""));
  EXPECT_FALSE(is("content.m\\\\.federate", "1"));
  EXPECT_TRUE(is("content.n", "1"));
  EXPECT_FALSE(is("content.n", "true"));
  EXPECT_FALSE(is("content.n", "\"1\""));
  EXPECT_TRUE(is("content.s", "\"true\""));
  EXPECT_FALSE(is("content.s", "true"));
  EXPECT_TRUE(is("content.z", "null"));
  EXPECT_FALSE(is("content.missing", "null"));
  EXPECT_FALSE(is("content.f", "1"));  // floats are not canonical JSON
  EXPECT_FALSE(is("content.arr", "[1]"));
  EXPECT_TRUE(is("content.neg", "-3"));
}

TEST(PushConditions, EventPropertyContains) {
  const auto ev = obj(R"({"type":"m.room.canonical_alias","sender":"@bob:example.org",
                          "state_key":"",
                          "content":{"alt_aliases":["#somewhere:example.org","#myroom:example.com",
                                                    7,false,null,{"x":1}],
                                     "notarray":"#myroom:example.com"}})");
  auto contains = [&](const char* key, const char* value) {
    std::string c = std::string(R"([{"kind":"event_property_contains","key":")") + key +
                    R"(","value":)" + value + "}]";
    return conditions_match(c.c_str(), ev);
  };
  EXPECT_TRUE(contains("content.alt_aliases", "\"#myroom:example.com\""));
  EXPECT_FALSE(contains("content.alt_aliases", "\":example.com\""));
  EXPECT_TRUE(contains("content.alt_aliases", "7"));
  EXPECT_FALSE(contains("content.alt_aliases", "\"7\""));
  EXPECT_TRUE(contains("content.alt_aliases", "false"));
  EXPECT_TRUE(contains("content.alt_aliases", "null"));
  EXPECT_FALSE(contains("content.alt_aliases", "true"));
  EXPECT_FALSE(contains("content.alt_aliases", "{\"x\":1}"));
  EXPECT_FALSE(contains("content.notarray", "\"#myroom:example.com\""));
  EXPECT_FALSE(contains("content.missing", "null"));
}

// ---------------------------------------------------------------------------------------------
// Glob matching
// ---------------------------------------------------------------------------------------------

TEST(PushGlob, StarMatchesAnyRun) {
  EXPECT_TRUE(glob_matches("cake*lie", "cakeisalie", false));
  EXPECT_TRUE(glob_matches("cake*lie", "cakelie", false));
  EXPECT_TRUE(glob_matches("cake*lie", "cake is a lie", false));
  EXPECT_FALSE(glob_matches("cake*lie", "cake is a lie!", false));
  EXPECT_FALSE(glob_matches("cake*lie", "the cake is a lie", false));
  EXPECT_TRUE(glob_matches("*", "", false));
  EXPECT_TRUE(glob_matches("*", "anything", false));
  EXPECT_TRUE(glob_matches("**a**", "xxaxx", false));
  EXPECT_TRUE(glob_matches("", "", false));
  EXPECT_FALSE(glob_matches("", "x", false));
}

TEST(PushGlob, QuestionMarkMatchesExactlyOneCharacter) {
  EXPECT_TRUE(glob_matches("c?t", "cat", false));
  EXPECT_FALSE(glob_matches("c?t", "ct", false));
  EXPECT_FALSE(glob_matches("c?t", "coat", false));
  EXPECT_TRUE(glob_matches("?", "x", false));
  EXPECT_FALSE(glob_matches("?", "", false));
  // One character, not one byte.
  EXPECT_TRUE(glob_matches("c?t", "c\xC3\xA9t", false));       // é
  EXPECT_TRUE(glob_matches("?", "\xF0\x9F\x8E\x82", false));   // 🎂
  EXPECT_FALSE(glob_matches("??", "\xF0\x9F\x8E\x82", false));
}

TEST(PushGlob, CaseInsensitive) {
  EXPECT_TRUE(glob_matches("m.room.MESSAGE", "M.Room.Message", false));
  EXPECT_TRUE(glob_matches("CAKE*", "cakes", false));
  EXPECT_TRUE(glob_matches("\xC3\x89" "CLAIR", "\xC3\xA9" "clair", false));  // ÉCLAIR / éclair
  EXPECT_TRUE(glob_matches("\xD0\x9F\xD0\xA0\xD0\x98\xD0\x92\xD0\x95\xD0\xA2",
                           "\xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82", false));  // ПРИВЕТ
}

TEST(PushGlob, WholeValueWithoutWordBoundary) {
  EXPECT_FALSE(glob_matches("cake", "the cake", false));
  EXPECT_TRUE(glob_matches("cake", "cake", false));
}

TEST(PushGlob, WordBoundaryForBody) {
  EXPECT_TRUE(glob_matches("cake", "I like cake.", true));
  EXPECT_TRUE(glob_matches("cake", "cake", true));
  EXPECT_TRUE(glob_matches("CAKE", "cake!", true));
  EXPECT_FALSE(glob_matches("cake", "pancakes", true));
  EXPECT_FALSE(glob_matches("cake", "cakes", true));
  EXPECT_FALSE(glob_matches("cake", "pancake", true));
  EXPECT_FALSE(glob_matches("cake", "cake_shop", true));  // '_' is a word character
  EXPECT_TRUE(glob_matches("cake", "cake-shop", true));
  EXPECT_TRUE(glob_matches("cake*lie", "The cake is a lie!", true));
  EXPECT_FALSE(glob_matches("cake*lie", "The cake is a lier", true));
  // The spec's examples.
  EXPECT_TRUE(glob_matches("ex*ple", "An example event.", true));
  EXPECT_TRUE(glob_matches("ex*ple", "exple", true));
  EXPECT_TRUE(glob_matches("ex*ple", "An exciting triple-whammy", true));
  EXPECT_FALSE(glob_matches("ex*ple", "An examples event", true));
  // '?' at a boundary.
  EXPECT_TRUE(glob_matches("b?g", "a big dog", true));
  EXPECT_FALSE(glob_matches("b?g", "a bigger dog", true));
  // Digits are word characters.
  EXPECT_FALSE(glob_matches("room", "room2", true));
  EXPECT_TRUE(glob_matches("room", "2 room", true));
}

TEST(PushGlob, LargeInputsStayFast) {
  // Pathological backtracking patterns must not explode.
  const std::string value(20000, 'a');
  std::string pattern;
  for (int i = 0; i < 30; ++i) pattern += "*a";
  pattern += "b";
  EXPECT_FALSE(glob_matches(pattern, value, false));
  EXPECT_FALSE(glob_matches(pattern, value, true));
}

// ---------------------------------------------------------------------------------------------
// One decision for every user on the default rules (the evaluator's large-room shortcut)
// ---------------------------------------------------------------------------------------------

TEST(PushSingledOut, UsersNotSingledOutGetTheSameDecision) {
  using trestle::service::push::users_singled_out_by_default_rules;
  const std::vector<std::string> users = {kUser, "@ALICE:example.org", "@carol:example.org", "@*:example.org",
                                          "@?lice:example.org", "@dave:other.org"};
  std::vector<json::object> events;
  events.push_back(message("hello alice"));
  auto mention = message("hey");
  mention["content"].as_object()["m.mentions"] = json::parse(R"({"user_ids":["@alice:example.org", 3]})");
  events.push_back(mention);
  auto notice = message("beep");
  notice["content"].as_object()["msgtype"] = "m.notice";
  events.push_back(notice);
  for (const char* membership : {"join", "invite", "INVITE", "leave"}) {
    for (const char* type : {"m.room.member", "M.Room.Member"}) {
      for (const std::string& target : {kUser, std::string("@ALICE:example.org"), std::string("@*:example.org")}) {
        json::object ev = obj(R"({"sender":"@bob:example.org","room_id":"!room:example.org","content":{}})");
        ev["type"] = type;
        ev["state_key"] = target;
        ev["content"].as_object()["membership"] = membership;
        events.push_back(ev);
      }
    }
  }
  json::object tombstone = obj(R"({"type":"m.room.tombstone","state_key":"","sender":"@bob:example.org",
                                   "room_id":"!room:example.org","content":{"body":"moved"}})");
  events.push_back(tombstone);
  for (const auto& ev : events) {
    for (long long members : {2LL, 7LL}) {
      auto singled = users_singled_out_by_default_rules(ev);
      if (!singled) {
        // Only invites may single out anyone.
        EXPECT_TRUE(ev.contains("state_key")) << json::serialize(ev);
        continue;
      }
      std::optional<PushDecision> first;
      for (const auto& u : users) {
        if (singled->count(u)) continue;
        auto c = ctx(members, "");
        c.user_id = u;
        auto d = evaluate(default_ruleset(u), ev, c);
        if (!first) {
          first = d;
          continue;
        }
        EXPECT_EQ(d.notify, first->notify) << u << " " << json::serialize(ev);
        EXPECT_EQ(d.highlight, first->highlight) << u << " " << json::serialize(ev);
        EXPECT_EQ(d.actions, first->actions) << u << " " << json::serialize(ev);
      }
    }
  }
  EXPECT_EQ(*users_singled_out_by_default_rules(mention), std::set<std::string>{kUser});
  EXPECT_FALSE(users_singled_out_by_default_rules(events[3 + 6]).has_value());  // the first invite
}
