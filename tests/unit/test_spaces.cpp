// The pure rules of spaces (spec: client-server-api modules/spaces): which m.space.child events
// name a child, which `order` values count, and the order of children.
#include "service/spaces.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

using namespace trestle::service;

namespace {
boost::json::object obj(const char* text) { return boost::json::parse(text).as_object(); }
}  // namespace

TEST(Spaces, ViaMustBeANonEmptyListOfStrings) {
  EXPECT_TRUE(valid_space_child_via(obj(R"({"via": ["example.org"]})")));
  EXPECT_TRUE(valid_space_child_via(obj(R"({"via": ["a.org", "b.org"], "order": "x"})")));
  EXPECT_FALSE(valid_space_child_via(obj(R"({})")));
  EXPECT_FALSE(valid_space_child_via(obj(R"({"via": []})")));
  EXPECT_FALSE(valid_space_child_via(obj(R"({"via": "example.org"})")));
  EXPECT_FALSE(valid_space_child_via(obj(R"({"via": [1]})")));
  EXPECT_FALSE(valid_space_child_via(obj(R"({"via": null})")));
}

TEST(Spaces, OrderMustBeShortPrintableAscii) {
  auto v = [](const char* text) { return boost::json::parse(text); };
  auto a = v(R"("abc")"), space = v(R"(" ")"), tilde = v(R"("~")"), empty = v(R"("")");
  EXPECT_TRUE(valid_space_child_order(&a));
  EXPECT_TRUE(valid_space_child_order(&space));
  EXPECT_TRUE(valid_space_child_order(&tilde));
  EXPECT_TRUE(valid_space_child_order(&empty));
  auto fifty = boost::json::value(std::string(50, 'a')), fifty_one = boost::json::value(std::string(51, 'a'));
  EXPECT_TRUE(valid_space_child_order(&fifty));
  EXPECT_FALSE(valid_space_child_order(&fifty_one));
  auto control = v(R"("\u0001")"), del = v(R"("\u007f")"), non_ascii = v(R"("\u00e9")"), number = v("1");
  EXPECT_FALSE(valid_space_child_order(&control));
  EXPECT_FALSE(valid_space_child_order(&del));
  EXPECT_FALSE(valid_space_child_order(&non_ascii));
  EXPECT_FALSE(valid_space_child_order(&number));
  EXPECT_FALSE(valid_space_child_order(nullptr));
}

TEST(Spaces, ChildrenSortAsTheSpecsExample) {
  // The spec's example: !b (order " "), !a (order "aaaa"), !c (order "first"), then unordered
  // by timestamp, then by room ID.
  std::vector<SpaceChildKey> kids{
      {std::nullopt, 1640141000000, "!e:example.org"}, {std::string("first"), 1640841000000, "!c:example.org"},
      {std::nullopt, 1640141000000, "!d:example.org"}, {std::string("aaaa"), 1640141000000, "!a:example.org"},
      {std::nullopt, 1640041000000, "!f:example.org"}, {std::string(" "), 1640341000000, "!b:example.org"},
      {std::string("aaaa"), 1640041000000, "!g:example.org"},
  };
  std::sort(kids.begin(), kids.end(), space_child_before);
  std::vector<std::string> ids;
  for (const auto& k : kids) ids.push_back(k.room_id);
  EXPECT_EQ(ids, (std::vector<std::string>{"!b:example.org", "!g:example.org", "!a:example.org", "!c:example.org",
                                           "!f:example.org", "!d:example.org", "!e:example.org"}));
}
