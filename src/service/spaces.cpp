#include "service/spaces.hpp"

#include "core/clock.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/identifiers.hpp"
#include "room/room_version.hpp"
#include "service/rooms/rooms.hpp"
#include "storage/event_store.hpp"
#include "storage/room_store.hpp"
#include "storage/space_store.hpp"

#include <algorithm>

namespace trestle::service {

using boost::json::array;
using boost::json::object;

namespace ev = storage::events;
namespace rooms_db = storage::rooms;

bool valid_space_child_order(const boost::json::value* order) {
  if (!order || !order->is_string()) return false;
  const auto& s = order->get_string();
  if (s.size() > 50) return false;
  return std::all_of(s.begin(), s.end(), [](char ch) { return ch >= 0x20 && ch <= 0x7E; });
}

bool valid_space_child_via(const boost::json::object& content) {
  const auto* via = content.if_contains("via");
  if (!via || !via->is_array() || via->get_array().empty()) return false;
  return std::all_of(via->get_array().begin(), via->get_array().end(),
                     [](const boost::json::value& v) { return v.is_string(); });
}

bool space_child_before(const SpaceChildKey& a, const SpaceChildKey& b) {
  if (a.order.has_value() != b.order.has_value()) return a.order.has_value();
  if (a.order && *a.order != *b.order) return *a.order < *b.order;  // std::string compares bytes: code points in ASCII
  if (a.origin_server_ts != b.origin_server_ts) return a.origin_server_ts < b.origin_server_ts;
  return a.room_id < b.room_id;
}

namespace {

// The content of a current state event, unless there is none or it was redacted.
std::optional<object> state_content(storage::Connection& c, const std::string& room_id, const std::string& type,
                                    const std::string& state_key = "") {
  auto id = ev::current_state_event_id(c, room_id, type, state_key);
  if (!id) return std::nullopt;
  auto e = ev::get_event(c, *id);
  if (!e || e->redacted_by) return std::nullopt;
  const auto* content = e->pdu.if_contains("content");
  if (!content || !content->is_object()) return std::nullopt;
  return content->get_object();
}

std::string string_of(const std::optional<object>& o, const char* key) {
  if (!o) return {};
  const auto* v = o->if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

bool is_restricted_rule(const room::RoomVersion& v, const std::string& rule) {
  return (v.restricted_join_allowed && rule == "restricted") || (v.knock_restricted_allowed && rule == "knock_restricted");
}

// The rooms a restricted join rule names (allow entries of type m.room_membership).
std::vector<std::string> allowed_room_ids(const std::optional<object>& join_rules) {
  std::vector<std::string> out;
  if (!join_rules) return out;
  const auto* allow = join_rules->if_contains("allow");
  if (!allow || !allow->is_array()) return out;
  for (const auto& a : allow->get_array()) {
    if (!a.is_object()) continue;
    const auto* type = a.get_object().if_contains("type");
    const auto* room_id = a.get_object().if_contains("room_id");
    if (type && type->is_string() && type->get_string() == "m.room_membership" && room_id && room_id->is_string()) {
      out.emplace_back(room_id->get_string());
    }
  }
  return out;
}

// Synapse's _is_local_room_accessible: may `user_id` (empty: unauthenticated) see this room?
bool room_accessible(storage::Connection& c, const rooms_db::Room& room, const std::string& user_id) {
  const auto* v = room::find_room_version(room.room_version);
  if (!v) return false;
  auto join_rules = state_content(c, room.room_id, "m.room.join_rules");
  std::string rule = string_of(join_rules, "join_rule");
  if (rule == "public" || (v->knock_allowed && rule == "knock") ||
      (v->knock_restricted_allowed && rule == "knock_restricted")) {
    return true;
  }
  if (string_of(state_content(c, room.room_id, "m.room.history_visibility"), "history_visibility") ==
      "world_readable") {
    return true;
  }
  if (user_id.empty()) return false;
  auto m = ev::get_membership(c, room.room_id, user_id);
  if (m && (m->membership == "join" || m->membership == "invite")) return true;
  if (is_restricted_rule(*v, rule)) {
    for (const auto& allowed : allowed_room_ids(join_rules)) {
      auto am = ev::get_membership(c, allowed, user_id);
      if (am && am->membership == "join") return true;
    }
  }
  return false;
}

// The room's RoomSummary (spec: definitions/room_summary.yaml); keys without a value are left out.
object room_entry(storage::Connection& c, const rooms_db::Room& room, bool unstable) {
  const std::string& id = room.room_id;
  object entry{{"room_id", id}, {"num_joined_members", ev::joined_member_count(c, id)}};
  if (auto n = string_of(state_content(c, id, "m.room.name"), "name"); !n.empty()) entry["name"] = n;
  if (auto t = string_of(state_content(c, id, "m.room.topic"), "topic"); !t.empty()) entry["topic"] = t;
  if (auto a = string_of(state_content(c, id, "m.room.canonical_alias"), "alias"); !a.empty()) {
    entry["canonical_alias"] = a;
  }
  if (auto av = string_of(state_content(c, id, "m.room.avatar"), "url"); !av.empty()) entry["avatar_url"] = av;
  auto join_rules = state_content(c, id, "m.room.join_rules");
  std::string rule = string_of(join_rules, "join_rule");
  if (!rule.empty()) entry["join_rule"] = rule;
  entry["world_readable"] =
      string_of(state_content(c, id, "m.room.history_visibility"), "history_visibility") == "world_readable";
  entry["guest_can_join"] = string_of(state_content(c, id, "m.room.guest_access"), "guest_access") == "can_join";
  if (auto rt = string_of(state_content(c, id, "m.room.create"), "type"); !rt.empty()) entry["room_type"] = rt;
  std::string encryption = string_of(state_content(c, id, "m.room.encryption"), "algorithm");
  if (!encryption.empty()) entry["encryption"] = encryption;
  entry["room_version"] = room.room_version;
  const auto* v = room::find_room_version(room.room_version);
  if (v && is_restricted_rule(*v, rule)) {
    array allowed;
    for (auto& a : allowed_room_ids(join_rules)) allowed.emplace_back(a);
    entry["allowed_room_ids"] = std::move(allowed);
  }
  if (unstable) {  // MSC3266's unstable names: Synapse's, and the MSC's later room_version
    entry["im.nheko.summary.version"] = room.room_version;
    entry["im.nheko.summary.room_version"] = room.room_version;
    if (!encryption.empty()) entry["im.nheko.summary.encryption"] = encryption;
  }
  return entry;
}

// The valid m.space.child events of a space as stripped state with origin_server_ts, in the
// spec's order.
std::vector<object> child_events(storage::Connection& c, const std::string& room_id, bool suggested_only,
                                 int64_t max_children) {
  std::vector<std::pair<SpaceChildKey, object>> kids;
  for (const auto& s : storage::spaces::current_state_of_type(c, room_id, "m.space.child", max_children)) {
    if (!core::is_valid_room_id(s.state_key)) continue;
    auto e = ev::get_event(c, s.event_id);
    if (!e || e->redacted_by) continue;
    const auto* content = e->pdu.if_contains("content");
    if (!content || !content->is_object() || !valid_space_child_via(content->get_object())) continue;
    const auto& co = content->get_object();
    if (suggested_only) {
      const auto* sug = co.if_contains("suggested");
      if (!sug || !sug->is_bool() || !sug->get_bool()) continue;
    }
    SpaceChildKey key{std::nullopt, e->origin_server_ts, s.state_key};
    if (const auto* order = co.if_contains("order"); valid_space_child_order(order)) {
      key.order = std::string(order->get_string());
    }
    kids.emplace_back(std::move(key), object{{"type", "m.space.child"},
                                             {"state_key", s.state_key},
                                             {"content", co},
                                             {"sender", e->sender},
                                             {"origin_server_ts", e->origin_server_ts}});
  }
  std::stable_sort(kids.begin(), kids.end(),
                   [](const auto& a, const auto& b) { return space_child_before(a.first, b.first); });
  std::vector<object> out;
  out.reserve(kids.size());
  for (auto& k : kids) out.push_back(std::move(k.second));
  return out;
}

}  // namespace

SpaceService::SpaceService(storage::Database& db, Rooms& rooms) : db_(db), rooms_(rooms) {}

std::optional<SpaceService::Session> SpaceService::find_session(const std::string& token) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(token);
  if (it == sessions_.end()) return std::nullopt;
  if (it->second.expires_ms <= core::now_ms()) {
    session_entries_ -= it->second.entries();
    sessions_.erase(it);
    return std::nullopt;
  }
  return it->second;
}

std::string SpaceService::store_session(Session s) {
  std::lock_guard lock(mu_);
  int64_t now = core::now_ms();
  std::erase_if(sessions_, [&](const auto& kv) {
    if (kv.second.expires_ms > now) return false;
    session_entries_ -= kv.second.entries();
    return true;
  });
  // The sessions closest to expiring make room, by count and by the room IDs they hold.
  while (!sessions_.empty() &&
         (sessions_.size() >= kMaxSessions || session_entries_ + s.entries() > kMaxSessionEntries)) {
    auto oldest = std::min_element(sessions_.begin(), sessions_.end(), [](const auto& a, const auto& b) {
      return a.second.expires_ms < b.second.expires_ms;
    });
    session_entries_ -= oldest->second.entries();
    sessions_.erase(oldest);
  }
  s.expires_ms = now + kSessionTtlMs;
  std::string token = core::random_string(24);
  session_entries_ += s.entries();
  sessions_.emplace(token, std::move(s));
  return token;
}

object SpaceService::hierarchy(const Requester& r, const std::string& room_id, const HierarchyQuery& q) {
  if (q.limit && *q.limit <= 0) throw MatrixError::invalid_param("limit must be a positive integer");
  if (q.max_depth && *q.max_depth < 0) throw MatrixError::invalid_param("max_depth must be a non-negative integer");
  const int64_t limit = std::min(q.limit.value_or(kMaxLimit), kMaxLimit);
  bool accessible = db_.read([&](storage::Connection& c) {
    auto room = rooms_db::get_room(c, room_id);
    return room && room_accessible(c, *room, r.user_id);
  });
  if (!accessible) throw MatrixError::forbidden("You are not allowed to view this room");

  Session s;
  if (q.from) {
    auto found = find_session(*q.from);
    if (!found) throw MatrixError::invalid_param("Unknown pagination token");
    if (found->user_id != r.user_id || found->room_id != room_id) {
      throw MatrixError::invalid_param("The pagination token was given for another request");
    }
    if (found->suggested_only != q.suggested_only || found->max_depth != q.max_depth) {
      throw MatrixError::invalid_param("suggested_only and max_depth cannot change on paginated requests");
    }
    s = std::move(*found);
  } else {
    s.user_id = r.user_id;
    s.room_id = room_id;
    s.suggested_only = q.suggested_only;
    s.max_depth = q.max_depth;
    s.queue.push_back({room_id, 0});
  }

  array rooms;
  db_.read([&](storage::Connection& c) {
    int64_t work = 0;
    while (!s.queue.empty() && static_cast<int64_t>(rooms.size()) < limit && work < kMaxWorkPerPage &&
           static_cast<int64_t>(s.processed.size()) < kMaxVisitsPerWalk) {
      QueueEntry e = std::move(s.queue.back());
      s.queue.pop_back();
      if (!s.processed.insert(e.room_id).second) continue;  // seen already: a loop, or two parents
      ++work;
      // Rooms this server does not have (no federation yet) and rooms the user may not see are
      // left out, and so are their children.
      auto room = rooms_db::get_room(c, e.room_id);
      if (!room || !room_accessible(c, *room, r.user_id)) continue;
      object entry = room_entry(c, *room, false);
      std::vector<object> kids;
      if (const auto* rt = entry.if_contains("room_type"); rt && rt->is_string() && rt->get_string() == "m.space") {
        kids = child_events(c, e.room_id, s.suggested_only, kMaxChildren);
        work += static_cast<int64_t>(kids.size());
      }
      array children_state;
      for (const auto& k : kids) children_state.push_back(k);
      entry["children_state"] = std::move(children_state);
      rooms.push_back(std::move(entry));
      if (s.max_depth && e.depth >= *s.max_depth) continue;
      // Children go on the stack last first, so the first child is looked at next (depth-first).
      for (auto it = kids.rbegin(); it != kids.rend() && s.queue.size() < kMaxQueue; ++it) {
        std::string child(it->at("state_key").as_string());
        if (!s.processed.contains(child)) s.queue.push_back({std::move(child), e.depth + 1});
      }
    }
  });
  std::erase_if(s.queue, [&](const QueueEntry& e) { return s.processed.contains(e.room_id); });
  object out{{"rooms", std::move(rooms)}};
  if (!s.queue.empty() && static_cast<int64_t>(s.processed.size()) < kMaxVisitsPerWalk) {
    out["next_batch"] = store_session(std::move(s));
  }
  return out;
}

object SpaceService::summary(const Requester& r, const std::string& room_id_or_alias, bool unstable) {
  const std::string room_id = rooms_.directory.resolve_room_id_or_alias(room_id_or_alias);
  return db_.read([&](storage::Connection& c) {
    auto room = rooms_db::get_room(c, room_id);
    if (!room || !room_accessible(c, *room, r.user_id)) {
      throw MatrixError::not_found("Room not found or is not accessible");
    }
    object entry = room_entry(c, *room, unstable);
    if (r.authenticated()) {
      auto m = ev::get_membership(c, room_id, r.user_id);
      entry["membership"] = m ? m->membership : std::string("leave");
    }
    return entry;
  });
}

object SpaceService::mutual_rooms(const Requester& r, const std::optional<std::string>& user_id,
                                  const std::optional<std::string>& from) {
  if (!user_id || user_id->empty()) throw MatrixError::missing_param("Missing user_id query parameter");
  if (!core::parse_user_id(*user_id)) throw MatrixError::invalid_param("The user ID provided was invalid");
  if (*user_id == r.user_id) {
    throw MatrixError::invalid_param("You cannot request a list of shared rooms with yourself");
  }
  // The token is the last room ID of the previous page, base64url-encoded.
  std::string after;
  if (from && !from->empty()) {
    auto decoded = core::base64_decode(*from);
    if (!decoded || !core::is_valid_room_id(*decoded)) {
      throw MatrixError::invalid_param("Unknown or invalid from token");
    }
    after = *decoded;
  }
  return db_.read([&](storage::Connection& c) {
    auto ids = storage::spaces::mutual_joined_rooms(c, r.user_id, *user_id, after, kMutualRoomsBatch + 1);
    bool more = static_cast<int64_t>(ids.size()) > kMutualRoomsBatch;
    if (more) ids.pop_back();
    array joined;
    for (const auto& id : ids) joined.emplace_back(id);
    object out{{"joined", std::move(joined)},
               {"count", storage::spaces::mutual_joined_count(c, r.user_id, *user_id)}};
    if (more) out["next_batch"] = core::base64url_encode(ids.back());
    return out;
  });
}

}  // namespace trestle::service
