#pragma once
// The authorization rules of the room versions we support (spec: content/rooms/v*.md,
// "Authorization rules"), applied to every event before it is stored.
#include "room/room_version.hpp"

#include <boost/json/object.hpp>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace trestle::room {

// The state an event is authorised against, keyed by (type, state_key). Values are full events.
using StateMap = std::map<std::pair<std::string, std::string>, boost::json::object>;

// The (type, state_key) pairs whose current events become the event's auth_events:
// m.room.create, m.room.power_levels, the sender's m.room.member, and for m.room.member events
// the target's membership, m.room.join_rules (for join/invite/knock), the third party invite
// token, and for restricted joins the authorising user's membership. In room versions whose room
// ID is the create event's ID (v12) the m.room.create entry is still needed by check_event_auth
// (with its "event_id") but must not be listed in the event's auth_events.
std::vector<std::pair<std::string, std::string>> auth_event_keys(const boost::json::object& event);

// Checks `event` against `auth_state` (the room state before the event, of which only the entries
// auth_event_keys() names matter). Returns nullopt when allowed, else a human-readable reason.
// Signature checks are out of scope here (local events are signed by us).
std::optional<std::string> check_event_auth(const boost::json::object& event, const StateMap& auth_state,
                                            const RoomVersion& version);

// Helpers the services use for their own decisions (e.g. whether a user may redact another's
// event, or which level is needed to send a state event), reading m.room.power_levels defaults
// exactly as the auth rules do.
long long user_power_level(const StateMap& state, const std::string& user_id, const RoomVersion& version);
long long required_power_level(const StateMap& state, const std::string& event_type, bool is_state);
long long named_power_level(const StateMap& state, const std::string& name);  // "ban","kick","redact","invite"

}  // namespace trestle::room
