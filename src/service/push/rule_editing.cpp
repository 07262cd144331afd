#include "service/push/rule_editing.hpp"

#include "core/error.hpp"

#include <boost/json/array.hpp>

namespace trestle::service::push {

using boost::json::array;
using boost::json::object;

void check_kind(const std::string& kind) {
  if (kind != "override" && kind != "underride" && kind != "sender" && kind != "room" && kind != "content") {
    throw MatrixError::invalid_param("Unknown push rule kind '" + kind + "'");
  }
}

namespace {

array& rules_of(object& global, const std::string& kind) {
  check_kind(kind);
  auto& v = global[kind];
  if (!v.is_array()) v = array{};
  return v.as_array();
}

std::ptrdiff_t index_of(const array& rules, const std::string& rule_id) {
  for (size_t i = 0; i < rules.size(); ++i) {
    const auto* id = rules[i].as_object().if_contains("rule_id");
    if (id && id->is_string() && id->as_string() == rule_id) return static_cast<std::ptrdiff_t>(i);
  }
  return -1;
}

bool is_default(const object& rule) {
  auto* d = rule.if_contains("default");
  return d && d->is_bool() && d->as_bool();
}

}  // namespace

object& find_rule(object& global, const std::string& kind, const std::string& rule_id) {
  auto& rules = rules_of(global, kind);
  auto i = index_of(rules, rule_id);
  if (i < 0) throw MatrixError::not_found("Unknown push rule");
  return rules[i].as_object();
}

void put_rule(object& global, const std::string& kind, const std::string& rule_id, const object& body,
              const std::optional<std::string>& before, const std::optional<std::string>& after) {
  auto& rules = rules_of(global, kind);
  if (rule_id.empty() || rule_id[0] == '.') throw MatrixError::invalid_param("Cannot add a rule whose id starts with '.'");
  if (rule_id.find('/') != std::string::npos || rule_id.find('\\') != std::string::npos) {
    throw MatrixError::invalid_param("Rule id must not contain slashes");
  }
  auto* actions = body.if_contains("actions");
  if (!actions) throw MatrixError::missing_param("Missing 'actions'");
  if (!actions->is_array()) throw MatrixError::bad_json("'actions' must be a list");
  for (const auto& a : actions->as_array()) {
    if (a.is_string()) {
      std::string_view s = a.as_string();
      if (s != "notify" && s != "dont_notify" && s != "coalesce") throw MatrixError(400, "M_UNKNOWN", "Unknown action");
    } else if (!a.is_object()) {
      throw MatrixError(400, "M_UNKNOWN", "Invalid action");
    }
  }
  object rule{{"rule_id", rule_id}, {"default", false}, {"enabled", true}, {"actions", *actions}};
  if (kind == "content") {
    auto* pattern = body.if_contains("pattern");
    if (!pattern || !pattern->is_string()) throw MatrixError::missing_param("Content rules need a 'pattern'");
    rule["pattern"] = *pattern;
  } else if (kind == "override" || kind == "underride") {
    auto* conditions = body.if_contains("conditions");
    if (conditions && !conditions->is_array()) throw MatrixError::bad_json("'conditions' must be a list");
    rule["conditions"] = conditions ? *conditions : array{};
  }
  auto existing = index_of(rules, rule_id);
  if (existing >= 0) {
    // Replacing keeps the enabled state, as Synapse does.
    if (auto* en = rules[existing].as_object().if_contains("enabled")) rule["enabled"] = *en;
    rules.erase(rules.begin() + existing);
  }
  std::ptrdiff_t pos = -1;
  if (before || after) {
    auto anchor = index_of(rules, before ? *before : *after);
    if (anchor < 0) throw MatrixError::not_found("Anchor rule not found");
    if (is_default(rules[anchor].as_object())) throw MatrixError::invalid_param("Cannot position relative to a default rule");
    pos = before ? anchor : anchor + 1;
  } else {
    // A new user rule goes first: before the older user rules of its kind (newest first, as
    // Synapse orders them) and before the defaults (user rules take priority). A replaced rule
    // keeps its place.
    pos = 0;
    if (existing >= 0 && existing <= static_cast<std::ptrdiff_t>(rules.size())) pos = existing;
  }
  rules.insert(rules.begin() + pos, rule);
}

void delete_rule(object& global, const std::string& kind, const std::string& rule_id) {
  auto& rules = rules_of(global, kind);
  auto i = index_of(rules, rule_id);
  if (i < 0) throw MatrixError::not_found("Unknown push rule");
  if (is_default(rules[i].as_object())) throw MatrixError(400, "M_UNKNOWN", "Cannot delete a server-default rule");
  rules.erase(rules.begin() + i);
}

}  // namespace trestle::service::push
