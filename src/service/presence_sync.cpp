#include "service/presence_sync.hpp"

#include "core/clock.hpp"
#include "service/filter.hpp"
#include "storage/event_store.hpp"

#include <set>

namespace trestle::service {

namespace ev = storage::events;
using boost::json::array;
using boost::json::object;

object presence_content(const PresenceState& s, int64_t now_ms) {
  object content{{"presence", s.presence}, {"currently_active", s.presence == "online"}};
  if (s.last_active_ts > 0) content["last_active_ago"] = std::max<int64_t>(0, now_ms - s.last_active_ts);
  if (s.status_msg) content["status_msg"] = *s.status_msg;
  return content;
}

namespace {

// An incremental sync's contacts work stays proportional to what changed, not to the size of the
// user's rooms (every member of a room wakes with each message, so a scan of the members per
// sync made a busy room cost members^2 per message): the members that joined since the token
// are found among the room's events since then, and a contact whose presence changed is
// checked against the user's rooms one by one. Past these bounds, the rooms' members are read.
constexpr int64_t kMaxEventsScanned = 100;  // per room, for new members
constexpr size_t kMaxMembershipChecks = 1000;  // changed users x joined rooms

}  // namespace

array presence_for_sync(storage::Connection& c, const PresenceTracker& presence, const std::string& user_id,
                        const PresenceSyncWindow& window, const object& filter) {
  const bool initial = !window.since_serial;
  std::vector<std::pair<std::string, PresenceState>> changed;
  if (!initial) changed = presence.changed_since(*window.since_serial);
  std::vector<std::string> rooms;  // joined, as of `upto`
  std::set<std::string> newly_seen;  // current state owed whether or not it changed
  std::set<std::string> scan_members;  // rooms whose members are read (initial, busy)
  std::set<std::string> new_rooms;     // joined since the token: every member is newly seen
  for (const auto& m : ev::memberships_of_user(c, user_id)) {
    if (m.membership != "join" || m.stream_ordering > window.upto) continue;
    rooms.push_back(m.room_id);
    if (initial || m.stream_ordering > window.since_pos) {
      (initial ? scan_members : new_rooms).insert(m.room_id);
      continue;
    }
    auto events = ev::room_events_forwards(c, m.room_id, window.since_pos, window.upto, kMaxEventsScanned);
    if (static_cast<int64_t>(events.size()) >= kMaxEventsScanned) {
      scan_members.insert(m.room_id);
      continue;
    }
    std::set<std::string> candidates;
    for (const auto& e : events) {
      if (e.type == "m.room.member" && e.state_key) candidates.insert(*e.state_key);
    }
    for (const auto& user : candidates) {
      auto mem = ev::get_membership(c, m.room_id, user);
      if (mem && mem->membership == "join" && mem->stream_ordering > window.since_pos) newly_seen.insert(user);
    }
  }
  const bool scan_all = initial || changed.size() * rooms.size() > kMaxMembershipChecks;
  std::set<std::string> contacts{user_id};
  for (const auto& room_id : rooms) {
    const bool room_is_new = new_rooms.count(room_id) > 0;
    if (!scan_all && !room_is_new && !scan_members.count(room_id)) continue;
    for (const auto& mem : ev::members_of_room(c, room_id)) {
      if (mem.membership != "join") continue;
      contacts.insert(mem.user_id);
      if (!initial && (room_is_new || mem.stream_ordering > window.since_pos)) newly_seen.insert(mem.user_id);
    }
  }
  // A changed user shares a room with `user_id` (when the members were not all read above).
  auto is_contact = [&](const std::string& user) {
    if (contacts.count(user)) return true;
    if (scan_all) return false;
    for (const auto& room_id : rooms) {
      auto mem = ev::get_membership(c, room_id, user);
      if (mem && mem->membership == "join") return true;
    }
    return false;
  };

  const int64_t now = core::now_ms();
  const int64_t limit = filter_limit(filter, 1000);
  array out;
  std::set<std::string> sent;
  auto add = [&](const std::string& user, const PresenceState& s) {
    if (static_cast<int64_t>(out.size()) >= limit || !sent.insert(user).second) return;
    if (!event_matches(filter, "m.presence", user, "", {})) return;
    out.push_back(object{{"type", "m.presence"}, {"sender", user}, {"content", presence_content(s, now)}});
  };
  if (initial) {
    for (const auto& user : contacts) {
      if (auto s = presence.known(user)) add(user, *s);
    }
    return out;
  }
  for (const auto& [user, s] : changed) {
    if (is_contact(user)) add(user, s);
  }
  // A newly joined room's members, and new members of the user's rooms: their presence even when
  // the server never saw them (offline), as Synapse includes offline states here.
  for (const auto& user : newly_seen) add(user, presence.get(user));
  return out;
}

std::vector<std::string> presence_wake_keys(storage::Connection& c, const std::string& user_id) {
  std::vector<std::string> keys{user_id};
  for (const auto& m : ev::memberships_of_user(c, user_id)) {
    if (m.membership == "join") keys.push_back(m.room_id);
  }
  return keys;
}

}  // namespace trestle::service
