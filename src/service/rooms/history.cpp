#include "service/rooms/history.hpp"

#include "core/error.hpp"
#include "service/event_format.hpp"
#include "service/filter.hpp"
#include "service/ignored_users.hpp"
#include "service/relations.hpp"
#include "service/stream_token.hpp"
#include "storage/event_store.hpp"
#include "storage/room_store.hpp"

#include <algorithm>
#include <functional>
#include <set>

namespace trestle::service {

namespace ev = storage::events;
using boost::json::array;
using boost::json::object;

namespace {
std::string membership_of(const object& pdu) {
  auto* content = pdu.if_contains("content");
  if (!content || !content->is_object()) return "";
  auto* m = content->as_object().if_contains("membership");
  return m && m->is_string() ? std::string(m->as_string()) : "";
}

// The state a requester sees, given the position read_access() allows (`now` is the committed
// position): current state while joined; once they left, the state as it was when they left.
std::vector<ev::StateEntry> visible_state(storage::Connection& c, const std::string& room_id, int64_t upto,
                                          int64_t now) {
  return upto < now ? ev::state_at(c, room_id, upto) : ev::current_state(c, room_id);
}

std::optional<std::string> visible_state_event_id(storage::Connection& c, const std::string& room_id, int64_t upto,
                                                  int64_t now, const std::string& type, const std::string& state_key) {
  if (upto >= now) return ev::current_state_event_id(c, room_id, type, state_key);
  for (const auto& s : ev::state_at(c, room_id, upto)) {
    if (s.type == type && s.state_key == state_key) return s.event_id;
  }
  return std::nullopt;
}

}  // namespace

std::optional<object> RoomHistory::current_state_pdu(const std::string& room_id, const std::string& type,
                                                     const std::string& state_key) {
  return db_.read([&](storage::Connection& c) -> std::optional<object> {
    auto id = ev::current_state_event_id(c, room_id, type, state_key);
    if (!id) return std::nullopt;
    auto e = ev::get_event(c, *id);
    if (!e) return std::nullopt;
    return e->pdu;
  });
}
std::optional<object> RoomHistory::current_state_content(const std::string& room_id, const std::string& type,
                                                         const std::string& state_key) {
  return db_.read([&](storage::Connection& c) -> std::optional<object> {
    auto id = ev::current_state_event_id(c, room_id, type, state_key);
    auto e = id ? ev::get_event(c, *id) : std::nullopt;
    auto* content = e ? e->pdu.if_contains("content") : nullptr;
    if (!content || !content->is_object()) return std::nullopt;
    return content->as_object();
  });
}
bool RoomHistory::is_joined(const std::string& room_id, const std::string& user_id) {
  auto m = db_.read([&](storage::Connection& c) { return ev::get_membership(c, room_id, user_id); });
  return m && m->membership == "join";
}

void RoomHistory::require_joined(const Requester& r, const std::string& room_id) {
  if (!is_joined(room_id, r.user_id)) throw MatrixError::forbidden("You are not joined to room " + room_id);
}

RoomReadAccess RoomHistory::read_access(storage::Connection& c, const Requester& r, const std::string& room_id) {
  auto access = room_read_access(c, r.user_id, room_id, db_.committed_position());
  if (!access) throw MatrixError::forbidden("You are not allowed to view room " + room_id);
  return *access;
}

boost::json::array RoomHistory::joined_rooms(const std::string& user_id) {
  array out;
  for (auto& id : db_.read([&](storage::Connection& c) { return ev::rooms_for_user(c, user_id, "join"); })) {
    out.push_back(boost::json::value(id));
  }
  return out;
}

object RoomHistory::joined_members(const Requester& r, const std::string& room_id) {
  return db_.read([&](storage::Connection& c) {
    auto m = ev::get_membership(c, room_id, r.user_id);
    if (!m || m->membership != "join") throw MatrixError::forbidden("You are not joined to room " + room_id);
    object joined;
    for (const auto& mem : ev::members_of_room(c, room_id)) {
      if (mem.membership != "join") continue;
      object info;
      if (auto e = ev::get_event(c, mem.event_id)) {
        const auto& content = e->pdu.at("content").as_object();
        auto* dn = content.if_contains("displayname");
        auto* av = content.if_contains("avatar_url");
        info["display_name"] = dn && dn->is_string() ? *dn : boost::json::value(nullptr);
        info["avatar_url"] = av && av->is_string() ? *av : boost::json::value(nullptr);
      }
      joined[mem.user_id] = std::move(info);
    }
    return object{{"joined", std::move(joined)}};
  });
}

array RoomHistory::members(const Requester& r, const std::string& room_id,
                           const std::optional<std::string>& membership,
                           const std::optional<std::string>& not_membership) {
  return db_.read([&](storage::Connection& c) {
    int64_t upto = read_access(c, r, room_id).upto;
    array out;
    ClientEventOptions opts{r.user_id, r.device_id, true};
    for (const auto& s : visible_state(c, room_id, upto, db_.committed_position())) {
      if (s.type != "m.room.member") continue;
      auto e = ev::get_event(c, s.event_id);
      if (!e) continue;
      std::string m = membership_of(e->pdu);
      if (membership && m != *membership) continue;
      if (not_membership && m == *not_membership) continue;
      out.push_back(client_event(*e, c, opts));
    }
    return out;
  });
}

array RoomHistory::state(const Requester& r, const std::string& room_id) {
  return db_.read([&](storage::Connection& c) {
    int64_t upto = read_access(c, r, room_id).upto;
    array out;
    ClientEventOptions opts{r.user_id, r.device_id, true};
    for (const auto& s : visible_state(c, room_id, upto, db_.committed_position())) {
      if (auto e = ev::get_event(c, s.event_id)) out.push_back(client_event(*e, c, opts));
    }
    return out;
  });
}

object RoomHistory::state_event(const Requester& r, const std::string& room_id, const std::string& type,
                                const std::string& state_key, bool full_event) {
  return db_.read([&](storage::Connection& c) {
    int64_t upto = read_access(c, r, room_id).upto;
    auto id = visible_state_event_id(c, room_id, upto, db_.committed_position(), type, state_key);
    if (!id) throw MatrixError::not_found("Event not found");
    auto e = ev::get_event(c, *id);
    if (!e) throw MatrixError::not_found("Event not found");
    auto ce = client_event(*e, c, {r.user_id, r.device_id, true});
    if (full_event) return ce;
    return ce["content"].as_object();
  });
}

object RoomHistory::event(const Requester& r, const std::string& room_id, const std::string& event_id) {
  return db_.read([&](storage::Connection& c) {
    // The spec: 404 when the event is unknown or the requester may not see it (the room's too).
    auto access = room_read_access(c, r.user_id, room_id, db_.committed_position());
    if (!access) throw MatrixError::not_found("Event not found");
    auto e = ev::get_event(c, event_id);
    if (!e || e->room_id != room_id || e->stream_ordering > access->upto ||
        !event_visible_to(c, r.user_id, *e, access->peeking)) {
      throw MatrixError::not_found("Event not found");
    }
    return client_event(*e, c, {r.user_id, r.device_id, true});
  });
}

namespace {
// Who reads a page of history: what they may see (up to `upto`, each event passing `shown`) and
// how events are formatted for them.
struct PageReader {
  int64_t upto = 0;
  std::function<bool(const ev::StoredEvent&)> shown;
  ClientEventOptions opts;
};

// One /messages page (client and admin API): events from `from` in direction `dir`, up to
// `limit` shown ones (filtered-out events do not count, so it reads in batches until full).
object messages_page(storage::Connection& c, const std::string& room_id, const std::optional<std::string>& from,
                     const std::optional<std::string>& to, const std::string& dir, int64_t limit, int64_t now,
                     const object& filter, const PageReader& reader) {
  int64_t start = from ? parse_stream_token(*from) : (dir == "b" ? now : 0);
  std::optional<int64_t> stop;
  if (to) stop = parse_stream_token(*to);
  array chunk;
  std::set<std::string> senders;
  int64_t cursor = start;
  bool exhausted = false;
  while (static_cast<int64_t>(chunk.size()) < limit && !exhausted) {
    std::vector<ev::StoredEvent> batch;
    if (dir == "b") {
      batch = ev::room_events_backwards(c, room_id, stop.value_or(0), std::min(cursor, reader.upto), limit);
    } else {
      batch = ev::room_events_forwards(c, room_id, cursor, std::min(stop.value_or(reader.upto), reader.upto), limit);
    }
    if (static_cast<int64_t>(batch.size()) < limit) exhausted = true;
    for (const auto& e : batch) {
      if (static_cast<int64_t>(chunk.size()) >= limit) {
        cursor = dir == "b" ? e.stream_ordering : e.stream_ordering - 1;  // the next page starts here
        exhausted = false;
        break;
      }
      cursor = dir == "b" ? e.stream_ordering - 1 : e.stream_ordering;
      if (!event_matches(filter, e) || !reader.shown(e)) continue;
      senders.insert(e.sender);
      chunk.push_back(client_event(e, c, reader.opts));
    }
  }
  object out{{"start", from ? *from : "s" + std::to_string(start)}, {"chunk", std::move(chunk)}};
  // `end` whenever there may be more, and whenever events came back (as Synapse: the next page
  // from it is then empty, without `end`), so a forward reader can resume from it.
  if (!exhausted || !out["chunk"].as_array().empty()) out["end"] = "s" + std::to_string(cursor);
  if (filter_flag(filter, "lazy_load_members")) {
    array state;
    for (const auto& sender : senders) {
      if (auto id = ev::current_state_event_id(c, room_id, "m.room.member", sender)) {
        if (auto e = ev::get_event(c, *id)) state.push_back(client_event(*e, c, reader.opts));
      }
    }
    out["state"] = std::move(state);
  }
  return out;
}

void check_messages_params(const std::string& dir) {
  if (dir != "b" && dir != "f") throw MatrixError::invalid_param("dir must be 'b' or 'f'");
}
// An empty token is no token (clients send `from=` for "from the end").
std::optional<std::string> given(const std::optional<std::string>& t) { return t && !t->empty() ? t : std::nullopt; }
}  // namespace

object RoomHistory::messages(const Requester& r, const std::string& room_id,
                             const std::optional<std::string>& from, const std::optional<std::string>& to,
                             const std::string& dir, int64_t limit, const object& filter) {
  check_messages_params(dir);
  limit = std::clamp<int64_t>(limit, 1, 1000);
  return db_.read([&](storage::Connection& c) {
    auto access = read_access(c, r, room_id);
    const auto ignored = ignored_users(c, r.user_id);
    PageReader reader{access.upto,
                      [&](const ev::StoredEvent& e) {
                        return !hidden_by_ignore(ignored, e) && related_by_matches(c, filter, e) &&
                               event_visible_to(c, r.user_id, e, access.peeking);
                      },
                      {r.user_id, r.device_id, true}};
    return messages_page(c, room_id, given(from), given(to), dir, limit, db_.committed_position(), filter, reader);
  });
}

object RoomHistory::admin_messages(const std::string& room_id, const std::optional<std::string>& from,
                                   const std::optional<std::string>& to, const std::string& dir, int64_t limit,
                                   const object& filter) {
  check_messages_params(dir);
  if (limit < 0) throw MatrixError::invalid_param("limit must be a positive integer");
  limit = std::clamp<int64_t>(limit, 1, 1000);
  return db_.read([&](storage::Connection& c) {
    if (!storage::rooms::get_room(c, room_id)) throw MatrixError::not_found("Room not found");
    const int64_t now = db_.committed_position();
    PageReader reader{now, [](const ev::StoredEvent&) { return true; }, {}};
    return messages_page(c, room_id, given(from), given(to), dir, limit, now, filter, reader);
  });
}

object RoomHistory::context(const Requester& r, const std::string& room_id, const std::string& event_id,
                            int64_t limit, const object& filter) {
  limit = std::clamp<int64_t>(limit, 0, 100);
  return db_.read([&](storage::Connection& c) {
    auto access = read_access(c, r, room_id);
    int64_t upto = access.upto;
    auto target = ev::get_event(c, event_id);
    if (!target || target->room_id != room_id || target->stream_ordering > upto ||
        !event_visible_to(c, r.user_id, *target, access.peeking)) {
      throw MatrixError::not_found("Event not found");
    }
    ClientEventOptions opts{r.user_id, r.device_id, true};
    const auto ignored = ignored_users(c, r.user_id);
    auto shown = [&](const ev::StoredEvent& e) {
      return event_matches(filter, e) && !hidden_by_ignore(ignored, e) && related_by_matches(c, filter, e) &&
             event_visible_to(c, r.user_id, e, access.peeking);
    };
    int64_t before_n = limit / 2, after_n = limit - before_n;
    array before, after;
    std::set<std::string> senders{target->sender};
    int64_t start = target->stream_ordering - 1, end = target->stream_ordering;
    for (const auto& e : ev::room_events_backwards(c, room_id, 0, target->stream_ordering - 1, before_n)) {
      start = e.stream_ordering - 1;
      if (!shown(e)) continue;
      senders.insert(e.sender);
      before.push_back(client_event(e, c, opts));
    }
    for (const auto& e : ev::room_events_forwards(c, room_id, target->stream_ordering, upto, after_n)) {
      end = e.stream_ordering;
      if (!shown(e)) continue;
      senders.insert(e.sender);
      after.push_back(client_event(e, c, opts));
    }
    // The spec: the state at the last event returned, filtered like the events; with
    // lazy_load_members only the members who sent the events returned.
    const bool lazy_members = filter_flag(filter, "lazy_load_members");
    array state;
    for (const auto& s : ev::state_at(c, room_id, end)) {
      if (lazy_members && s.type == "m.room.member" && !senders.count(s.state_key)) continue;
      auto e = ev::get_event(c, s.event_id);
      if (e && event_matches(filter, *e)) state.push_back(client_event(*e, c, opts));
    }
    return object{{"event", client_event(*target, c, opts)},
                  {"events_before", std::move(before)},
                  {"events_after", std::move(after)},
                  {"start", "s" + std::to_string(start)},
                  {"end", "s" + std::to_string(end)},
                  {"state", std::move(state)}};
  });
}

}  // namespace trestle::service
