#pragma once
// Membership rules the client flows need beyond the event auth rules (spec: client-server-api
// "Knocking on rooms", "Restricted rooms", "Stripped state", "Invite permission"): the stripped
// state a knock carries, who authorises a restricted join, whether a user blocks invites, and
// rooms an admin blocked.
#include "room/room_version.hpp"
#include "storage/database.hpp"
#include "storage/event_store.hpp"

#include <boost/json/array.hpp>
#include <optional>
#include <string>

namespace trestle::service::membership_rules {

// The room's current stripped state: m.room.create, join_rules, name, avatar, topic,
// canonical_alias and encryption, each as {type, state_key, sender, content}.
boost::json::array stripped_room_state(storage::Connection& c, const std::string& room_id);

// /sync's knock_state.events for a knock event: the stripped state it carries
// (unsigned.knock_room_state, else the room's current stripped state) and the knock itself.
boost::json::array knock_state(storage::Connection& c, const storage::events::StoredEvent& knock);

// A join by `user_id`, who is neither invited nor joined, to a room whose join rule is
// `restricted` (v8+) or `knock_restricted` (v10+): checks the `allow` conditions (joined to one
// of the `m.room_membership` rooms; 403 M_FORBIDDEN when none holds) and returns the local
// joined user, able to invite, to name in join_authorised_via_users_server (the highest power
// level, as Synapse picks; 400 M_UNABLE_TO_GRANT_JOIN when nobody can invite). nullopt when the
// room's join rule is not restricted in this version (the auth rules decide as usual).
std::optional<std::string> restricted_join_authoriser(storage::Connection& c, const room::RoomVersion& version,
                                                      const std::string& room_id, const std::string& user_id,
                                                      const std::string& server_name);

// Invite permission (v1.18): whether `user_id`'s m.invite_permission_config has
// default_action "block".
bool invites_blocked(storage::Connection& c, const std::string& user_id);

// Rooms a server admin blocked (admin API) refuse every membership but leave and ban, as Synapse:
// 403 M_UNKNOWN.
void check_room_not_blocked(storage::Connection& c, const std::string& room_id, const std::string& membership);

}  // namespace trestle::service::membership_rules
