#pragma once
// Presence in /sync (spec: client-server-api modules/presence.md): the m.presence events of the
// user and of the users who share a joined room with them, and the notifier keys a presence
// change must wake.
#include "service/presence.hpp"
#include "storage/database.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <optional>
#include <string>
#include <vector>

namespace trestle::service {

// The content of an m.presence event for `s` (last_active_ago only once the user was active).
boost::json::object presence_content(const PresenceState& s, int64_t now_ms);

struct PresenceSyncWindow {
  std::optional<uint64_t> since_serial;  // nullopt: initial sync
  int64_t since_pos = 0;                 // the token's stream position (incremental only)
  int64_t upto = 0;                      // this answer's stream position
};

// presence.events for `user_id`. Initial sync: the current state of every known user who shares
// a joined room with them (and their own). Incremental: those whose presence changed after
// since_serial, plus the current state of the members of rooms joined since since_pos and of
// members who joined one of the user's rooms since then. `filter` is the sync filter's
// "presence" EventFilter (types, senders, limit).
boost::json::array presence_for_sync(storage::Connection& c, const PresenceTracker& presence,
                                     const std::string& user_id, const PresenceSyncWindow& window,
                                     const boost::json::object& filter);

// What a change of `user_id`'s presence must wake: the user and each room they are joined to
// (every /sync of a member waits on its rooms).
std::vector<std::string> presence_wake_keys(storage::Connection& c, const std::string& user_id);

}  // namespace trestle::service
