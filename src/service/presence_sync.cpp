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

array presence_for_sync(storage::Connection& c, const PresenceTracker& presence, const std::string& user_id,
                        const PresenceSyncWindow& window, const object& filter) {
  const bool initial = !window.since_serial;
  std::set<std::string> contacts{user_id};
  std::set<std::string> newly_seen;  // current state owed whether or not it changed
  for (const auto& m : ev::memberships_of_user(c, user_id)) {
    if (m.membership != "join" || m.stream_ordering > window.upto) continue;
    const bool room_is_new = !initial && m.stream_ordering > window.since_pos;
    for (const auto& mem : ev::members_of_room(c, m.room_id)) {
      if (mem.membership != "join") continue;
      contacts.insert(mem.user_id);
      if (!initial && (room_is_new || mem.stream_ordering > window.since_pos)) newly_seen.insert(mem.user_id);
    }
  }

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
  for (const auto& [user, s] : presence.changed_since(*window.since_serial)) {
    if (contacts.count(user)) add(user, s);
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
