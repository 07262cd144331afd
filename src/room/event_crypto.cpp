#include "room/event_crypto.hpp"

#include "core/canonical_json.hpp"

#include <boost/json.hpp>

#include <charconv>
#include <initializer_list>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace trestle::room {
namespace {

int version_number(const RoomVersion& version) {
  int number = 0;
  const char* begin = version.id.data();
  const char* end = begin + version.id.size();
  const auto [ptr, ec] = std::from_chars(begin, end, number);
  if (ec != std::errc{} || ptr != end || number < 1)
    throw std::invalid_argument("unknown room version '" + version.id + "'");
  return number;
}

// The redaction algorithm's differences between room versions (content/rooms/v*.md):
// v1-v5 v1-redactions, v6-v7 drop m.room.aliases, v8 keeps join_rules "allow",
// v9-v10 also keep join_authorised_via_users_server, v11 has its own list.
struct RedactionRules {
  bool keeps_origin_membership_prev_state;  // top-level keys dropped by v11
  bool keeps_aliases;                       // m.room.aliases content, v1-v5
  bool keeps_join_rules_allow;              // v8+
  bool keeps_join_authorised_via;           // v9+
  bool v11_content_rules;                   // create: all; redaction: redacts; power_levels: invite;
                                            // member: third_party_invite.signed
};

RedactionRules redaction_rules(const RoomVersion& version) {
  const int number = version_number(version);
  const bool v11 = version.v11_redaction_and_create;
  return RedactionRules{
      .keeps_origin_membership_prev_state = !v11,
      .keeps_aliases = number <= 5,
      .keeps_join_rules_allow = number >= 8,
      .keeps_join_authorised_via = number >= 9,
      .v11_content_rules = v11,
  };
}

void copy_keys(const boost::json::object& from, boost::json::object& to, std::initializer_list<std::string_view> keys) {
  for (std::string_view key : keys)
    if (const auto* value = from.if_contains(key)) to[key] = *value;
}

boost::json::object redact_content(std::string_view type, const boost::json::object& content,
                                   const RedactionRules& rules) {
  boost::json::object kept;
  if (type == "m.room.member") {
    copy_keys(content, kept, {"membership"});
    if (rules.keeps_join_authorised_via) copy_keys(content, kept, {"join_authorised_via_users_server"});
    if (rules.v11_content_rules) {
      // Only the signed part of a third-party invite survives; the rest is display material.
      const auto* invite = content.if_contains("third_party_invite");
      if (invite && invite->is_object()) {
        if (const auto* signed_block = invite->get_object().if_contains("signed"))
          kept["third_party_invite"] = boost::json::object{{"signed", *signed_block}};
      }
    }
  } else if (type == "m.room.create") {
    if (rules.v11_content_rules) return content;
    copy_keys(content, kept, {"creator"});
  } else if (type == "m.room.join_rules") {
    copy_keys(content, kept, {"join_rule"});
    if (rules.keeps_join_rules_allow) copy_keys(content, kept, {"allow"});
  } else if (type == "m.room.power_levels") {
    copy_keys(content, kept, {"ban", "events", "events_default", "kick", "redact", "state_default", "users",
                              "users_default"});
    if (rules.v11_content_rules) copy_keys(content, kept, {"invite"});
  } else if (type == "m.room.aliases") {
    if (rules.keeps_aliases) copy_keys(content, kept, {"aliases"});
  } else if (type == "m.room.history_visibility") {
    copy_keys(content, kept, {"history_visibility"});
  } else if (type == "m.room.redaction") {
    if (rules.v11_content_rules) copy_keys(content, kept, {"redacts"});
  }
  return kept;
}

std::string signature_key_material(const boost::json::object& obj) {
  return core::canonical_json_without(obj, {"signatures", "unsigned"});
}

std::string reference_event_id(const std::string& reference_material, int number) {
  const std::string reference_hash = core::sha256(reference_material);
  return "$" + (number == 3 ? core::base64_encode(reference_hash) : core::base64url_encode(reference_hash));
}

}  // namespace

boost::json::object redact_event(const boost::json::object& event, const RoomVersion& version) {
  const RedactionRules rules = redaction_rules(version);
  boost::json::object redacted;
  copy_keys(event, redacted, {"event_id", "type", "room_id", "sender", "state_key", "hashes", "signatures", "depth",
                              "prev_events", "auth_events", "origin_server_ts"});
  if (rules.keeps_origin_membership_prev_state) copy_keys(event, redacted, {"origin", "membership", "prev_state"});

  if (const auto* content = event.if_contains("content")) {
    const auto* type = event.if_contains("type");
    const std::string_view type_name = type && type->is_string() ? std::string_view(type->get_string()) : "";
    // Content that is not an object is malformed; redaction leaves nothing of it.
    redacted["content"] = content->is_object() ? redact_content(type_name, content->get_object(), rules)
                                               : boost::json::object{};
  }
  return redacted;
}

std::string compute_content_hash(const boost::json::object& event) {
  return core::base64_encode(core::sha256(core::canonical_json_without(event, {"unsigned", "signatures", "hashes"})));
}

std::string compute_event_id(const boost::json::object& event, const RoomVersion& version) {
  const int number = version_number(version);
  if (number <= 2) {
    // v1/v2 event IDs are assigned by the sending server rather than derived, so the only
    // answer is the one the event carries.
    const auto* event_id = event.if_contains("event_id");
    if (!event_id || !event_id->is_string())
      throw std::invalid_argument("room version " + version.id + " events carry their event_id");
    return std::string(event_id->get_string());
  }
  // From v3 on an event cannot name itself: an "event_id" we added for local bookkeeping must
  // not feed into the hash that defines it.
  return reference_event_id(
      core::canonical_json_without(redact_event(event, version), {"signatures", "unsigned", "event_id"}), number);
}

namespace {
// Sets hashes.sha256 and our signature; returns the redacted event and the canonical JSON signed.
std::pair<boost::json::object, std::string> hash_and_sign(boost::json::object& event, const std::string& server_name,
                                                          const core::SigningKey& key, const RoomVersion& version) {
  const std::string content_hash = compute_content_hash(event);
  auto* hashes = event.if_contains("hashes");
  if (!hashes || !hashes->is_object()) hashes = &(event["hashes"] = boost::json::object{});
  hashes->get_object()["sha256"] = content_hash;

  // The signature covers only what survives redaction (which includes the hashes), so it stays
  // verifiable on a redacted copy.
  boost::json::object redacted = redact_event(event, version);
  std::string material = signature_key_material(redacted);
  const std::string signature = core::base64_encode(key.sign(material));
  auto* signatures = event.if_contains("signatures");
  if (!signatures || !signatures->is_object()) signatures = &(event["signatures"] = boost::json::object{});
  auto& by_server = signatures->get_object()[server_name];
  if (!by_server.is_object()) by_server = boost::json::object{};
  by_server.get_object()[key.key_id()] = signature;
  return {std::move(redacted), std::move(material)};
}
}  // namespace

void hash_and_sign_event(boost::json::object& event, const std::string& server_name, const core::SigningKey& key,
                         const RoomVersion& version) {
  hash_and_sign(event, server_name, key, version);
}

std::string hash_sign_and_id(boost::json::object& event, const std::string& server_name, const core::SigningKey& key,
                             const RoomVersion& version) {
  auto [redacted, material] = hash_and_sign(event, server_name, key, version);
  const int number = version_number(version);
  if (number <= 2) return compute_event_id(event, version);
  // The reference hash covers the same redacted event less its own event_id: the signed bytes,
  // unless the event names itself.
  if (!redacted.contains("event_id")) return reference_event_id(material, number);
  return reference_event_id(core::canonical_json_without(redacted, {"signatures", "unsigned", "event_id"}), number);
}

void sign_json(boost::json::object& obj, const std::string& server_name, const core::SigningKey& key) {
  const std::string signature = core::base64_encode(key.sign(signature_key_material(obj)));
  auto* signatures = obj.if_contains("signatures");
  if (!signatures || !signatures->is_object()) signatures = &(obj["signatures"] = boost::json::object{});
  auto& by_server = signatures->get_object()[server_name];
  if (!by_server.is_object()) by_server = boost::json::object{};
  by_server.get_object()[key.key_id()] = signature;
}

bool verify_json_signature(const boost::json::object& obj, const std::string& server_name, const std::string& key_id,
                           std::string_view public_key) {
  const auto* signatures = obj.if_contains("signatures");
  if (!signatures || !signatures->is_object()) return false;
  const auto* by_server = signatures->get_object().if_contains(server_name);
  if (!by_server || !by_server->is_object()) return false;
  const auto* encoded = by_server->get_object().if_contains(key_id);
  if (!encoded || !encoded->is_string()) return false;
  const auto signature = core::base64_decode(encoded->get_string());
  if (!signature) return false;
  std::string message;
  try {
    message = signature_key_material(obj);
  } catch (const std::invalid_argument&) {
    return false;  // not canonical JSON, so it cannot carry a valid signature
  }
  return core::ed25519_verify(public_key, message, *signature);
}

}  // namespace trestle::room
