// Push rules: the spec's predefined rules, condition evaluation and glob matching.
// Spec: content/client-server-api/modules/push.md ("Push Rules", "Conditions", "Predefined
// Rules") and content/appendices.md ("Glob-style matching", "Dot-separated property paths").
#include "service/push/push_rules.hpp"

#include <boost/json/value.hpp>

#include <cstdint>
#include <string_view>
#include <vector>

namespace trestle::service::push {

namespace json = boost::json;

namespace {

// ---------------------------------------------------------------------------------------------
// Building the predefined rules
// ---------------------------------------------------------------------------------------------

json::object make_rule(std::string_view rule_id, bool enabled, json::array conditions,
                       json::array actions) {
  json::object rule;
  rule["rule_id"] = rule_id;
  rule["default"] = true;
  rule["enabled"] = enabled;
  rule["conditions"] = std::move(conditions);
  rule["actions"] = std::move(actions);
  return rule;
}

json::object cond_event_match(std::string_view key, std::string_view pattern) {
  json::object c;
  c["kind"] = "event_match";
  c["key"] = key;
  c["pattern"] = pattern;
  return c;
}

json::object cond_property_is(std::string_view key, json::value value) {
  json::object c;
  c["kind"] = "event_property_is";
  c["key"] = key;
  c["value"] = std::move(value);
  return c;
}

json::object cond_property_contains(std::string_view key, json::value value) {
  json::object c;
  c["kind"] = "event_property_contains";
  c["key"] = key;
  c["value"] = std::move(value);
  return c;
}

json::object cond_member_count(std::string_view is) {
  json::object c;
  c["kind"] = "room_member_count";
  c["is"] = is;
  return c;
}

json::object cond_sender_permission(std::string_view key) {
  json::object c;
  c["kind"] = "sender_notification_permission";
  c["key"] = key;
  return c;
}

json::object tweak(std::string_view name, std::optional<json::value> value = std::nullopt) {
  json::object t;
  t["set_tweak"] = name;
  if (value) t["value"] = std::move(*value);
  return t;
}

json::array actions_notify_sound(std::string_view sound) {
  return json::array{"notify", tweak("sound", json::value(sound))};
}

// ---------------------------------------------------------------------------------------------
// Text helpers: UTF-8 decoding, case folding, word characters
// ---------------------------------------------------------------------------------------------

// Decodes UTF-8 into code points so that '?' matches one character, not one byte. Malformed
// bytes become distinct values above U+10FFFF so they still compare only with themselves.
std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    char32_t cp = 0;
    if (b0 < 0x80) {
      len = 1;
      cp = b0;
    } else if ((b0 & 0xE0) == 0xC0) {
      len = 2;
      cp = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3;
      cp = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4;
      cp = b0 & 0x07;
    }
    bool ok = len != 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) {
        ok = false;
      } else {
        cp = (cp << 6) | (b & 0x3F);
      }
    }
    if (ok) {
      // Reject overlong forms and out-of-range values.
      static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
      if (cp < kMin[len] || cp > 0x10FFFF) ok = false;
    }
    if (ok) {
      out.push_back(cp);
      i += len;
    } else {
      out.push_back(static_cast<char32_t>(0x110000 + b0));
      i += 1;
    }
  }
  return out;
}

// Simple case folding: ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic capitals. The spec
// leaves the exact meaning of "case insensitive" to the homeserver.
char32_t fold(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
  if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) return c | 1;
  if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c + 1 : c;
  if (c == 0x178) return 0xFF;
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c == 0x3C2) return 0x3C3;  // final sigma
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}

// The spec's word characters: [A-Z], [a-z], [0-9] and '_'. Everything else is a boundary.
bool is_word_char(char32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// A match may start at i when i is the start of the value, follows a boundary character, or
// begins with a boundary character itself; likewise for ends.
bool valid_start(const std::u32string& v, size_t i) {
  return i == 0 || !is_word_char(v[i - 1]) || (i < v.size() && !is_word_char(v[i]));
}

bool valid_end(const std::u32string& v, size_t j) {
  return j == v.size() || !is_word_char(v[j]) || (j > 0 && !is_word_char(v[j - 1]));
}

// Core matcher over decoded text. `literal` treats '*' and '?' as ordinary characters (used for
// display names). Runs in O(pattern * value) time: for every pattern prefix it tracks the set of
// value positions where that prefix can end, so adversarial patterns cannot blow up.
bool match_impl(const std::u32string& pat, const std::u32string& val, bool word_boundary,
                bool literal) {
  const size_t n = val.size();
  std::vector<char> reach(n + 1, 0), next(n + 1, 0);
  if (word_boundary) {
    for (size_t i = 0; i <= n; ++i) reach[i] = valid_start(val, i) ? 1 : 0;
  } else {
    reach[0] = 1;
  }
  for (const char32_t pc : pat) {
    if (!literal && pc == U'*') {
      char any = 0;
      for (size_t j = 0; j <= n; ++j) {
        any = static_cast<char>(any | reach[j]);
        next[j] = any;
      }
    } else {
      next[0] = 0;
      const bool any_char = !literal && pc == U'?';
      const char32_t fp = fold(pc);
      for (size_t j = 1; j <= n; ++j) {
        next[j] = (reach[j - 1] && (any_char || fold(val[j - 1]) == fp)) ? 1 : 0;
      }
    }
    reach.swap(next);
  }
  if (!word_boundary) return reach[n] != 0;
  for (size_t j = 0; j <= n; ++j) {
    if (reach[j] && valid_end(val, j)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Event property access
// ---------------------------------------------------------------------------------------------

// Splits a dot-separated path: "\." is a literal dot, "\\" a literal backslash, and any other
// backslash sequence is kept as-is.
std::vector<std::string> split_path(std::string_view key) {
  std::vector<std::string> parts(1);
  for (size_t i = 0; i < key.size(); ++i) {
    const char c = key[i];
    if (c == '\\' && i + 1 < key.size() && (key[i + 1] == '.' || key[i + 1] == '\\')) {
      parts.back().push_back(key[i + 1]);
      ++i;
    } else if (c == '.') {
      parts.emplace_back();
    } else {
      parts.back().push_back(c);
    }
  }
  return parts;
}

const json::value* lookup(const json::object& event, std::string_view key) {
  const json::object* obj = &event;
  const json::value* cur = nullptr;
  for (const auto& part : split_path(key)) {
    if (!obj) return nullptr;
    cur = obj->if_contains(part);
    if (!cur) return nullptr;
    obj = cur->if_object();
  }
  return cur;
}

constexpr std::int64_t kMaxSafeInt = (std::int64_t{1} << 53) - 1;

// Integer value within the canonical JSON range, if `v` is one.
std::optional<std::int64_t> canonical_int(const json::value& v) {
  if (v.is_int64()) {
    const auto i = v.get_int64();
    if (i >= -kMaxSafeInt && i <= kMaxSafeInt) return i;
  } else if (v.is_uint64()) {
    const auto u = v.get_uint64();
    if (u <= static_cast<std::uint64_t>(kMaxSafeInt)) return static_cast<std::int64_t>(u);
  }
  return std::nullopt;
}

// Exact comparison of non-compound canonical JSON values (strings, integers, booleans, null).
// Anything else (floats, objects, arrays) never compares equal.
bool scalar_equal(const json::value& a, const json::value& b) {
  if (a.is_string() && b.is_string()) return a.get_string() == b.get_string();
  if (a.is_bool() && b.is_bool()) return a.get_bool() == b.get_bool();
  if (a.is_null() && b.is_null()) return true;
  const auto ia = canonical_int(a);
  const auto ib = canonical_int(b);
  return ia && ib && *ia == *ib;
}

std::string_view string_field(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v && v->is_string()) return v->get_string();
  return {};
}

// ---------------------------------------------------------------------------------------------
// Conditions
// ---------------------------------------------------------------------------------------------

bool member_count_matches(const json::value* is, long long count) {
  if (!is) return false;
  if (auto i = canonical_int(*is)) return count == *i;
  if (!is->is_string()) return false;
  std::string_view s = is->get_string();
  enum class Op { kEq, kLt, kGt, kLe, kGe } op = Op::kEq;
  if (s.starts_with("==")) {
    s.remove_prefix(2);
  } else if (s.starts_with("<=")) {
    op = Op::kLe;
    s.remove_prefix(2);
  } else if (s.starts_with(">=")) {
    op = Op::kGe;
    s.remove_prefix(2);
  } else if (s.starts_with("<")) {
    op = Op::kLt;
    s.remove_prefix(1);
  } else if (s.starts_with(">")) {
    op = Op::kGt;
    s.remove_prefix(1);
  }
  if (s.empty() || s.size() > 18) return false;
  long long n = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
  }
  switch (op) {
    case Op::kEq: return count == n;
    case Op::kLt: return count < n;
    case Op::kGt: return count > n;
    case Op::kLe: return count <= n;
    case Op::kGe: return count >= n;
  }
  return false;
}

// Power level a sender needs for a notification type: notifications[key] in the power levels
// content, 50 when absent. String levels (seen in old rooms) are accepted when they are integers.
long long required_notification_level(const json::object& power_levels, std::string_view key) {
  constexpr long long kDefault = 50;
  const json::value* notifications = power_levels.if_contains("notifications");
  if (!notifications || !notifications->is_object()) return kDefault;
  const json::value* level = notifications->get_object().if_contains(key);
  if (!level) return kDefault;
  if (auto i = canonical_int(*level)) return *i;
  if (level->is_string()) {
    std::string_view s = level->get_string();
    bool neg = false;
    if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
      neg = s[0] == '-';
      s.remove_prefix(1);
    }
    if (s.empty() || s.size() > 15) return kDefault;
    long long n = 0;
    for (const char c : s) {
      if (c < '0' || c > '9') return kDefault;
      n = n * 10 + (c - '0');
    }
    return neg ? -n : n;
  }
  return kDefault;
}

bool condition_matches(const json::value& cv, const json::object& event,
                       const EvaluationContext& ctx) {
  const json::object* cond = cv.if_object();
  if (!cond) return false;
  const std::string_view kind = string_field(*cond, "kind");
  const json::value* keyv = cond->if_contains("key");
  const bool has_key = keyv && keyv->is_string();
  const std::string_view key = has_key ? std::string_view(keyv->get_string()) : std::string_view();

  if (kind == "event_match") {
    const json::value* pattern = cond->if_contains("pattern");
    if (!has_key || !pattern || !pattern->is_string()) return false;
    const json::value* prop = lookup(event, key);
    if (!prop || !prop->is_string()) return false;
    return glob_matches(std::string(pattern->get_string()), std::string(prop->get_string()),
                        key == "content.body");
  }
  if (kind == "event_property_is") {
    const json::value* value = cond->if_contains("value");
    if (!has_key || !value) return false;
    const json::value* prop = lookup(event, key);
    return prop && scalar_equal(*prop, *value);
  }
  if (kind == "event_property_contains") {
    const json::value* value = cond->if_contains("value");
    if (!has_key || !value) return false;
    const json::value* prop = lookup(event, key);
    if (!prop || !prop->is_array()) return false;
    for (const auto& item : prop->get_array()) {
      if (scalar_equal(item, *value)) return true;
    }
    return false;
  }
  if (kind == "contains_display_name") {
    if (ctx.display_name.empty()) return false;
    const json::value* body = lookup(event, "content.body");
    if (!body || !body->is_string()) return false;
    return match_impl(decode_utf8(ctx.display_name), decode_utf8(body->get_string()),
                      /*word_boundary=*/true, /*literal=*/true);
  }
  if (kind == "room_member_count") {
    return member_count_matches(cond->if_contains("is"), ctx.room_member_count);
  }
  if (kind == "sender_notification_permission") {
    if (!has_key) return false;
    return ctx.sender_power_level >= required_notification_level(ctx.power_levels_content, key);
  }
  return false;  // unrecognised conditions never match
}

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

bool rule_enabled(const json::object& rule) {
  const json::value* enabled = rule.if_contains("enabled");
  return !enabled || !enabled->is_bool() || enabled->get_bool();
}

bool rule_matches(std::string_view kind, const json::object& rule, const json::object& event,
                  const EvaluationContext& ctx) {
  if (kind == "override" || kind == "underride") {
    const json::value* conditions = rule.if_contains("conditions");
    if (!conditions) return true;  // no conditions: always matches
    if (!conditions->is_array()) return false;
    for (const auto& c : conditions->get_array()) {
      if (!condition_matches(c, event, ctx)) return false;
    }
    return true;
  }
  if (kind == "content") {
    const json::value* pattern = rule.if_contains("pattern");
    if (!pattern || !pattern->is_string()) return false;
    const json::value* body = lookup(event, "content.body");
    if (!body || !body->is_string()) return false;
    return glob_matches(std::string(pattern->get_string()), std::string(body->get_string()),
                        /*word_boundary=*/true);
  }
  if (kind == "room") {
    const std::string_view id = string_field(rule, "rule_id");
    return !id.empty() && id == string_field(event, "room_id");
  }
  if (kind == "sender") {
    const std::string_view id = string_field(rule, "rule_id");
    return !id.empty() && id == string_field(event, "sender");
  }
  return false;
}

PushDecision decide(const json::object& rule) {
  PushDecision d;
  const json::value* actions = rule.if_contains("actions");
  if (!actions || !actions->is_array()) return d;
  d.actions = actions->get_array();
  bool highlight = false;
  for (const auto& a : d.actions) {
    if (a.is_string()) {
      // "dont_notify" and "coalesce" are historical and ignored.
      if (a.get_string() == "notify") d.notify = true;
    } else if (const json::object* o = a.if_object()) {
      const json::value* name = o->if_contains("set_tweak");
      if (name && name->is_string() && name->get_string() == "highlight") {
        const json::value* value = o->if_contains("value");
        highlight = !value || (value->is_bool() && value->get_bool());
      }
    }
  }
  // Tweaks only travel with a notification: without "notify" nothing is highlighted either.
  d.highlight = d.notify && highlight;
  return d;
}

}  // namespace

boost::json::object default_ruleset(const std::string& user_id) {
  json::array override_rules;
  override_rules.push_back(make_rule(".m.rule.master", false, {}, {}));
  override_rules.push_back(make_rule(".m.rule.suppress_notices", true,
                                     {cond_event_match("content.msgtype", "m.notice")}, {}));
  override_rules.push_back(make_rule(".m.rule.invite_for_me", true,
                                     {cond_event_match("type", "m.room.member"),
                                      cond_event_match("content.membership", "invite"),
                                      cond_event_match("state_key", user_id)},
                                     actions_notify_sound("default")));
  override_rules.push_back(
      make_rule(".m.rule.member_event", true, {cond_event_match("type", "m.room.member")}, {}));
  override_rules.push_back(make_rule(
      ".m.rule.is_user_mention", true,
      {cond_property_contains("content.m\\.mentions.user_ids", json::value(user_id))},
      {"notify", tweak("sound", json::value("default")), tweak("highlight")}));
  override_rules.push_back(
      make_rule(".m.rule.is_room_mention", true,
                {cond_property_is("content.m\\.mentions.room", json::value(true)),
                 cond_sender_permission("room")},
                {"notify", tweak("highlight")}));
  override_rules.push_back(make_rule(
      ".m.rule.tombstone", true,
      {cond_event_match("type", "m.room.tombstone"), cond_event_match("state_key", "")},
      {"notify", tweak("highlight")}));
  override_rules.push_back(
      make_rule(".m.rule.reaction", true, {cond_event_match("type", "m.reaction")}, {}));
  override_rules.push_back(make_rule(
      ".m.rule.room.server_acl", true,
      {cond_event_match("type", "m.room.server_acl"), cond_event_match("state_key", "")}, {}));
  override_rules.push_back(make_rule(
      ".m.rule.suppress_edits", true,
      {cond_property_is("content.m\\.relates_to.rel_type", json::value("m.replace"))}, {}));

  json::array underride_rules;
  underride_rules.push_back(make_rule(".m.rule.call", true,
                                      {cond_event_match("type", "m.call.invite")},
                                      actions_notify_sound("ring")));
  underride_rules.push_back(
      make_rule(".m.rule.encrypted_room_one_to_one", true,
                {cond_member_count("2"), cond_event_match("type", "m.room.encrypted")},
                actions_notify_sound("default")));
  underride_rules.push_back(
      make_rule(".m.rule.room_one_to_one", true,
                {cond_member_count("2"), cond_event_match("type", "m.room.message")},
                actions_notify_sound("default")));
  underride_rules.push_back(make_rule(
      ".m.rule.message", true, {cond_event_match("type", "m.room.message")}, {"notify"}));
  underride_rules.push_back(make_rule(
      ".m.rule.encrypted", true, {cond_event_match("type", "m.room.encrypted")}, {"notify"}));

  // The spec (since v1.17) defines no default content rules: the legacy
  // .m.rule.contains_user_name, .m.rule.contains_display_name and .m.rule.roomnotif rules
  // were removed in favour of m.mentions.
  json::object ruleset;
  ruleset["override"] = std::move(override_rules);
  ruleset["content"] = json::array{};
  ruleset["room"] = json::array{};
  ruleset["sender"] = json::array{};
  ruleset["underride"] = std::move(underride_rules);
  return ruleset;
}

std::optional<std::set<std::string>> users_singled_out_by_default_rules(const boost::json::object& event) {
  // Kept in step with default_ruleset(): its conditions on the user's ID are the two below.
  // invite_for_me globs the state_key against the user's ID (case-insensitively, as it does the
  // type): a state event whose membership matches "invite" may single out anyone.
  if (event.contains("state_key")) {
    const json::value* membership = lookup(event, "content.membership");
    if (membership && membership->is_string() &&
        glob_matches("invite", std::string(membership->get_string()), /*word_boundary=*/false)) {
      return std::nullopt;
    }
  }
  std::set<std::string> out;
  if (const json::value* ids = lookup(event, "content.m\\.mentions.user_ids"); ids && ids->is_array()) {
    for (const auto& id : ids->get_array()) {
      if (id.is_string()) out.emplace(id.get_string());
    }
  }
  return out;
}

PushDecision evaluate(const boost::json::object& ruleset, const boost::json::object& event,
                      const EvaluationContext& ctx) {
  if (string_field(event, "sender") == ctx.user_id) return {};

  static constexpr std::string_view kKinds[] = {"override", "content", "room", "sender",
                                                "underride"};
  static constexpr std::string_view kMaster = ".m.rule.master";

  auto rules_of = [&](std::string_view kind) -> const json::array* {
    const json::value* v = ruleset.if_contains(kind);
    return v ? v->if_array() : nullptr;
  };

  // .m.rule.master always takes precedence, even over user-defined override rules.
  if (const json::array* overrides = rules_of("override")) {
    for (const auto& rv : *overrides) {
      const json::object* rule = rv.if_object();
      if (rule && string_field(*rule, "rule_id") == kMaster) {
        if (rule_enabled(*rule) && rule_matches("override", *rule, event, ctx)) {
          return decide(*rule);
        }
        break;
      }
    }
  }

  for (const std::string_view kind : kKinds) {
    const json::array* rules = rules_of(kind);
    if (!rules) continue;
    for (const auto& rv : *rules) {
      const json::object* rule = rv.if_object();
      if (!rule || !rule_enabled(*rule)) continue;
      if (kind == "override" && string_field(*rule, "rule_id") == kMaster) continue;
      if (rule_matches(kind, *rule, event, ctx)) return decide(*rule);
    }
  }
  return {};
}

bool glob_matches(const std::string& pattern, const std::string& value, bool word_boundary) {
  return match_impl(decode_utf8(pattern), decode_utf8(value), word_boundary, /*literal=*/false);
}

}  // namespace trestle::service::push
