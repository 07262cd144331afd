#include "core/canonical_json.hpp"
#include "core/json_depth.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>

using trestle::core::canonical_json;
using trestle::core::is_canonical_compatible;

namespace {

std::string canonical_of(std::string_view json_text) { return canonical_json(boost::json::parse(json_text)); }

}  // namespace

// Every example from content/appendices.md "Canonical JSON" > "Examples", verbatim.
TEST(CanonicalJson, SpecExampleEmptyObject) { EXPECT_EQ(canonical_of("{}"), "{}"); }

TEST(CanonicalJson, SpecExampleOneTwo) {
  EXPECT_EQ(canonical_of(R"({
    "one": 1,
    "two": "Two"
})"),
            R"({"one":1,"two":"Two"})");
}

TEST(CanonicalJson, SpecExampleSortsKeys) {
  EXPECT_EQ(canonical_of(R"({
    "b": "2",
    "a": "1"
})"),
            R"({"a":"1","b":"2"})");
}

TEST(CanonicalJson, SpecExampleSortsCompactKeys) {
  EXPECT_EQ(canonical_of(R"({"b":"2","a":"1"})"), R"({"a":"1","b":"2"})");
}

TEST(CanonicalJson, SpecExampleNestedAuth) {
  EXPECT_EQ(canonical_of(R"({
    "auth": {
        "success": true,
        "mxid": "@john.doe:example.com",
        "profile": {
            "display_name": "John Doe",
            "three_pids": [
                {
                    "medium": "email",
                    "address": "john.doe@example.org"
                },
                {
                    "medium": "msisdn",
                    "address": "123456789"
                }
            ]
        }
    }
})"),
            R"({"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}})");
}

TEST(CanonicalJson, SpecExampleUnicodeValue) {
  EXPECT_EQ(canonical_of(R"({
    "a": "日本語"
})"),
            R"({"a":"日本語"})");
}

TEST(CanonicalJson, SpecExampleUnicodeKeysSortByCodePoint) {
  EXPECT_EQ(canonical_of(R"({
    "本": 2,
    "日": 1
})"),
            R"({"日":1,"本":2})");
}

TEST(CanonicalJson, SpecExampleUnicodeEscapeIsDecoded) {
  EXPECT_EQ(canonical_of(R"({
    "a": "\u65E5"
})"),
            R"({"a":"日"})");
}

TEST(CanonicalJson, SpecExampleNull) {
  EXPECT_EQ(canonical_of(R"({
    "a": null
})"),
            R"({"a":null})");
}

TEST(CanonicalJson, SpecExampleNegativeZeroAndExponent) {
  EXPECT_EQ(canonical_of(R"({
    "a": -0,
    "b": 1e10
})"),
            R"({"a":0,"b":10000000000})");
}

TEST(CanonicalJson, KeysSortByCodePointNotUtf16) {
  // U+FF61 sorts before U+1F600 by code point, but after it in UTF-16 (surrogate 0xD83D).
  EXPECT_EQ(canonical_of(R"({"\uD83D\uDE00":1,"\uFF61":2,"é":3,"a":4,"B":5})"),
            "{\"B\":5,\"a\":4,\"\xC3\xA9\":3,\"\xEF\xBD\xA1\":2,\"\xF0\x9F\x98\x80\":1}");
}

TEST(CanonicalJson, KeyThatIsPrefixSortsFirst) { EXPECT_EQ(canonical_of(R"({"ab":1,"a":2})"), R"({"a":2,"ab":1})"); }

TEST(CanonicalJson, OnlyMandatoryEscapes) {
  boost::json::object obj;
  obj["s"] = "quote\" backslash\\ slash/ tab\t nl\n cr\r ff\f bs\b ctl\x01\x1f del\x7f";
  EXPECT_EQ(canonical_json(obj),
            "{\"s\":\"quote\\\" backslash\\\\ slash/ tab\\t nl\\n cr\\r ff\\f bs\\b ctl\\u0001\\u001f del\x7f\"}");
}

TEST(CanonicalJson, EscapesNulAsUnicode) {
  boost::json::value v = boost::json::string(std::string_view("a\0b", 3));
  EXPECT_EQ(canonical_json(v), "\"a\\u0000b\"");
}

TEST(CanonicalJson, LineSeparatorsStayRaw) {
  EXPECT_EQ(canonical_of(R"(["\u2028\u2029"])"), "[\"\xE2\x80\xA8\xE2\x80\xA9\"]");
}

TEST(CanonicalJson, ScalarsAndArrays) {
  EXPECT_EQ(canonical_of(R"([ true , false , null , [ ] , { } , -5 , 0 ])"), "[true,false,null,[],{},-5,0]");
  EXPECT_EQ(canonical_of("\"x\""), "\"x\"");
  EXPECT_EQ(canonical_of("42"), "42");
}

TEST(CanonicalJson, IntegerRangeBoundaries) {
  EXPECT_EQ(canonical_of("9007199254740991"), "9007199254740991");
  EXPECT_EQ(canonical_of("-9007199254740991"), "-9007199254740991");
  EXPECT_THROW(canonical_of("9007199254740992"), std::invalid_argument);
  EXPECT_THROW(canonical_of("-9007199254740992"), std::invalid_argument);
  EXPECT_THROW(canonical_of("18446744073709551615"), std::invalid_argument);
  EXPECT_THROW(canonical_json(boost::json::value(std::uint64_t{9007199254740992})), std::invalid_argument);
  EXPECT_EQ(canonical_json(boost::json::value(std::uint64_t{7})), "7");
}

TEST(CanonicalJson, RejectsFloats) {
  EXPECT_THROW(canonical_of("1.5"), std::invalid_argument);
  EXPECT_THROW(canonical_of("0.1"), std::invalid_argument);
  EXPECT_THROW(canonical_of("-2.5e-3"), std::invalid_argument);
  EXPECT_THROW(canonical_of(R"({"a":{"b":[1,2,3.25]}})"), std::invalid_argument);
  EXPECT_THROW(canonical_of("1e300"), std::invalid_argument);  // integral but outside the safe range
  EXPECT_THROW(canonical_json(boost::json::value(std::nan(""))), std::invalid_argument);
  EXPECT_THROW(canonical_json(boost::json::value(std::numeric_limits<double>::infinity())), std::invalid_argument);
}

TEST(CanonicalJson, IntegralDoublesAreIntegers) {
  // JSON has one number type: 1e10 and -0.0 denote integers (as the spec's own example shows).
  EXPECT_EQ(canonical_of("-0.0"), "0");
  EXPECT_EQ(canonical_of("2.0"), "2");
  EXPECT_EQ(canonical_of("-3e2"), "-300");
}

TEST(CanonicalJson, RejectsInvalidUtf8) {
  EXPECT_THROW(canonical_json(boost::json::value(boost::json::string("\xff"))), std::invalid_argument);
  EXPECT_THROW(canonical_json(boost::json::value(boost::json::string("\xC0\x80"))), std::invalid_argument);  // overlong
  EXPECT_THROW(canonical_json(boost::json::value(boost::json::string("\xED\xA0\x80"))), std::invalid_argument);  // surrogate
  boost::json::object bad_key;
  bad_key["\xE6\x97"] = 1;  // truncated sequence
  EXPECT_THROW(canonical_json(bad_key), std::invalid_argument);
}

TEST(CanonicalJson, IsCanonicalCompatible) {
  EXPECT_TRUE(is_canonical_compatible(boost::json::parse(R"({"a":[1,-2,{"b":"日"}],"c":null,"d":true})")));
  EXPECT_TRUE(is_canonical_compatible(boost::json::parse("9007199254740991")));
  EXPECT_TRUE(is_canonical_compatible(boost::json::parse("1e10")));
  EXPECT_FALSE(is_canonical_compatible(boost::json::parse(R"({"a":[1,2.5]})")));
  EXPECT_FALSE(is_canonical_compatible(boost::json::parse(R"({"a":{"b":9007199254740992}})")));
  EXPECT_FALSE(is_canonical_compatible(boost::json::value(boost::json::string("\xff"))));
}

TEST(CanonicalJson, IsEventJsonCompatibleRefusesEveryNonIntegerLiteral) {
  using trestle::core::is_event_json_compatible;
  EXPECT_TRUE(is_event_json_compatible(boost::json::parse(R"({"a":[1,-2,{"b":"日"}],"c":null,"d":true,"z":-0})")));
  EXPECT_TRUE(is_event_json_compatible(boost::json::parse("9007199254740991")));
  EXPECT_TRUE(is_event_json_compatible(boost::json::parse("-9007199254740991")));
  for (const char* text : {"1e10", "1.0", "-0.0", "2E3", R"({"a":[1,{"b":2.5}]})", "9007199254740992",
                           "-9007199254740992", "18446744073709551615"}) {
    EXPECT_FALSE(is_event_json_compatible(boost::json::parse(text))) << text;
  }
  EXPECT_FALSE(is_event_json_compatible(boost::json::value(boost::json::string("\xff"))));
}

TEST(JsonDepth, StoredReaderAcceptsWhatRequestsCanBuild) {
  using namespace trestle::core;
  auto nested = [](std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  EXPECT_EQ(json_depth(boost::json::parse("1")), 0u);
  EXPECT_EQ(json_depth(boost::json::parse(R"({"a":[1,{"b":{}}]})")), 4u);
  EXPECT_EQ(json_depth(boost::json::parse(nested(kMaxJsonDepth), {}, json_parse_options())), kMaxJsonDepth);
  boost::system::error_code ec;
  boost::json::parse(nested(kMaxJsonDepth + 1), ec, {}, json_parse_options());
  EXPECT_TRUE(ec);
  // A request's content inside a PDU inside unsigned.prev_content (what older binaries stored).
  EXPECT_EQ(json_depth(parse_stored_json(nested(kMaxJsonDepth + 2))), kMaxJsonDepth + 2);
  EXPECT_EQ(json_depth(parse_stored_json(nested(kMaxStoredJsonDepth))), kMaxStoredJsonDepth);
  EXPECT_THROW(parse_stored_json(nested(kMaxStoredJsonDepth + 1)), std::exception);
}

TEST(CanonicalJson, IntegraliseNumbersServesStoredDoublesCanonically) {
  auto v = boost::json::parse(R"({"a":1E10,"b":[-0E0,1E0,2E3],"c":1.5E0,"d":"1E10","e":7})");
  trestle::core::integralise_numbers(v);
  EXPECT_EQ(boost::json::serialize(v), R"({"a":10000000000,"b":[0,1,2000],"c":1.5E0,"d":"1E10","e":7})");
}

TEST(CanonicalJson, WithoutSkipsOnlyTopLevelKeys) {
  const auto obj = boost::json::parse(R"({"b":1,"unsigned":{"x":1},"a":{"unsigned":2},"signatures":{}})").as_object();
  EXPECT_EQ(trestle::core::canonical_json_without(obj, {"unsigned", "signatures"}), R"({"a":{"unsigned":2},"b":1})");
  EXPECT_EQ(trestle::core::canonical_json_without(obj, {}), canonical_json(obj));
}

TEST(CanonicalJson, EscapesRunsAndControlCharacters) {
  EXPECT_EQ(canonical_json(boost::json::string("ab\"c\\d\n\x01\x1f é/")), "\"ab\\\"c\\\\d\\n\\u0001\\u001f é/\"");
}
