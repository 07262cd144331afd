#pragma once
// Small helpers the thin handlers share: reading typed fields with the spec's errors.
#include "core/error.hpp"
#include "http/request.hpp"

#include <boost/json/object.hpp>
#include <optional>
#include <string>

namespace trestle::api {

// Required string field: 400 M_MISSING_PARAM if absent, M_BAD_JSON / M_INVALID_PARAM if not a string.
std::string required_string(const boost::json::object& body, const char* key);
std::optional<std::string> optional_string(const boost::json::object& body, const char* key);
std::optional<bool> optional_bool(const boost::json::object& body, const char* key);
// Integer query parameter; 400 M_INVALID_PARAM when it is not a number.
std::optional<int64_t> query_int(const http::Request& req, const char* key);
// Non-negative integer query parameter (counts, offsets, timestamps); 400 M_INVALID_PARAM otherwise.
std::optional<int64_t> query_count(const http::Request& req, const char* key);
// A query parameter holding a JSON object (e.g. `filter`); absent or empty: {}. 400 M_INVALID_PARAM
// when it is not a JSON object.
boost::json::object query_json_object(const http::Request& req, const char* key);
// Boolean query parameter, "true" or "false" as Synapse's parse_boolean; 400 M_INVALID_PARAM
// otherwise.
std::optional<bool> query_bool(const http::Request& req, const char* key);
// The request's access token: "Authorization: Bearer", else the access_token query parameter.
std::optional<std::string> access_token(const http::Request& req);
// A JSON object reply.
inline http::Reply ok(const boost::json::object& o = {}) { return http::Response::json(o); }

}  // namespace trestle::api
