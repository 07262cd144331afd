#include "room/event_crypto.hpp"

#include "core/canonical_json.hpp"
#include "core/crypto.hpp"
#include "room/room_version.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <stdexcept>

using namespace trestle;
using room::RoomVersion;

namespace {

// content/appendices.md "Cryptographic Test Vectors".
constexpr const char* kSpecSigningKeyFile = "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1\n";
constexpr const char* kSpecServerName = "domain";
constexpr const char* kSpecKeyId = "ed25519:1";

boost::json::object parse_object(std::string_view text) { return boost::json::parse(text).as_object(); }

const RoomVersion& version(std::string_view id) {
  const RoomVersion* v = room::find_room_version(id);
  if (!v) throw std::invalid_argument("test asked for unknown room version");
  return *v;
}

class EventCrypto : public ::testing::Test {
protected:
  void SetUp() override {
    core::crypto_init();
    key_ = core::SigningKey::parse(kSpecSigningKeyFile);
  }
  core::SigningKey key_;
};

}  // namespace

// --- Room versions -------------------------------------------------------------------------------

TEST(RoomVersions, SupportedAndDefault) {
  const std::vector<std::string> expected = {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"};
  EXPECT_EQ(room::supported_room_versions(), expected);
  EXPECT_EQ(room::default_room_version().id, "10");  // as Synapse: clients lag (nheko 0.11 and v11 spaces)
  for (const auto& id : expected) {
    ASSERT_NE(room::find_room_version(id), nullptr) << id;
    EXPECT_EQ(room::find_room_version(id)->id, id);
  }
  for (const char* id : {"", "0", "13", "1.0", "v10", "org.matrix.msc2176"})
    EXPECT_EQ(room::find_room_version(id), nullptr) << id;
}

TEST(RoomVersions, FlagsFollowTheSpec) {
  for (int n = 1; n <= 12; ++n) {
    const RoomVersion& v = version(std::to_string(n));
    EXPECT_EQ(v.privileged_creators, n >= 12) << n;
    EXPECT_EQ(v.room_id_is_create_event_id, n >= 12) << n;
    EXPECT_EQ(v.knock_allowed, n >= 7) << n;
    EXPECT_EQ(v.restricted_join_allowed, n >= 8) << n;
    EXPECT_EQ(v.knock_restricted_allowed, n >= 10) << n;
    EXPECT_EQ(v.integer_power_levels_only, n >= 10) << n;
    EXPECT_EQ(v.v11_redaction_and_create, n >= 11) << n;
  }
}

// --- Spec test vectors -----------------------------------------------------------------------------

TEST_F(EventCrypto, SpecSignEmptyObject) {
  boost::json::object obj;
  room::sign_json(obj, kSpecServerName, key_);
  EXPECT_EQ(boost::json::value(obj), boost::json::parse(R"({
    "signatures": {
        "domain": {
            "ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
        }
    }
})"));
  EXPECT_TRUE(room::verify_json_signature(obj, kSpecServerName, kSpecKeyId, key_.public_key()));
}

TEST_F(EventCrypto, SpecSignObjectWithData) {
  auto obj = parse_object(R"({
    "one": 1,
    "two": "Two"
})");
  room::sign_json(obj, kSpecServerName, key_);
  EXPECT_EQ(boost::json::value(obj), boost::json::parse(R"({
    "one": 1,
    "signatures": {
        "domain": {
            "ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
        }
    },
    "two": "Two"
})"));
  EXPECT_TRUE(room::verify_json_signature(obj, kSpecServerName, kSpecKeyId, key_.public_key()));
}

namespace {

constexpr const char* kSpecMinimalEvent = R"({
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "signatures": {},
    "hashes": {},
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
    "unsigned": {
        "age_ts": 1000000
    }
})";

constexpr const char* kSpecMinimalEventSigned = R"({
    "auth_events": [],
    "content": {},
    "depth": 3,
    "hashes": {
        "sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
    },
    "origin": "domain",
    "origin_server_ts": 1000000,
    "prev_events": [],
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
        }
    },
    "type": "X",
    "unsigned": {
        "age_ts": 1000000
    }
})";

constexpr const char* kSpecRedactableEvent = R"({
    "content": {
        "body": "Here is the message content"
    },
    "event_id": "$0:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {},
    "unsigned": {
        "age_ts": 1000000
    }
})";

constexpr const char* kSpecRedactableEventSigned = R"({
    "content": {
        "body": "Here is the message content"
    },
    "event_id": "$0:domain",
    "hashes": {
        "sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"
    },
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"
        }
    },
    "unsigned": {
        "age_ts": 1000000
    }
})";

}  // namespace

TEST_F(EventCrypto, SpecContentHashes) {
  EXPECT_EQ(room::compute_content_hash(parse_object(kSpecMinimalEvent)), "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos");
  EXPECT_EQ(room::compute_content_hash(parse_object(kSpecRedactableEvent)),
            "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g");
}

TEST_F(EventCrypto, SpecSignMinimalEvent) {
  // The vectors predate v11 and keep "origin", so every pre-v11 version must reproduce them.
  for (const char* id : {"1", "3", "6", "9", "10"}) {
    auto event = parse_object(kSpecMinimalEvent);
    room::hash_and_sign_event(event, kSpecServerName, key_, version(id));
    EXPECT_EQ(boost::json::value(event), boost::json::parse(kSpecMinimalEventSigned)) << "room version " << id;
  }
}

TEST_F(EventCrypto, SpecSignRedactableEvent) {
  for (const char* id : {"1", "3", "6", "9", "10"}) {
    auto event = parse_object(kSpecRedactableEvent);
    room::hash_and_sign_event(event, kSpecServerName, key_, version(id));
    EXPECT_EQ(boost::json::value(event), boost::json::parse(kSpecRedactableEventSigned)) << "room version " << id;
  }
}

TEST_F(EventCrypto, SpecSignedEventsVerifyOnTheirRedactedForm) {
  for (const char* text : {kSpecMinimalEventSigned, kSpecRedactableEventSigned}) {
    const auto redacted = room::redact_event(parse_object(text), version("10"));
    EXPECT_TRUE(room::verify_json_signature(redacted, kSpecServerName, kSpecKeyId, key_.public_key()));
  }
}

TEST_F(EventCrypto, V11SigningDropsOriginFromSignedData) {
  auto event = parse_object(kSpecMinimalEvent);
  room::hash_and_sign_event(event, kSpecServerName, key_, version("11"));
  EXPECT_EQ(event.at("hashes").at("sha256"), "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos");
  const auto& signature = event.at("signatures").at("domain").at("ed25519:1");
  EXPECT_NE(signature, "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg");
  EXPECT_TRUE(room::verify_json_signature(room::redact_event(event, version("11")), kSpecServerName, kSpecKeyId,
                                          key_.public_key()));
  EXPECT_FALSE(room::verify_json_signature(room::redact_event(event, version("10")), kSpecServerName, kSpecKeyId,
                                           key_.public_key()));
}

// --- JSON signing behaviour -----------------------------------------------------------------------

TEST_F(EventCrypto, SignJsonKeepsUnsignedAndOtherSignatures) {
  auto obj = parse_object(R"({"a":1,"unsigned":{"age":5},"signatures":{"other.org":{"ed25519:x":"abc"}}})");
  room::sign_json(obj, kSpecServerName, key_);
  EXPECT_EQ(obj.at("unsigned"), boost::json::parse(R"({"age":5})"));
  EXPECT_EQ(obj.at("signatures").at("other.org").at("ed25519:x"), "abc");
  EXPECT_TRUE(room::verify_json_signature(obj, kSpecServerName, kSpecKeyId, key_.public_key()));
  // Signatures and unsigned are outside the signed bytes, so changing them changes nothing.
  obj["unsigned"] = boost::json::object{{"age", 99}};
  EXPECT_TRUE(room::verify_json_signature(obj, kSpecServerName, kSpecKeyId, key_.public_key()));
}

TEST_F(EventCrypto, VerifyRejectsTamperingAndMismatches) {
  auto obj = parse_object(R"({"one":1,"two":"Two"})");
  room::sign_json(obj, kSpecServerName, key_);
  const std::string& pk = key_.public_key();
  EXPECT_FALSE(room::verify_json_signature(obj, "other", kSpecKeyId, pk));
  EXPECT_FALSE(room::verify_json_signature(obj, kSpecServerName, "ed25519:2", pk));
  EXPECT_FALSE(room::verify_json_signature(obj, kSpecServerName, kSpecKeyId,
                                           core::SigningKey::generate("2").public_key()));
  auto tampered = obj;
  tampered["two"] = "Three";
  EXPECT_FALSE(room::verify_json_signature(tampered, kSpecServerName, kSpecKeyId, pk));
  auto garbled = obj;
  garbled["signatures"].as_object()["domain"].as_object()[kSpecKeyId] = "not base64!";
  EXPECT_FALSE(room::verify_json_signature(garbled, kSpecServerName, kSpecKeyId, pk));
  auto with_float = obj;
  with_float["f"] = 1.5;
  EXPECT_FALSE(room::verify_json_signature(with_float, kSpecServerName, kSpecKeyId, pk));
  EXPECT_FALSE(room::verify_json_signature(parse_object("{}"), kSpecServerName, kSpecKeyId, pk));
}

// --- Redaction ------------------------------------------------------------------------------------

namespace {

boost::json::object state_event(std::string_view type, std::string_view content_json) {
  auto event = parse_object(R"({
    "event_id": "$e:domain", "type": "", "room_id": "!r:domain", "sender": "@u:domain", "state_key": "",
    "hashes": {"sha256": "h"}, "signatures": {"domain": {"ed25519:1": "s"}}, "depth": 4,
    "prev_events": ["$p"], "auth_events": ["$a"], "origin": "domain", "origin_server_ts": 1,
    "membership": "join", "prev_state": [], "redacts": "$x", "unsigned": {"age": 1}, "extra": true
  })");
  event["type"] = type;
  event["content"] = boost::json::parse(content_json);
  return event;
}

boost::json::value redacted_content(std::string_view type, std::string_view content_json, std::string_view id) {
  return room::redact_event(state_event(type, content_json), version(id)).at("content");
}

}  // namespace

TEST(EventRedaction, TopLevelKeysV10) {
  const auto redacted = room::redact_event(state_event("m.room.message", R"({"body":"hi"})"), version("10"));
  EXPECT_EQ(boost::json::value(redacted), boost::json::parse(R"({
    "event_id": "$e:domain", "type": "m.room.message", "room_id": "!r:domain", "sender": "@u:domain",
    "state_key": "", "hashes": {"sha256": "h"}, "signatures": {"domain": {"ed25519:1": "s"}}, "depth": 4,
    "prev_events": ["$p"], "auth_events": ["$a"], "origin": "domain", "origin_server_ts": 1,
    "membership": "join", "prev_state": [], "content": {}
  })"));
}

TEST(EventRedaction, TopLevelKeysV11) {
  const auto redacted = room::redact_event(state_event("m.room.message", R"({"body":"hi"})"), version("11"));
  EXPECT_EQ(boost::json::value(redacted), boost::json::parse(R"({
    "event_id": "$e:domain", "type": "m.room.message", "room_id": "!r:domain", "sender": "@u:domain",
    "state_key": "", "hashes": {"sha256": "h"}, "signatures": {"domain": {"ed25519:1": "s"}}, "depth": 4,
    "prev_events": ["$p"], "auth_events": ["$a"], "origin_server_ts": 1, "content": {}
  })"));
}

TEST(EventRedaction, CreateEvent) {
  const char* content = R"({"creator":"@u:domain","room_version":"10","m.federate":false,"type":"m.space"})";
  EXPECT_EQ(redacted_content("m.room.create", content, "10"), boost::json::parse(R"({"creator":"@u:domain"})"));
  EXPECT_EQ(redacted_content("m.room.create", content, "11"), boost::json::parse(content));
}

TEST(EventRedaction, RedactionEvent) {
  EXPECT_EQ(redacted_content("m.room.redaction", R"({"redacts":"$x","reason":"spam"})", "10"),
            boost::json::parse("{}"));
  EXPECT_EQ(redacted_content("m.room.redaction", R"({"redacts":"$x","reason":"spam"})", "11"),
            boost::json::parse(R"({"redacts":"$x"})"));
}

TEST(EventRedaction, PowerLevels) {
  const char* content = R"({"ban":50,"events":{"m.room.name":100},"events_default":0,"invite":50,"kick":50,
    "redact":50,"state_default":50,"users":{"@u:domain":100},"users_default":0,"notifications":{"room":50}})";
  EXPECT_EQ(redacted_content("m.room.power_levels", content, "10"), boost::json::parse(R"({"ban":50,
    "events":{"m.room.name":100},"events_default":0,"kick":50,"redact":50,"state_default":50,
    "users":{"@u:domain":100},"users_default":0})"));
  EXPECT_EQ(redacted_content("m.room.power_levels", content, "11"), boost::json::parse(R"({"ban":50,
    "events":{"m.room.name":100},"events_default":0,"invite":50,"kick":50,"redact":50,"state_default":50,
    "users":{"@u:domain":100},"users_default":0})"));
}

TEST(EventRedaction, MemberEvent) {
  const char* content = R"({"membership":"join","displayname":"U","avatar_url":"mxc://x/y",
    "join_authorised_via_users_server":"@admin:domain",
    "third_party_invite":{"display_name":"u@example.org","signed":{"mxid":"@u:domain","token":"t"}}})";
  EXPECT_EQ(redacted_content("m.room.member", content, "8"), boost::json::parse(R"({"membership":"join"})"));
  EXPECT_EQ(redacted_content("m.room.member", content, "9"),
            boost::json::parse(R"({"membership":"join","join_authorised_via_users_server":"@admin:domain"})"));
  EXPECT_EQ(redacted_content("m.room.member", content, "10"),
            boost::json::parse(R"({"membership":"join","join_authorised_via_users_server":"@admin:domain"})"));
  EXPECT_EQ(redacted_content("m.room.member", content, "11"), boost::json::parse(R"({"membership":"join",
    "join_authorised_via_users_server":"@admin:domain",
    "third_party_invite":{"signed":{"mxid":"@u:domain","token":"t"}}})"));
  // Without a signed block there is nothing of the third-party invite to keep.
  EXPECT_EQ(redacted_content("m.room.member", R"({"membership":"invite","third_party_invite":{"display_name":"x"}})",
                             "11"),
            boost::json::parse(R"({"membership":"invite"})"));
}

TEST(EventRedaction, JoinRules) {
  const char* content = R"({"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!o:d"}],"x":1})";
  EXPECT_EQ(redacted_content("m.room.join_rules", content, "7"), boost::json::parse(R"({"join_rule":"restricted"})"));
  EXPECT_EQ(redacted_content("m.room.join_rules", content, "8"),
            boost::json::parse(R"({"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!o:d"}]})"));
  EXPECT_EQ(redacted_content("m.room.join_rules", content, "11"),
            boost::json::parse(R"({"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!o:d"}]})"));
}

TEST(EventRedaction, AliasesAndHistoryVisibility) {
  EXPECT_EQ(redacted_content("m.room.aliases", R"({"aliases":["#a:domain"]})", "5"),
            boost::json::parse(R"({"aliases":["#a:domain"]})"));
  EXPECT_EQ(redacted_content("m.room.aliases", R"({"aliases":["#a:domain"]})", "6"), boost::json::parse("{}"));
  for (const char* id : {"1", "10", "11"})
    EXPECT_EQ(redacted_content("m.room.history_visibility", R"({"history_visibility":"shared","x":1})", id),
              boost::json::parse(R"({"history_visibility":"shared"})"));
}

TEST(EventRedaction, MalformedContentBecomesEmpty) {
  EXPECT_EQ(redacted_content("m.room.member", R"("join")", "10"), boost::json::parse("{}"));
}

// --- Event IDs ------------------------------------------------------------------------------------

TEST_F(EventCrypto, EventIdIsUrlSafeReferenceHash) {
  auto event = parse_object(kSpecMinimalEvent);
  room::hash_and_sign_event(event, kSpecServerName, key_, version("10"));
  const std::string id = room::compute_event_id(event, version("10"));

  // Recompute by the spec's steps: redact, drop signatures/unsigned, canonical JSON, SHA-256.
  auto redacted = room::redact_event(event, version("10"));
  redacted.erase("signatures");
  redacted.erase("unsigned");
  const std::string expected = "$" + core::base64url_encode(core::sha256(core::canonical_json(redacted)));
  EXPECT_EQ(id, expected);
  EXPECT_EQ(id.size(), 44u);
  EXPECT_EQ(id.find_first_of("+/="), std::string::npos);
}

TEST_F(EventCrypto, EventIdIgnoresSignaturesUnsignedAndRedactableContent) {
  auto event = parse_object(kSpecRedactableEvent);
  event.erase("event_id");
  room::hash_and_sign_event(event, kSpecServerName, key_, version("10"));
  const std::string id = room::compute_event_id(event, version("10"));

  auto resigned = event;
  resigned["signatures"] = boost::json::object{};
  resigned["unsigned"] = boost::json::object{{"age", 12345}};
  resigned["event_id"] = id;  // a locally attached copy of the ID must not feed into itself
  EXPECT_EQ(room::compute_event_id(resigned, version("10")), id);

  // Redacting keeps the ID: the content hash stands in for the removed content.
  EXPECT_EQ(room::compute_event_id(room::redact_event(event, version("10")), version("10")), id);

  auto edited = event;
  edited["content"].as_object()["body"] = "changed";
  room::hash_and_sign_event(edited, kSpecServerName, key_, version("10"));
  EXPECT_NE(room::compute_event_id(edited, version("10")), id);
}

TEST_F(EventCrypto, EventIdFormatPerVersion) {
  auto event = parse_object(kSpecMinimalEvent);
  room::hash_and_sign_event(event, kSpecServerName, key_, version("3"));
  auto redacted = room::redact_event(event, version("3"));
  redacted.erase("signatures");
  const std::string hash = core::sha256(core::canonical_json(redacted));
  EXPECT_EQ(room::compute_event_id(event, version("3")), "$" + core::base64_encode(hash));
  EXPECT_EQ(room::compute_event_id(event, version("4")), "$" + core::base64url_encode(hash));
  // v11 redacts differently (no "origin"), so the same JSON has a different ID.
  EXPECT_NE(room::compute_event_id(event, version("11")), room::compute_event_id(event, version("10")));

  // v1/v2 IDs are chosen by the sender and carried in the event.
  EXPECT_EQ(room::compute_event_id(parse_object(kSpecRedactableEventSigned), version("1")), "$0:domain");
  EXPECT_THROW(room::compute_event_id(parse_object(kSpecMinimalEvent), version("2")), std::invalid_argument);
}

TEST_F(EventCrypto, HashAndSignRejectsFloats) {
  auto event = parse_object(kSpecMinimalEvent);
  event["content"] = boost::json::object{{"x", 0.5}};
  EXPECT_THROW(room::hash_and_sign_event(event, kSpecServerName, key_, version("10")), std::invalid_argument);
}

TEST_F(EventCrypto, HashSignAndIdMatchesSigningThenComputingTheId) {
  for (const char* id : {"1", "3", "4", "10", "11"}) {
    for (const char* text : {kSpecMinimalEvent, kSpecRedactableEvent}) {
      auto expected = parse_object(text);
      // v1/v2 events carry the ID their server chose.
      if (std::string(id) == "1") expected["event_id"] = "$abc:domain";
      auto event = expected;
      room::hash_and_sign_event(expected, kSpecServerName, key_, version(id));
      const std::string event_id = room::hash_sign_and_id(event, kSpecServerName, key_, version(id));
      EXPECT_EQ(boost::json::value(event), boost::json::value(expected)) << "room version " << id;
      EXPECT_EQ(event_id, room::compute_event_id(expected, version(id))) << "room version " << id;
    }
  }
  // From v3 on, an event_id in the event (local bookkeeping) stays out of the reference hash.
  auto named = parse_object(kSpecMinimalEvent);
  named["event_id"] = "$local";
  const std::string id = room::hash_sign_and_id(named, kSpecServerName, key_, version("10"));
  EXPECT_EQ(id, room::compute_event_id(named, version("10")));
}
