#pragma once
// Editing a user's push rules per the spec's PUT/DELETE /pushrules/global/{kind}/{ruleId}
// semantics. Pure functions over the "global" ruleset object; errors are MatrixErrors.
#include <boost/json/object.hpp>
#include <optional>
#include <string>

namespace trestle::service::push {

// 400 M_INVALID_PARAM for an unknown kind.
void check_kind(const std::string& kind);
// The rule, or 404 M_NOT_FOUND.
boost::json::object& find_rule(boost::json::object& global, const std::string& kind, const std::string& rule_id);
// Adds or replaces a user rule. `body` holds actions and conditions/pattern as the kind needs.
// before/after name a user rule of the same kind (404 if missing). Default rules (ids starting
// with '.') cannot be added: 400 M_INVALID_PARAM.
void put_rule(boost::json::object& global, const std::string& kind, const std::string& rule_id,
              const boost::json::object& body, const std::optional<std::string>& before,
              const std::optional<std::string>& after);
// Deletes a user rule; default rules are 400 M_INVALID_PARAM, unknown 404.
void delete_rule(boost::json::object& global, const std::string& kind, const std::string& rule_id);

}  // namespace trestle::service::push
