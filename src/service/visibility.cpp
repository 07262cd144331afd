#include "service/visibility.hpp"

namespace trestle::service {

namespace {

std::string string_field(const std::optional<boost::json::object>& content, const char* key, const char* fallback) {
  if (!content) return fallback;
  auto* v = content->if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : fallback;
}

int permissiveness(const std::string& visibility) {
  if (visibility == "world_readable") return 3;
  if (visibility == "shared") return 2;
  if (visibility == "invited") return 1;
  return 0;  // joined
}

// Lower is "more joined" (Synapse's MEMBERSHIP_PRIORITY).
int membership_rank(const std::string& m) {
  if (m == "join") return 0;
  if (m == "invite") return 1;
  if (m == "knock") return 2;
  if (m == "ban") return 4;
  return 3;  // leave, or anything unknown
}

}  // namespace

std::optional<RoomReadAccess> room_read_access(storage::Connection& c, const std::string& user_id,
                                               const std::string& room_id, int64_t now) {
  namespace ev = storage::events;
  auto m = ev::get_membership(c, room_id, user_id);
  if (m && m->membership == "join") return RoomReadAccess{now, false};
  if (m && (m->membership == "leave" || m->membership == "ban")) return RoomReadAccess{m->stream_ordering, false};
  auto id = ev::current_state_event_id(c, room_id, "m.room.history_visibility", "");
  if (!id) return std::nullopt;
  auto e = ev::get_event(c, *id);
  if (!e) return std::nullopt;
  auto* content = e->pdu.if_contains("content");
  auto* hv = content && content->is_object() ? content->as_object().if_contains("history_visibility") : nullptr;
  if (hv && hv->is_string() && hv->as_string() == "world_readable") return RoomReadAccess{now, true};
  return std::nullopt;
}

bool event_visible_to(storage::Connection& c, const std::string& user_id, const storage::events::StoredEvent& e,
                      bool peeking) {
  namespace ev = storage::events;
  std::string visibility = string_field(
      ev::state_content_before(c, e.room_id, "m.room.history_visibility", "", e.stream_ordering), "history_visibility",
      "shared");
  if (e.type == "m.room.history_visibility" && e.state_key && e.state_key->empty()) {
    // A change of visibility is judged by the more permissive of the old and new setting, so
    // everyone who could see the room before sees that it changed.
    auto* content = e.pdu.if_contains("content");
    std::string next = "shared";
    if (content && content->is_object()) {
      auto* hv = content->as_object().if_contains("history_visibility");
      if (hv && hv->is_string()) next = std::string(hv->as_string());
    }
    if (permissiveness(next) > permissiveness(visibility)) visibility = next;
  }
  if (visibility == "world_readable") return true;
  if (visibility == "shared" && !peeking) return true;

  std::string membership;
  if (e.type == "m.room.member" && e.state_key && *e.state_key == user_id) {
    // The user's own membership event is judged by the more joined of the membership it sets and
    // the one it replaces, and leaving (or rejecting an invite) is always seen: else a client
    // never learns that it left a room whose history is restricted (as Synapse does).
    std::string next = "leave";
    if (auto* content = e.pdu.if_contains("content"); content && content->is_object()) {
      auto* m = content->as_object().if_contains("membership");
      if (m && m->is_string()) next = std::string(m->as_string());
    }
    std::string prev = string_field(
        ev::state_content_before(c, e.room_id, "m.room.member", user_id, e.stream_ordering), "membership", "leave");
    if (next == "leave" && (prev == "join" || prev == "invite")) return true;
    membership = membership_rank(prev) < membership_rank(next) ? prev : next;
  } else {
    membership = string_field(ev::state_content_before(c, e.room_id, "m.room.member", user_id, e.stream_ordering),
                              "membership", "leave");
  }
  if (membership == "join") return true;
  return visibility == "invited" && membership == "invite";
}

}  // namespace trestle::service
