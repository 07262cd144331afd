// The request-body validator (api/schema/validator) and the generated table of the spec's schemas.
#include "api/schema/request_schemas.hpp"
#include "api/schema/validator.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

namespace json = boost::json;
using trestle::api::schema::request_schema;
using trestle::api::schema::validate;

namespace {

// "" when valid, else "ERRCODE: message".
std::string check(std::string_view schema, std::string_view value) {
  auto v = validate(json::parse(value), json::parse(schema).as_object());
  return v ? v->errcode + ": " + v->message : "";
}

const json::object& schema_of(const char* method, const char* path) {
  auto* s = request_schema(method, path);
  if (!s) throw std::runtime_error(std::string("no schema for ") + method + " " + path);
  return *s;
}

std::string check_route(const char* method, const char* path, std::string_view body) {
  auto v = validate(json::parse(body), schema_of(method, path));
  return v ? v->errcode + ": " + v->message : "";
}

}  // namespace

TEST(SchemaValidator, Types) {
  EXPECT_EQ(check(R"({"type":"string"})", R"("x")"), "");
  EXPECT_EQ(check(R"({"type":"string"})", "5"), "M_BAD_JSON: The body must be a string");
  EXPECT_EQ(check(R"({"type":"boolean"})", "true"), "");
  EXPECT_EQ(check(R"({"type":"boolean"})", R"("yes")"), "M_BAD_JSON: The body must be a boolean");
  EXPECT_EQ(check(R"({"type":"object"})", "[]"), "M_BAD_JSON: The body must be an object");
  EXPECT_EQ(check(R"({"type":"array"})", "{}"), "M_BAD_JSON: The body must be an array");
  EXPECT_EQ(check(R"({"type":"null"})", "null"), "");
  EXPECT_EQ(check(R"({"type":["string","null"]})", "null"), "");
  EXPECT_EQ(check(R"({"type":["string","integer"]})", "true"), "M_BAD_JSON: The body must be a string or an integer");
  EXPECT_EQ(check(R"({})", R"({"anything": [1]})"), "");
}

TEST(SchemaValidator, IntegerIsJsonIntegerOnly) {
  EXPECT_EQ(check(R"({"type":"integer"})", "5"), "");
  EXPECT_EQ(check(R"({"type":"integer"})", "-5"), "");
  EXPECT_EQ(check(R"({"type":"integer"})", "18446744073709551615"), "");
  EXPECT_EQ(check(R"({"type":"integer"})", "5.0"), "M_BAD_JSON: The body must be an integer");
  EXPECT_EQ(check(R"({"type":"integer"})", "1.5"), "M_BAD_JSON: The body must be an integer");
  EXPECT_EQ(check(R"({"type":"integer"})", R"("5")"), "M_BAD_JSON: The body must be an integer");
  EXPECT_EQ(check(R"({"type":"number"})", "1.5"), "");
  EXPECT_EQ(check(R"({"type":"number"})", "7"), "");
  EXPECT_EQ(check(R"({"type":"number"})", R"("7")"), "M_BAD_JSON: The body must be a number");
}

TEST(SchemaValidator, PropertiesNameTheJsonPath) {
  const char* s = R"({"type":"object","properties":{"a":{"type":"object","properties":{
    "list":{"type":"array","items":{"type":"object","properties":{"k":{"type":"string"}}}}}}}})";
  EXPECT_EQ(check(s, R"({"a":{"list":[{"k":"x"},{"k":"y"}]}})"), "");
  EXPECT_EQ(check(s, R"({"a":{"list":[{"k":"x"},{"k":5}]}})"), "M_BAD_JSON: 'a.list[1].k' must be a string");
  EXPECT_EQ(check(s, R"({"a":{"list":{}}})"), "M_BAD_JSON: 'a.list' must be an array");
  EXPECT_EQ(check(s, R"({"a":{"other":5},"b":true})"), "");  // unknown keys are allowed
}

TEST(SchemaValidator, RequiredIsMissingParam) {
  const char* s = R"({"type":"object","required":["user_id"],"properties":{"user_id":{"type":"string"},
    "inner":{"type":"object","required":["content"]}}})";
  EXPECT_EQ(check(s, R"({"user_id":"@a:b"})"), "");
  EXPECT_EQ(check(s, R"({})"), "M_MISSING_PARAM: Missing 'user_id'");
  EXPECT_EQ(check(s, R"({"user_id":"@a:b","inner":{}})"), "M_MISSING_PARAM: Missing 'inner.content'");
  // A required key that is present but null is a wrong type, not a missing key.
  EXPECT_EQ(check(s, R"({"user_id":null})"), "M_BAD_JSON: 'user_id' must be a string");
}

TEST(SchemaValidator, NullOptionalPropertyCountsAsAbsent) {
  const char* s = R"({"type":"object","properties":{"reason":{"type":"string"}}})";
  EXPECT_EQ(check(s, R"({"reason":null})"), "");
  EXPECT_EQ(check(s, R"({"reason":5})"), "M_BAD_JSON: 'reason' must be a string");
}

TEST(SchemaValidator, AdditionalProperties) {
  const char* closed = R"({"type":"object","properties":{"a":{}},"additionalProperties":false})";
  EXPECT_EQ(check(closed, R"({"a":1})"), "");
  EXPECT_EQ(check(closed, R"({"a":1,"b":2})"), "M_BAD_JSON: 'b' is not allowed here");
  const char* typed = R"({"type":"object","additionalProperties":{"type":"string"}})";
  EXPECT_EQ(check(typed, R"({"x":"1","y":"2"})"), "");
  EXPECT_EQ(check(typed, R"({"x":"1","y":2})"), "M_BAD_JSON: 'y' must be a string");
}

TEST(SchemaValidator, PatternProperties) {
  const char* s = R"({"type":"object","patternProperties":{"^@":{"type":"array"}},"additionalProperties":false})";
  EXPECT_EQ(check(s, R"({"@a:b":[]})"), "");
  EXPECT_EQ(check(s, R"({"@a:b":{}})"), "M_BAD_JSON: '@a:b' must be an array");
  EXPECT_EQ(check(s, R"({"a:b":[]})"), "M_BAD_JSON: 'a:b' is not allowed here");
}

TEST(SchemaValidator, EnumAndBounds) {
  EXPECT_EQ(check(R"({"enum":["public","private"]})", R"("public")"), "");
  EXPECT_EQ(check(R"({"enum":["public","private"]})", R"("secret")"),
            R"(M_BAD_JSON: The body must be one of "public", "private")");
  EXPECT_EQ(check(R"({"minimum":0,"maximum":10})", "10"), "");
  EXPECT_EQ(check(R"({"minimum":0,"maximum":10})", "-1"), "M_BAD_JSON: The body must be at least 0");
  EXPECT_EQ(check(R"({"minimum":0,"maximum":10})", "10.5"), "M_BAD_JSON: The body must be at most 10");
  EXPECT_EQ(check(R"({"minLength":2,"maxLength":3})", R"("éé")"), "");  // code points, not bytes
  EXPECT_EQ(check(R"({"minLength":2,"maxLength":3})", R"("a")"), "M_BAD_JSON: The body must be at least 2 characters long");
  EXPECT_EQ(check(R"({"minLength":2,"maxLength":3})", R"("abcd")"), "M_BAD_JSON: The body must be at most 3 characters long");
  EXPECT_EQ(check(R"({"minItems":1,"maxItems":2})", "[]"), "M_BAD_JSON: The body must have at least 1 items");
  EXPECT_EQ(check(R"({"minItems":1,"maxItems":2})", "[1,2,3]"), "M_BAD_JSON: The body must have at most 2 items");
  EXPECT_EQ(check(R"({"minProperties":1})", "{}"), "M_BAD_JSON: The body must have at least 1 keys");
}

TEST(SchemaValidator, OneOfAnyOfAllOf) {
  const char* one = R"({"oneOf":[{"type":"string"},{"type":"object","required":["key"]}]})";
  EXPECT_EQ(check(one, R"("k")"), "");
  EXPECT_EQ(check(one, R"({"key":"k"})"), "");
  EXPECT_EQ(check(one, "5"), "M_BAD_JSON: The body does not match any of the allowed forms");
  EXPECT_EQ(check(R"({"oneOf":[{"type":"number"},{"type":"integer"}]})", "5"),
            "M_BAD_JSON: The body matches more than one of the allowed forms");
  EXPECT_EQ(check(R"({"anyOf":[{"type":"number"},{"type":"integer"}]})", "5"), "");
  EXPECT_EQ(check(R"({"allOf":[{"type":"integer"},{"minimum":3}]})", "2"), "M_BAD_JSON: The body must be at least 3");
}

TEST(RequestSchemas, TableParsesAndCoversTheRoutes) {
  auto root = json::parse(trestle::api::schema::request_schemas_json());
  EXPECT_GT(root.as_array().size(), 50u);
  // r0 is served like v3; a literal segment of ours matches a {param} of the spec.
  EXPECT_EQ(&schema_of("POST", "/_matrix/client/r0/createRoom"), &schema_of("POST", "/_matrix/client/v3/createRoom"));
  EXPECT_NE(request_schema("PUT", "/_matrix/client/v3/pushrules/{}/{}/{}/enabled"), nullptr);
  // The literal profile field wins over the spec's generic {keyName}.
  EXPECT_EQ(check_route("PUT", "/_matrix/client/v3/profile/{}/displayname", R"({"displayname":5})"),
            "M_BAD_JSON: 'displayname' must be a string or null");
  // ...and the generic {keyName} route gets the generic schema, not the first literal it matches.
  EXPECT_EQ(check_route("PUT", "/_matrix/client/v3/profile/{}/{}", R"({"m.tz":"UTC"})"), "");
  EXPECT_EQ(check_route("PUT", "/_matrix/client/v3/profile/{}/{}", R"({})"), "");
  // Event content and account data are free-form: no schema.
  EXPECT_EQ(request_schema("PUT", "/_matrix/client/v3/rooms/{}/send/{}/{}"), nullptr);
  EXPECT_EQ(request_schema("PUT", "/_matrix/client/v3/rooms/{}/state/{}/{}"), nullptr);
  EXPECT_EQ(request_schema("PUT", "/_matrix/client/v3/user/{}/account_data/{}"), nullptr);
  EXPECT_EQ(request_schema("GET", "/_matrix/client/v3/sync"), nullptr);
}

TEST(RequestSchemas, CreateRoomFromTheSpec) {
  const char* p = "/_matrix/client/v3/createRoom";
  EXPECT_EQ(check_route("POST", p, R"({"preset":"public_chat","initial_state":[{"type":"m.x","content":{}}]})"), "");
  EXPECT_EQ(check_route("POST", p, R"({"visibility":5})"), "M_BAD_JSON: 'visibility' must be a string");
  EXPECT_EQ(check_route("POST", p, R"({"preset":true})"), "M_BAD_JSON: 'preset' must be a string");
  EXPECT_EQ(check_route("POST", p, R"({"is_direct":"yes"})"), "M_BAD_JSON: 'is_direct' must be a boolean");
  EXPECT_EQ(check_route("POST", p, R"({"initial_state":[{"type":"m.x","state_key":5,"content":{}}]})"),
            "M_BAD_JSON: 'initial_state[0].state_key' must be a string");
  EXPECT_EQ(check_route("POST", p, R"({"initial_state":[{"type":"m.x"}]})"),
            "M_MISSING_PARAM: Missing 'initial_state[0].content'");
}

TEST(RequestSchemas, LoginTypeIsLeftToTheHandler) {
  // login.yaml asks M_UNKNOWN for an unknown login type: no generic enum check may pre-empt it.
  EXPECT_EQ(check_route("POST", "/_matrix/client/v3/login", R"({"type":"m.login.unknown"})"), "");
  EXPECT_EQ(check_route("POST", "/_matrix/client/v3/login", R"({"type":5})"), "M_BAD_JSON: 'type' must be a string");
}
