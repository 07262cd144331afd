#pragma once
// The one JSON nesting limit the server keeps. Requests may nest this deep (deeper is refused as
// M_NOT_JSON); what the server stores from them must parse back, where Boost's default stops at 32.
#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>

#include <cstddef>
#include <string_view>

namespace trestle::core {

inline constexpr std::size_t kMaxJsonDepth = 64;

inline boost::json::parse_options json_parse_options() {
  boost::json::parse_options opts;
  opts.max_depth = kMaxJsonDepth;
  return opts;
}

// JSON this server wrote itself (events, account data, filters, push rules, pushers).
inline boost::json::value parse_stored_json(std::string_view text) {
  return boost::json::parse(text, {}, json_parse_options());
}

}  // namespace trestle::core
