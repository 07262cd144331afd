#pragma once
// Reading one field of a JSON object the lenient way the services need: a string field, or a
// fallback when it is missing or not a string.
#include <boost/json/object.hpp>
#include <string>

namespace trestle::core {

inline std::string str_or(const boost::json::object& o, const char* key, const std::string& fallback = "") {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : fallback;
}

}  // namespace trestle::core
