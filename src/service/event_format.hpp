#pragma once
// Turning stored PDUs into the Client-Server API's event formats.
#include "room/room_version.hpp"
#include "storage/event_store.hpp"

#include <boost/json/object.hpp>
#include <optional>
#include <string>

namespace trestle::service {

struct ClientEventOptions {
  // The device that is reading: its own sends get unsigned.transaction_id.
  std::optional<std::string> viewer_user_id;
  std::optional<std::string> viewer_device_id;
  bool include_room_id = true;  // /sync leaves room_id out (it is the key of the room)
  // Bundled aggregations (unsigned.m.relations) are added for a viewer: 0 for an event served
  // itself; 1 inside another's aggregation (a thread's latest event gets only its edit); 2: none.
  int aggregation_depth = 0;
};

// The ClientEvent format: content, event_id, origin_server_ts, room_id, sender, type,
// state_key, unsigned (age, prev_content, replaces_state, transaction_id, redacted_because),
// and redacts. Redacted events carry redacted content. `c` loads the redaction event. An erased
// sender's events are pruned for a viewer who was not joined when they were sent.
boost::json::object client_event(const storage::events::StoredEvent& e, storage::Connection& c,
                                 const ClientEventOptions& opts = {});

// The federation format a filter's `event_format: federation` asks for: the PDU as stored
// (redacted when redacted), with `event_id` added, and `unsigned.age`.
boost::json::object federation_event(const storage::events::StoredEvent& e, storage::Connection& c);
// MSC2228 (enable_ephemeral_messages): once the time in `org.matrix.self_destruct_after` has
// passed, an event is served pruned as if redacted. Set once at start-up.
void set_self_destruct_enabled(bool on);

// Stripped state (type, state_key, content, sender) for invites.
boost::json::object stripped_state_event(const storage::events::StoredEvent& e);

}  // namespace trestle::service
