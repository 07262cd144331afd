// Pure relation rules: reading m.relates_to and the spec's validity of replacement events.
#include "service/relations.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

using namespace trestle;
using boost::json::object;

namespace {

storage::events::StoredEvent event(const char* id, const char* sender, const char* type, const char* content_json) {
  storage::events::StoredEvent e;
  e.event_id = id;
  e.room_id = "!r:x";
  e.sender = sender;
  e.type = type;
  e.pdu = object{{"content", boost::json::parse(content_json)}, {"type", type}, {"sender", sender}};
  return e;
}

const char* kEdit = R"({"body":"* b","m.new_content":{"body":"b"},"m.relates_to":{"rel_type":"m.replace","event_id":"$orig"}})";

TEST(Relations, ParsesRelatesToWithRelTypeAndEventIdOnly) {
  auto rt = service::parse_relates_to(event("$e", "@a:x", "m.reaction",
                                            R"({"m.relates_to":{"rel_type":"m.annotation","event_id":"$p","key":"k"}})").pdu);
  ASSERT_TRUE(rt);
  EXPECT_EQ(rt->rel_type, "m.annotation");
  EXPECT_EQ(rt->event_id, "$p");
  EXPECT_EQ(rt->key, "k");
  // A rich reply has no rel_type; malformed ones are no relation.
  EXPECT_FALSE(service::parse_relates_to(event("$e", "@a:x", "m.room.message", R"({"m.relates_to":{"m.in_reply_to":{"event_id":"$p"}}})").pdu));
  EXPECT_FALSE(service::parse_relates_to(event("$e", "@a:x", "m.room.message", R"({"m.relates_to":{"rel_type":1,"event_id":"$p"}})").pdu));
  EXPECT_FALSE(service::parse_relates_to(event("$e", "@a:x", "m.room.message", R"({"m.relates_to":"$p"})").pdu));
  EXPECT_FALSE(service::parse_relates_to(object{{"content", "x"}}));
  auto no_key = service::parse_relates_to(event("$e", "@a:x", "m.reaction",
                                                R"({"m.relates_to":{"rel_type":"m.annotation","event_id":"$p","key":5}})").pdu);
  ASSERT_TRUE(no_key);
  EXPECT_FALSE(no_key->key);
}

TEST(Relations, ValidReplacement) {
  auto orig = event("$orig", "@a:x", "m.room.message", R"({"body":"a"})");
  EXPECT_TRUE(service::is_valid_replacement(orig, event("$e", "@a:x", "m.room.message", kEdit)));
}

TEST(Relations, ReplacementRulesOfTheSpec) {
  auto orig = event("$orig", "@a:x", "m.room.message", R"({"body":"a"})");
  // Another sender, another type, another room.
  EXPECT_FALSE(service::is_valid_replacement(orig, event("$e", "@b:x", "m.room.message", kEdit)));
  EXPECT_FALSE(service::is_valid_replacement(orig, event("$e", "@a:x", "m.sticker", kEdit)));
  auto elsewhere = event("$e", "@a:x", "m.room.message", kEdit);
  elsewhere.room_id = "!other:x";
  EXPECT_FALSE(service::is_valid_replacement(orig, elsewhere));
  // No m.new_content; or not an m.replace of this event.
  EXPECT_FALSE(service::is_valid_replacement(
      orig, event("$e", "@a:x", "m.room.message", R"({"body":"*","m.relates_to":{"rel_type":"m.replace","event_id":"$orig"}})")));
  EXPECT_FALSE(service::is_valid_replacement(
      orig, event("$e", "@a:x", "m.room.message", R"({"m.new_content":{},"m.relates_to":{"rel_type":"m.reference","event_id":"$orig"}})")));
  EXPECT_FALSE(service::is_valid_replacement(
      orig, event("$e", "@a:x", "m.room.message", R"({"m.new_content":{},"m.relates_to":{"rel_type":"m.replace","event_id":"$x"}})")));
  // State events cannot be edited, nor edit.
  auto state = orig;
  state.state_key = "";
  EXPECT_FALSE(service::is_valid_replacement(state, event("$e", "@a:x", "m.room.message", kEdit)));
  auto state_edit = event("$e", "@a:x", "m.room.message", kEdit);
  state_edit.state_key = "";
  EXPECT_FALSE(service::is_valid_replacement(orig, state_edit));
  // An edit cannot be edited.
  auto edit = event("$orig", "@a:x", "m.room.message",
                    R"({"m.new_content":{},"m.relates_to":{"rel_type":"m.replace","event_id":"$first"}})");
  EXPECT_FALSE(service::is_valid_replacement(edit, event("$e", "@a:x", "m.room.message", kEdit)));
  // An encrypted edit's m.new_content is in its ciphertext.
  auto enc = event("$orig", "@a:x", "m.room.encrypted", R"({"ciphertext":"..."})");
  EXPECT_TRUE(service::is_valid_replacement(
      enc, event("$e", "@a:x", "m.room.encrypted", R"({"ciphertext":"...","m.relates_to":{"rel_type":"m.replace","event_id":"$orig"}})")));
}

}  // namespace
