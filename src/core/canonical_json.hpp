#pragma once
// Canonical JSON as defined in the spec's appendices (content/appendices.md, "Canonical JSON"):
// object keys sorted by Unicode code point, no insignificant whitespace, UTF-8 output with only
// the mandatory escapes, integers only (floats are rejected).
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <initializer_list>
#include <string>
#include <string_view>

namespace trestle::core {

// Throws std::invalid_argument for values canonical JSON cannot hold (floats, integers outside
// [-(2^53)+1, (2^53)-1]).
std::string canonical_json(const boost::json::value& v);

// The canonical JSON of `obj` as if the top-level keys in `skip` were absent (the hashing and
// signing algorithms drop "unsigned", "signatures", "hashes"), without copying the object.
std::string canonical_json_without(const boost::json::object& obj, std::initializer_list<std::string_view> skip);

// True when every number in v is an integer within the canonical JSON range. Used to reject
// event content that could not be hashed/signed (400 M_BAD_JSON).
bool is_canonical_compatible(const boost::json::value& v);

// Stricter, for JSON that becomes an event (Synapse's rule): every number must have been written
// as an integer literal within that range. `1e10`, `1.0` and `-0.0` parse as doubles and are
// refused, so what is stored and served is exactly the canonical form the hash covers.
bool is_event_json_compatible(const boost::json::value& v);

// Replaces every double in `v` that holds an integer of the canonical range by that integer (-0.0
// by 0), so JSON stored before the rule above (written back as `1E10`, `-0E0`) is served in the
// canonical form its hash was computed on. Other values are left as they are.
void integralise_numbers(boost::json::value& v);

}  // namespace trestle::core
