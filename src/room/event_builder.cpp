#include "room/event_builder.hpp"

#include "core/canonical_json.hpp"
#include "core/error.hpp"
#include "core/json_fields.hpp"
#include "core/json_depth.hpp"
#include "room/event_crypto.hpp"

#include <algorithm>

namespace trestle::room {

using boost::json::array;
using boost::json::object;
using core::str_or;

namespace {
constexpr size_t kMaxTypeOrStateKeyBytes = 255;  // the spec's limit on an event's type and state_key


void check_draft(const EventDraft& d) {
  if (d.type.size() > kMaxTypeOrStateKeyBytes || (d.state_key && d.state_key->size() > kMaxTypeOrStateKeyBytes)) {
    throw MatrixError(413, "M_TOO_LARGE", "An event's type and state_key must not exceed 255 bytes");
  }
  if (d.type == "m.room.tombstone" && str_or(d.content, "replacement_room") == d.room_id) {
    throw MatrixError::invalid_param("A tombstone cannot name the room it is sent in as its replacement");
  }
  // Content as deep as a request may carry sits one level deeper in the PDU, which the stored-JSON
  // reader takes with room to spare (core/json_depth.hpp); deeper content can only come from a bug.
  if (core::json_depth(d.content) > core::kMaxJsonDepth) throw MatrixError::bad_json("Event content is nested too deeply");
  if (!core::is_event_json_compatible(d.content)) {
    throw MatrixError::bad_json(
        "Event content must not contain floats, exponents or integers outside [-(2^53)+1, (2^53)-1]");
  }
}

bool is_create(const EventDraft& d) { return d.type == "m.room.create" && d.state_key && d.state_key->empty(); }
}  // namespace

bool is_auth_state_type(const std::string& type) {
  return type == "m.room.create" || type == "m.room.power_levels" || type == "m.room.member" ||
         type == "m.room.join_rules" || type == "m.room.third_party_invite";
}

object auth_fields(const object& pdu) {
  auto* type = pdu.if_contains("type");
  if (!type || !type->is_string() || !pdu.contains("state_key") || !is_auth_state_type(std::string(type->as_string()))) {
    return {};
  }
  object out;
  for (const char* key : {"room_id", "sender", "type", "state_key", "event_id"}) {
    if (auto* v = pdu.if_contains(key)) out[key] = *v;
  }
  // Of a membership only "membership" matters (a long displayname never does).
  auto* content = pdu.if_contains("content");
  if (content && content->is_object()) {
    if (type->as_string() == "m.room.member") {
      object trimmed;
      if (auto* m = content->as_object().if_contains("membership")) trimmed["membership"] = *m;
      out["content"] = std::move(trimmed);
    } else {
      out["content"] = *content;
    }
  }
  return out;
}

const RoomVersion& version_for(const EventDraft& draft, const std::string& room_version) {
  const RoomVersion* v = find_room_version(is_create(draft) ? str_or(draft.content, "room_version", "1") : room_version);
  if (!v) throw MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", "Unsupported room version");
  return *v;
}

BuiltEvent build_event(const EventDraft& d, const RoomVersion& version, RoomStateView& room, const Origin& origin) {
  check_draft(d);
  // v12: the create event carries no room_id; its event ID, with '!', becomes the room ID.
  const bool derives_room_id = is_create(d) && version.room_id_is_create_event_id;
  object pdu;
  if (!derives_room_id) pdu["room_id"] = d.room_id;
  pdu["sender"] = d.sender;
  pdu["type"] = d.type;
  if (d.state_key) pdu["state_key"] = *d.state_key;
  pdu["content"] = d.content;
  pdu["origin_server_ts"] = d.origin_server_ts;
  if (d.redacts && !version.v11_redaction_and_create) pdu["redacts"] = *d.redacts;

  // DAG position: we are the only server in our rooms, so there is one extremity.
  int64_t depth = 1;
  array prev_events;
  if (!derives_room_id) {
    for (const auto& id : room.forward_extremities()) {
      if (auto p = room.depth_of(id)) depth = std::max(depth, *p + 1);
      prev_events.emplace_back(id);
    }
  }
  pdu["prev_events"] = std::move(prev_events);
  pdu["depth"] = depth;

  // Auth events: the current state entries the auth rules name for this event.
  StateMap auth_state;
  array auth_events;
  for (const auto& key : auth_event_keys(pdu)) {
    auto e = room.current_auth_event(key.first, key.second);
    if (!e || e->fields.empty()) continue;
    auto& fields = auth_state[key] = std::move(e->fields);
    if (key.first == "m.room.create" && version.room_id_is_create_event_id) {
      // v12: the room ID stands for the create event, which is never an auth event; the auth
      // rules compare the room ID with its event ID.
      fields["event_id"] = e->event_id;
      continue;
    }
    auth_events.emplace_back(e->event_id);
  }
  pdu["auth_events"] = std::move(auth_events);

  if (auto reason = check_event_auth(pdu, auth_state, version)) throw MatrixError::forbidden(*reason);
  if (d.type == "m.room.redaction" && d.redacts) {
    // The auth rules let anyone on the target's server redact it, and here that is everyone: like
    // Synapse, only those with the "redact" power level may redact others' events. The power
    // levels and the create event (v12 creators) are among the redaction's auth state.
    auto target = room.event_origin(*d.redacts);
    if (target && target->room_id == d.room_id && target->sender != d.sender &&
        user_power_level(auth_state, d.sender, version) < named_power_level(auth_state, "redact")) {
      throw MatrixError::forbidden("You don't have permission to redact this event");
    }
  }

  if (version.id == "1" || version.id == "2") {
    // These versions name an event by an ID its origin server picks and puts in the event.
    pdu["event_id"] = "$" + core::random_string(18) + ":" + origin.server_name;
  }
  std::string event_id = hash_sign_and_id(pdu, origin.server_name, origin.key, version);
  std::string room_id = d.room_id;
  if (derives_room_id) {
    // Identical create events (same sender, content and millisecond) would name the same room:
    // move the later one's timestamp on until its ID is free.
    for (int attempt = 0; room.room_exists("!" + event_id.substr(1)); ++attempt) {
      if (attempt == 100) throw MatrixError(500, "M_UNKNOWN", "Could not choose a free room ID");
      pdu.erase("signatures");
      pdu.erase("hashes");
      pdu["origin_server_ts"] = pdu["origin_server_ts"].as_int64() + 1;
      event_id = hash_sign_and_id(pdu, origin.server_name, origin.key, version);
    }
    room_id = "!" + event_id.substr(1);
  }
  return BuiltEvent{std::move(pdu), std::move(event_id), std::move(room_id), depth};
}

}  // namespace trestle::room
