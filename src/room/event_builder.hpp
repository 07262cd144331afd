#pragma once
// Building a new local event: its DAG fields (prev_events, depth, auth_events), the auth rules,
// the content hash, our signature and the event ID. Pure room logic: what it needs of the room
// it asks through RoomStateView, so the same builder serves every sender (client sends, state,
// membership, redaction, room creation, upgrades, appservices) whatever backs the state.
#include "core/crypto.hpp"
#include "room/auth_rules.hpp"
#include "room/room_version.hpp"

#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace trestle::room {

// What building reads of the room the event goes into.
class RoomStateView {
public:
  virtual ~RoomStateView() = default;
  // The room's forward extremities (the events the new one follows).
  virtual std::vector<std::string> forward_extremities() = 0;
  // The depth of an earlier event; nullopt when unknown.
  virtual std::optional<int64_t> depth_of(const std::string& event_id) = 0;
  // The current state event of (type, state_key) as the auth rules read it: room_id, sender,
  // type, state_key, content (of a membership only "membership"), event_id. nullopt when unset.
  struct AuthEvent {
    std::string event_id;
    boost::json::object fields;
  };
  virtual std::optional<AuthEvent> current_auth_event(const std::string& type, const std::string& state_key) = 0;
  // Room and sender of an event a redaction names; nullopt when unknown.
  struct EventOrigin {
    std::string room_id;
    std::string sender;
  };
  virtual std::optional<EventOrigin> event_origin(const std::string& event_id) = 0;
  // Whether a room of this ID exists already (v12 room IDs come from the create event's ID).
  virtual bool room_exists(const std::string& room_id) = 0;
};

// One event as its sender asks for it, before the DAG fields are filled in.
struct EventDraft {
  std::string room_id;  // ignored for a v12 create event, whose ID names the room
  std::string sender;
  std::string type;
  std::optional<std::string> state_key;
  boost::json::object content;
  std::optional<std::string> redacts{};
  int64_t origin_server_ts = 0;
};

struct BuiltEvent {
  boost::json::object pdu;  // hashed and signed; no "unsigned" yet
  std::string event_id;
  std::string room_id;
  int64_t depth = 0;
};

// Who signs: our server name and signing key.
struct Origin {
  const std::string& server_name;
  const core::SigningKey& key;
};

// The room version an event of this draft is built under: the create event's room_version for
// a create event, else `room_version` (the room's). 400 M_UNSUPPORTED_ROOM_VERSION when unknown.
const RoomVersion& version_for(const EventDraft& draft, const std::string& room_version);

// Builds, authorises and signs the event. Throws MatrixError: 413 M_TOO_LARGE for a type or
// state_key over 255 bytes, 400 M_NOT_JSON for content the event format cannot carry, 400
// M_INVALID_PARAM for a tombstone naming its own room, 403 M_FORBIDDEN with the auth rules' reason
// (or when redacting another's event without the "redact" power level).
BuiltEvent build_event(const EventDraft& draft, const RoomVersion& version, RoomStateView& room, const Origin& origin);

// Whether the auth rules read events of this type (the create event, power levels, membership,
// join rules, third-party invites): only those are worth keeping as auth events.
bool is_auth_state_type(const std::string& type);

// The fields of a stored state event the auth rules read (RoomStateView::AuthEvent::fields); empty
// for types they never read.
boost::json::object auth_fields(const boost::json::object& pdu);

}  // namespace trestle::room
