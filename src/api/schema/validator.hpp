#pragma once
// A validator for the JSON-Schema subset the Matrix spec's request bodies use: type (one or a
// list; "integer" accepts JSON integers only), properties, required, additionalProperties (false
// or a schema), patternProperties, items, enum, minimum/maximum, minLength/maxLength,
// minItems/maxItems, minProperties/maxProperties, oneOf/anyOf/allOf. Other keywords are ignored.
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <optional>
#include <string>

namespace trestle::api::schema {

struct Violation {
  std::string errcode;  // M_MISSING_PARAM for a missing required key, else M_BAD_JSON
  std::string message;  // names the JSON path: "'initial_state[0].state_key' must be a string"
};

// The first violation of `schema` by `value`, or nothing. A null value of an optional property
// counts as absent, as the handlers (and Synapse) treat it: clients send null for "not given".
std::optional<Violation> validate(const boost::json::value& value, const boost::json::object& schema);

}  // namespace trestle::api::schema
