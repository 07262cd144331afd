#pragma once
// The spec's request-body schemas, one per (method, path template), and the check the router
// runs on every request body before its handler. The table is generated from the spec's OpenAPI
// files by scripts/gen_request_schemas.py (request_schemas.gen.cpp, checked in).
#include "http/router.hpp"

#include <boost/json/object.hpp>
#include <string_view>

namespace trestle::api::schema {

// The generated table: a JSON array of {"method", "path", "schema"}.
std::string_view request_schemas_json();

// The request-body schema for a route as the router knows it ("/_matrix/client/r0/rooms/{}/kick",
// "/_matrix/client/v3/profile/{}/displayname"), or nullptr when its body is free-form or not
// JSON. A "{}" matches a literal segment on either side; the most literal match wins.
const boost::json::object* request_schema(std::string_view method, std::string_view path_template);

// For Router::set_body_checks: the check of a route's body against its schema, or none. The check
// leaves an empty, unparseable or non-object body to the handler (which knows whether it may be
// empty); otherwise a violation throws 400 M_BAD_JSON / M_MISSING_PARAM naming the JSON path.
http::BodyCheck body_check_for(const std::string& method, const std::string& path_template);

}  // namespace trestle::api::schema
