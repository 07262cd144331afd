#pragma once
// Push rules (spec: content/client-server-api/modules/push.md): the server-default rule set,
// merging a user's own rules with it, and evaluating an event against the rules to decide whether
// it notifies and/or highlights (used for unread_notifications in /sync).
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <functional>
#include <optional>
#include <set>
#include <string>

namespace trestle::service::push {

// The spec's default rules for `user_id` in the shape GET /pushrules/ returns under "global":
// {"override": [...], "content": [...], "room": [], "sender": [], "underride": [...]}, every
// rule with "default": true; all enabled except .m.rule.master, as the spec ships it.
boost::json::object default_ruleset(const std::string& user_id);

// The default ruleset names its user in two conditions only: .m.rule.invite_for_me (state_key,
// on m.room.member events) and .m.rule.is_user_mention (content.m.mentions.user_ids). So for any
// other event, every user on the default rules gets the same decision except the users returned
// here (those the event mentions): the evaluator decides once for the rest. nullopt: an invite
// (a state event with membership "invite"), where each user's decision may differ.
// The default rules never look at the user's display name.
std::optional<std::set<std::string>> users_singled_out_by_default_rules(const boost::json::object& event);

// What evaluating needs to know about the room and the user at the time of the event.
struct EvaluationContext {
  std::string user_id;                       // whose rules these are
  std::string display_name;                  // the user's display name in the room ("" if none)
  long long room_member_count = 0;           // joined members
  long long sender_power_level = 0;
  boost::json::object power_levels_content;  // the room's m.room.power_levels content ({} if none)
};

struct PushDecision {
  bool notify = false;
  bool highlight = false;
  boost::json::array actions;  // the actions of the matching rule, as stored
};

// Evaluates `event` (client format: type, content, sender, room_id, state_key...) against the
// ruleset (the "global" object, defaults merged with user rules in the spec's priority order:
// override, content, room, sender, underride; disabled rules skipped). The first matching rule
// wins. Events sent by ctx.user_id never notify.
PushDecision evaluate(const boost::json::object& ruleset, const boost::json::object& event,
                      const EvaluationContext& ctx);

// Glob matching as the spec defines for event_match ('*' any run, '?' one character), case-
// insensitive; matches the whole value, except for content.body where patterns match at word
// boundaries.
bool glob_matches(const std::string& pattern, const std::string& value, bool word_boundary);

}  // namespace trestle::service::push
