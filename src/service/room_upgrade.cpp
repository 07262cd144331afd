#include "service/room_upgrade.hpp"

#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/identifiers.hpp"
#include "room/auth_rules.hpp"
#include "room/room_version.hpp"
#include "service/rooms/rooms.hpp"
#include "service/user_data.hpp"
#include "storage/event_store.hpp"
#include "storage/room_store.hpp"

#include <spdlog/spdlog.h>
#include <algorithm>
#include <map>
#include <optional>
#include <set>

namespace trestle::service {

namespace ev = storage::events;
namespace rooms_db = storage::rooms;
using boost::json::array;
using boost::json::object;
using boost::json::value;

namespace {

// The state that moves to the new room (Synapse's list, with pinned events); a space's children
// move too. Order matters only for readability of the new room's timeline.
constexpr const char* kCopiedTypes[] = {
    "m.room.join_rules",  "m.room.name",       "m.room.topic",          "m.room.history_visibility",
    "m.room.guest_access", "m.room.avatar",    "m.room.encryption",     "m.room.server_acl",
    "m.room.related_groups", "m.room.pinned_events"};

// A power level as the auth rules read it (old room versions allowed strings).
int64_t level_of(const value* v, int64_t fallback) {
  if (!v) return fallback;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<int64_t>(std::min<uint64_t>(v->as_uint64(), INT64_MAX));
  if (v->is_string()) {
    try {
      return std::stoll(std::string(v->as_string()));
    } catch (const std::exception&) {
    }
  }
  return fallback;
}

int64_t int_or(const object& o, const char* key, int64_t fallback) { return level_of(o.if_contains(key), fallback); }

// What upgrading needs to know of the old room, read in one transaction.
struct OldRoom {
  bool is_public = false;
  object create_content;
  object power_levels;
  std::optional<object> canonical_alias;
  std::vector<std::pair<std::string, object>> copied;  // (type, content) with state_key ""
  std::vector<std::pair<std::string, object>> space_children;  // (state_key, content)
  std::vector<std::string> banned;
  std::vector<std::string> local_members;  // joined local users
  bool requester_joined = false;
  bool privileged_creators = false;  // the old room's version gives its creators infinite power
  std::vector<std::string> creators;  // the old room's create sender and additional_creators
  bool may_tombstone = false;         // the requester's power level allows m.room.tombstone
};

}  // namespace

std::string RoomUpgradeService::upgrade(const Requester& r, const std::string& room_id, const std::string& new_version,
                                       const std::vector<std::string>& additional_creators) {
  const auto* version = room::find_room_version(new_version);
  auto supported = room::supported_room_versions();
  if (!version || std::find(supported.begin(), supported.end(), new_version) == supported.end()) {
    throw MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", "Room version '" + new_version + "' is not supported");
  }
  std::lock_guard lock(mu_);
  auto old = db_.read([&](storage::Connection& c) {
    auto row = rooms_db::get_room(c, room_id);
    if (!row) throw MatrixError::not_found("Unknown room " + room_id);
    OldRoom o;
    o.is_public = row->is_public;
    const auto* old_version = room::find_room_version(row->room_version);
    o.privileged_creators = old_version && old_version->privileged_creators;
    room::StateMap auth_state;
    std::map<std::string, object> by_type;
    for (const auto& s : ev::current_state(c, room_id)) {
      auto e = ev::get_event(c, s.event_id);
      if (!e) continue;
      if (s.type == "m.room.create" || s.type == "m.room.power_levels") auth_state[{s.type, s.state_key}] = e->pdu;
      if (s.type == "m.room.create") {
        o.creators.push_back(e->sender);
        auto* ac = e->pdu.if_contains("content") && e->pdu.at("content").is_object()
                       ? e->pdu.at("content").as_object().if_contains("additional_creators")
                       : nullptr;
        if (ac && ac->is_array()) {
          for (const auto& u : ac->as_array()) {
            if (u.is_string()) o.creators.emplace_back(u.as_string());
          }
        }
      }
      auto* content = e->pdu.if_contains("content");
      if (!content || !content->is_object()) continue;
      const object& co = content->as_object();
      if (s.type == "m.room.member") {
        std::string m = co.contains("membership") && co.at("membership").is_string()
                             ? std::string(co.at("membership").as_string())
                             : "";
        if (m == "ban") o.banned.push_back(s.state_key);
        auto uid = core::parse_user_id(s.state_key);
        if (m == "join" && uid && uid->server_name == cfg_.server_name) o.local_members.push_back(s.state_key);
        if (m == "join" && s.state_key == r.user_id) o.requester_joined = true;
      } else if (s.type == "m.space.child") {
        o.space_children.emplace_back(s.state_key, co);
      } else if (s.state_key.empty()) {
        by_type[s.type] = co;
      }
    }
    o.create_content = by_type["m.room.create"];
    o.power_levels = by_type["m.room.power_levels"];
    if (auto it = by_type.find("m.room.canonical_alias"); it != by_type.end() && !it->second.empty()) {
      o.canonical_alias = it->second;
    }
    for (const char* t : kCopiedTypes) {
      if (auto it = by_type.find(t); it != by_type.end()) o.copied.emplace_back(t, it->second);
    }
    if (old_version) {
      o.may_tombstone = room::user_power_level(auth_state, r.user_id, *old_version) >=
                        room::required_power_level(auth_state, "m.room.tombstone", true);
    }
    return o;
  });
  if (!old.requester_joined) throw MatrixError::forbidden("You are not joined to room " + room_id);

  // 1. The tombstone first: its auth check is the permission check (403), and its ID is what
  // the new room's predecessor names. The new room's ID is chosen now so the tombstone can point
  // to it, except in versions whose room ID is the create event's (v12): that room is created
  // first and the tombstone follows, once the permission to send it has been checked.
  const bool id_from_create = version->room_id_is_create_event_id;
  if (id_from_create && !old.may_tombstone) throw MatrixError::forbidden("You cannot upgrade this room");
  // (One this process writes, with several event writers: creation.new_room_id.)
  std::string new_room_id = id_from_create ? std::string() : rooms_.creation.new_room_id();
  auto send_tombstone = [&] {
    return rooms_.writer.send(NewEvent{room_id, r.user_id, "m.room.tombstone", "",
                                      object{{"body", "This room has been replaced"}, {"replacement_room", new_room_id}},
                                      std::nullopt, std::nullopt, std::nullopt, std::nullopt});
  };
  std::optional<storage::events::StoredEvent> tombstone;
  if (!id_from_create) tombstone = send_tombstone();

  // 2. The new room. The upgrading user may need more power than they have to copy every state
  // event: raised for the creation, restored afterwards (as Synapse does).
  object pl = old.power_levels;
  int64_t needed = std::max(int_or(pl, "state_default", 50), int_or(pl, "ban", 50));
  if (auto* evs = pl.if_contains("events"); evs && evs->is_object()) {
    for (const auto& [k, v] : evs->as_object()) needed = std::max(needed, level_of(&v, 0));
  }
  object users = pl.contains("users") && pl.at("users").is_object() ? pl.at("users").as_object() : object{};
  auto* own = users.if_contains(r.user_id);
  int64_t current = own ? level_of(own, 0) : int_or(pl, "users_default", 0);
  // The new room's creators (v12) have infinite power and may not be listed in its power levels;
  // creators of a v12 room upgraded to an older version keep the top level they had.
  std::vector<std::string> new_creators;
  if (version->privileged_creators) {
    new_creators.push_back(r.user_id);
    for (const auto& u : additional_creators) {
      if (std::find(new_creators.begin(), new_creators.end(), u) == new_creators.end()) new_creators.push_back(u);
    }
  }
  if (pl.contains("users") && (!new_creators.empty() || old.privileged_creators)) {
    if (old.privileged_creators && !version->privileged_creators) {
      for (const auto& u : old.creators) users[u] = std::max<int64_t>(100, needed);
    }
    for (const auto& u : new_creators) users.erase(u);
    pl["users"] = users;
  }
  const bool raised = !version->privileged_creators && !pl.empty() && current < needed &&
                      !(old.privileged_creators && users.contains(r.user_id));
  object creation_pl = pl;
  if (raised) {
    users[r.user_id] = needed;
    creation_pl["users"] = users;
  }

  object predecessor{{"room_id", room_id}};
  if (tombstone) predecessor["event_id"] = tombstone->event_id;  // optional from v12 on
  object creation_content{{"predecessor", predecessor}};
  if (new_creators.size() > 1) {
    array list;
    for (size_t i = 1; i < new_creators.size(); ++i) list.emplace_back(new_creators[i]);
    creation_content["additional_creators"] = std::move(list);
  }
  if (auto* f = old.create_content.if_contains("m.federate")) creation_content["m.federate"] = *f;
  if (auto* t = old.create_content.if_contains("type")) creation_content["type"] = *t;
  array initial_state;
  for (const auto& [type, content] : old.copied) {
    initial_state.push_back(object{{"type", type}, {"state_key", ""}, {"content", content}});
  }
  for (const auto& [key, content] : old.space_children) {
    initial_state.push_back(object{{"type", "m.space.child"}, {"state_key", key}, {"content", content}});
  }
  object body{{"room_version", new_version},
              {"preset", "private_chat"},
              {"creation_content", creation_content},
              {"initial_state", initial_state}};
  if (!creation_pl.empty()) body["power_level_content_override"] = creation_pl;
  if (id_from_create) {
    new_room_id = rooms_.creation.create_room(r, body, std::nullopt);
    tombstone = send_tombstone();
  } else {
    rooms_.creation.create_room(r, body, new_room_id);
  }

  auto send_state = [&](const std::string& room, const std::string& type, const std::string& key, object content) {
    try {
      rooms_.writer.send(NewEvent{room, r.user_id, type, key, std::move(content), std::nullopt, std::nullopt,
                                 std::nullopt, std::nullopt});
    } catch (const MatrixError& e) {
      spdlog::warn("room upgrade {} -> {}: could not send {} ({}): {}", room_id, new_room_id, type, key, e.what());
    }
  };
  for (const auto& user : old.banned) send_state(new_room_id, "m.room.member", user, object{{"membership", "ban"}});
  if (raised) send_state(new_room_id, "m.room.power_levels", "", pl);

  // 3. The old room: nobody but moderators may speak or invite any more.
  if (!old.power_levels.empty()) {
    object restricted = old.power_levels;
    int64_t level = std::max<int64_t>(50, int_or(restricted, "users_default", 0) + 1);
    bool changed = false;
    for (const char* key : {"events_default", "invite"}) {
      if (int_or(restricted, key, 0) < level) {
        restricted[key] = level;
        changed = true;
      }
    }
    if (changed) send_state(room_id, "m.room.power_levels", "", restricted);
  }

  // 4. Aliases and the directory listing move; the canonical alias follows them.
  if (old.canonical_alias) send_state(room_id, "m.room.canonical_alias", "", object{});
  db_.write([&](storage::Connection& c) {
    rooms_db::move_aliases(c, room_id, new_room_id);
    if (old.is_public) {
      rooms_db::set_public(c, room_id, false);
      rooms_db::set_public(c, new_room_id, true);
    }
  });
  if (old.canonical_alias) send_state(new_room_id, "m.room.canonical_alias", "", *old.canonical_alias);

  // 5. Each local member's tags, m.direct entry and push rules for the room follow it.
  for (const auto& user : old.local_members) {
    try {
      copy_user_state(user, room_id, new_room_id);
    } catch (const std::exception& e) {
      spdlog::warn("room upgrade {} -> {}: could not copy {}'s settings: {}", room_id, new_room_id, user, e.what());
    }
  }
  return new_room_id;
}

void RoomUpgradeService::copy_user_state(const std::string& user_id, const std::string& old_room,
                                         const std::string& new_room) {
  // Tags.
  try {
    auto tags = user_data_.get_account_data(user_id, old_room, "m.tag");
    user_data_.put_account_data(user_id, new_room, "m.tag", tags);
  } catch (const MatrixError&) {
    // none
  }
  // m.direct: the new room joins every list the old one is in.
  try {
    auto direct = user_data_.get_account_data(user_id, "", "m.direct");
    bool changed = false;
    for (auto& [who, rooms] : direct) {
      if (!rooms.is_array()) continue;
      auto& list = rooms.as_array();
      bool has_old = std::find(list.begin(), list.end(), value(old_room)) != list.end();
      bool has_new = std::find(list.begin(), list.end(), value(new_room)) != list.end();
      if (has_old && !has_new) {
        list.push_back(value(new_room));
        changed = true;
      }
    }
    if (changed) user_data_.put_account_data(user_id, "", "m.direct", direct);
  } catch (const MatrixError&) {
    // none
  }
  // Push rules: the room rule named after the old room, and override/underride rules whose
  // conditions match the old room's ID, are copied with the new room's ID.
  object global = user_data_.push_rules(user_id);
  bool changed = false;
  for (const char* kind : {"override", "underride", "room"}) {
    auto* rules = global.if_contains(kind);
    if (!rules || !rules->is_array()) continue;
    array copies;
    std::set<std::string> existing;
    for (const auto& rule : rules->as_array()) {
      if (rule.is_object() && rule.as_object().contains("rule_id") && rule.at("rule_id").is_string()) {
        existing.insert(std::string(rule.at("rule_id").as_string()));
      }
    }
    for (const auto& rule : rules->as_array()) {
      if (!rule.is_object()) continue;
      const auto& ro = rule.as_object();
      auto* id = ro.if_contains("rule_id");
      if (!id || !id->is_string() || (ro.contains("default") && ro.at("default") == value(true))) continue;
      std::string rule_id(id->as_string());
      bool matches = false;
      object copy = ro;
      if (std::string(kind) == "room") {
        matches = rule_id == old_room;
      } else if (auto* conds = copy.if_contains("conditions"); conds && conds->is_array()) {
        for (auto& cond : conds->as_array()) {
          if (!cond.is_object()) continue;
          auto& co = cond.as_object();
          if (co.contains("key") && co.at("key") == value("room_id") && co.contains("pattern") &&
              co.at("pattern") == value(old_room)) {
            co["pattern"] = new_room;
            matches = true;
          }
        }
      }
      if (!matches) continue;
      std::string new_id = rule_id;
      if (auto pos = new_id.find(old_room); pos != std::string::npos) new_id.replace(pos, old_room.size(), new_room);
      if (new_id == rule_id) new_id += "-" + new_room;
      if (existing.count(new_id)) continue;
      copy["rule_id"] = new_id;
      copies.push_back(std::move(copy));
    }
    for (auto& copy : copies) rules->as_array().push_back(std::move(copy));
    changed = changed || !copies.empty();
  }
  if (changed) user_data_.save_push_rules(user_id, global);
}

}  // namespace trestle::service
