#pragma once
// JSON nesting limits, as one rule:
// - a request body may nest kMaxJsonDepth deep (deeper is refused as M_NOT_JSON);
// - what the server builds from a request and stores nests at most a few levels deeper (an event's
//   content sits one level inside its PDU), and the server reads its own stored JSON up to
//   kMaxStoredJsonDepth, a comfortable margin above that, so whatever it accepted reads back
//   (also rows older binaries stored, whose state events held prev_content two levels deeper).
#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cstddef>
#include <string_view>

namespace trestle::core {

inline constexpr std::size_t kMaxJsonDepth = 64;
inline constexpr std::size_t kMaxStoredJsonDepth = kMaxJsonDepth + 32;

inline boost::json::parse_options json_parse_options() {
  boost::json::parse_options opts;
  opts.max_depth = kMaxJsonDepth;
  return opts;
}

// JSON this server wrote itself (events, account data, filters, push rules, pushers).
inline boost::json::value parse_stored_json(std::string_view text) {
  boost::json::parse_options opts;
  opts.max_depth = kMaxStoredJsonDepth;
  return boost::json::parse(text, {}, opts);
}

// How deep `v` nests: 0 for a scalar, 1 for a flat object or array. Recursion is bounded by the
// parsers' limits above.
inline std::size_t json_depth(const boost::json::value& v) {
  std::size_t inner = 0;
  if (const auto* o = v.if_object()) {
    for (const auto& kv : *o) inner = std::max(inner, json_depth(kv.value()));
    return inner + 1;
  }
  if (const auto* a = v.if_array()) {
    for (const auto& e : *a) inner = std::max(inner, json_depth(e));
    return inner + 1;
  }
  return 0;
}

}  // namespace trestle::core
