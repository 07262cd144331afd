#include "service/legacy_stream.hpp"

#include "core/canonical_json.hpp"
#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/json_depth.hpp"
#include "service/event_format.hpp"
#include "service/presence.hpp"
#include "service/sync.hpp"
#include "service/user_data.hpp"
#include "service/visibility.hpp"
#include "storage/event_store.hpp"
#include "storage/peek_store.hpp"
#include "storage/room_store.hpp"
#include "storage/user_data_store.hpp"

#include <algorithm>
#include <set>

namespace trestle::service {

namespace ev = storage::events;
namespace ud = storage::user_data;
using boost::json::array;
using boost::json::object;

namespace {

constexpr int64_t kMaxLimit = 1000;

std::string history_visibility_before(storage::Connection& c, const std::string& room_id, int64_t before) {
  auto content = ev::state_content_before(c, room_id, "m.room.history_visibility", "", before);
  if (!content) return "shared";
  auto* v = content->if_contains("history_visibility");
  return v && v->is_string() ? std::string(v->as_string()) : "shared";
}

bool world_readable_now(storage::Connection& c, const std::string& room_id) {
  return history_visibility_before(c, room_id, INT64_MAX) == "world_readable";
}

// What a non-member peeking into a world_readable room sees: events sent while the room was
// world_readable, and its state events (the room's state is public once it is world_readable,
// so its creation shows even when the room became world_readable later).
bool visible_to_peeker(storage::Connection& c, const ev::StoredEvent& e) {
  if (e.state_key) return true;
  return history_visibility_before(c, e.room_id, e.stream_ordering) == "world_readable";
}

// What a non-member reading a world_readable room (room initialSync) sees: only what was sent
// while the room was world_readable; a history_visibility event counts with the more open of its
// old and new setting, so the event that made the room world_readable is seen.
bool visible_to_non_member(storage::Connection& c, const ev::StoredEvent& e) {
  if (history_visibility_before(c, e.room_id, e.stream_ordering) == "world_readable") return true;
  if (e.type != "m.room.history_visibility" || !e.state_key || !e.state_key->empty()) return false;
  const auto* content = e.pdu.if_contains("content");
  const auto* hv = content && content->is_object() ? content->as_object().if_contains("history_visibility") : nullptr;
  return hv && hv->is_string() && hv->as_string() == "world_readable";
}

// One m.receipt event for the room's receipts in (since, upto], or none.
std::optional<object> receipt_event(storage::Connection& c, const std::string& room_id, const std::string& viewer,
                                    int64_t since, int64_t upto, bool with_room_id = true) {
  object content;
  for (const auto& rc : ud::receipts_since(c, room_id, since, upto)) {
    if (rc.receipt_type == "m.read.private" && rc.user_id != viewer) continue;
    object data{{"ts", rc.ts}};
    if (!rc.thread_id.empty()) data["thread_id"] = rc.thread_id;
    auto& by_event = content[rc.event_id];
    if (!by_event.is_object()) by_event = object{};
    auto& by_type = by_event.as_object()[rc.receipt_type];
    if (!by_type.is_object()) by_type = object{};
    by_type.as_object()[rc.user_id] = std::move(data);
  }
  if (content.empty()) return std::nullopt;
  object out{{"type", "m.receipt"}, {"content", std::move(content)}};
  if (with_room_id) out["room_id"] = room_id;
  return out;
}

// The room's account data of the user as it stands at `upto`, m.tag first (clients and SyTest
// look for the tags there).
array room_account_data(storage::Connection& c, const std::string& user_id, const std::string& room_id,
                        int64_t upto) {
  array tags, others;
  for (const auto& ad : ud::account_data_since(c, user_id, 0, upto)) {
    if (ad.room_id != room_id) continue;
    object e{{"type", ad.type}, {"content", core::parse_stored_json(ad.content)}};
    (ad.type == "m.tag" ? tags : others).push_back(std::move(e));
  }
  for (auto& e : others) tags.push_back(std::move(e));
  return tags;
}

// The newest `limit` events of the room at or before `upto` that `visible` lets through, oldest first.
template <typename Visible>
std::vector<ev::StoredEvent> recent_events(storage::Connection& c, const std::string& room_id, int64_t upto,
                                           int64_t limit, Visible visible) {
  std::vector<ev::StoredEvent> out;
  int64_t cursor = upto;
  while (static_cast<int64_t>(out.size()) < limit) {
    auto batch = ev::room_events_backwards(c, room_id, 0, cursor, limit);
    for (auto& e : batch) {
      cursor = e.stream_ordering - 1;
      if (static_cast<int64_t>(out.size()) < limit && visible(e)) out.push_back(std::move(e));
    }
    if (static_cast<int64_t>(batch.size()) < limit) break;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

// The r0 ("v1") client event format these endpoints answer with, as Synapse's
// format_event_for_client_v1: `user_id` beside `sender`, and some `unsigned` keys copied up.
object v1_event(const ev::StoredEvent& e, storage::Connection& c, const ClientEventOptions& opts) {
  object out = client_event(e, c, opts);
  out["user_id"] = e.sender;
  // A copy: inserting into `out` may move its storage, and with it a pointer to `unsigned`.
  if (auto* u = out.if_contains("unsigned"); u && u->is_object()) {
    const object unsigned_copy = u->as_object();
    for (const char* key : {"age", "redacted_because", "replaces_state", "prev_content"}) {
      if (auto* v = unsigned_copy.if_contains(key)) out[key] = *v;
    }
  }
  return out;
}

}  // namespace

LegacyService::LegacyService(storage::Database& db, Notifier& notifier, UserDataService& user_data,
                             PresenceTracker& presence)
    : db_(db), notifier_(notifier), user_data_(user_data), presence_(presence) {}

object LegacyService::presence_event(const std::string& user_id) const {
  auto p = presence_.get(user_id);
  object content{{"user_id", user_id}, {"presence", p.presence}, {"currently_active", p.presence == "online"}};
  if (p.last_active_ts > 0) content["last_active_ago"] = std::max<int64_t>(0, core::now_ms() - p.last_active_ts);
  content["status_msg"] = p.status_msg ? boost::json::value(*p.status_msg) : boost::json::value(nullptr);
  return object{{"type", "m.presence"}, {"content", std::move(content)}};
}

std::string LegacyService::token_str(int64_t position, uint64_t typing, uint64_t presence) const {
  return SyncToken{position, typing, position, std::nullopt}.str() + "_p" + std::to_string(presence);
}

uint64_t LegacyService::presence_serial() const {
  std::lock_guard lock(presence_mu_);
  return presence_serial_;
}

namespace {

// "<sync token>_p<presence serial>"; a plain sync token (from /sync, or from before presence
// was streamed) has no presence backlog.
struct EventsToken {
  SyncToken sync;
  std::optional<uint64_t> presence;
};

EventsToken parse_events_token(const std::string& s) {
  EventsToken t;
  auto p = s.find("_p");
  t.sync = SyncToken::parse(s.substr(0, p));
  if (p != std::string::npos) {
    std::string digits = s.substr(p + 2);
    if (digits.empty() || digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) {
      throw MatrixError::invalid_param("Invalid event stream token");
    }
    t.presence = std::stoull(digits);
  }
  return t;
}

std::string presence_key(const std::string& room_or_user) { return "presence|" + room_or_user; }

}  // namespace

void LegacyService::on_presence(const std::string& user_id) {
  {
    std::lock_guard lock(presence_mu_);
    presence_changed_[user_id] = ++presence_serial_;
  }
  std::vector<std::string> keys{presence_key(user_id)};
  db_.read([&](storage::Connection& c) {
    for (auto& room : ev::rooms_for_user(c, user_id, "join")) keys.push_back(presence_key(room));
  });
  notifier_.notify(keys);
}

// ---- GET /events ----

SyncResult LegacyService::events(const Requester& r, const EventStreamRequest& req) {
  const int64_t deadline = core::steady_ms() + std::clamp<int64_t>(req.timeout_ms, 0, 10 * 60 * 1000);
  EventStreamRequest rq = req;
  rq.limit = std::clamp<int64_t>(req.limit, 1, kMaxLimit);
  // Without `from` the stream starts now: pin that position so every round of the long-poll
  // (and the answer's `start`) uses the same one.
  if (!rq.from) rq.from = token_str(db_.committed_position(), user_data_.typing().serial(), presence_serial());
  parse_events_token(*rq.from);  // 400 before any waiting

  uint64_t notifier_pos = notifier_.position();
  std::vector<std::string> keys;
  bool empty = false;
  object body = compute_events(r, rq, keys, empty);
  if (!empty || rq.timeout_ms <= 0 || core::steady_ms() >= deadline) return body;

  SyncWait lp;
  lp.wake_keys = std::move(keys);
  lp.notifier_position = notifier_pos;
  lp.deadline_ms = deadline;
  lp.owner = r.user_id;
  lp.resume = [this, r, rq, deadline](bool reached) -> SyncResult {
    EventStreamRequest again = rq;
    again.timeout_ms = reached ? 0 : std::max<int64_t>(0, deadline - core::steady_ms());
    return events(r, again);
  };
  return lp;
}

object LegacyService::compute_events(const Requester& r, const EventStreamRequest& req,
                                     std::vector<std::string>& wake_keys, bool& empty) {
  const EventsToken from_token = parse_events_token(*req.from);
  const SyncToken& from = from_token.sync;
  const uint64_t presence_now = presence_serial();
  // A serial from before a restart (presence is in memory) starts over.
  uint64_t presence_from = from_token.presence.value_or(presence_now);
  if (presence_from > presence_now) presence_from = 0;
  const int64_t now = db_.committed_position();
  uint64_t typing_now = user_data_.typing().serial();
  std::set<std::string> presence_users{r.user_id};
  const ClientEventOptions opts{r.user_id, r.device_id, true};

  // Which rooms, and up to where in each: joined rooms to now, a room left after `from` up to the
  // leave, an invite after `from` as its own event, a peeked world_readable room to now.
  struct Scope {
    std::string room_id;
    int64_t upto = 0;
    bool peeking = false;
  };
  std::vector<Scope> scopes;
  std::vector<ev::StoredEvent> singles;  // membership events of rooms we do not stream
  struct Item {
    int64_t pos;
    object event;
  };
  std::vector<Item> items;
  std::vector<ev::StoredEvent> room_events;
  int64_t cutoff = now;

  db_.read([&](storage::Connection& c) {
    if (req.room_id) {
      auto m = ev::get_membership(c, *req.room_id, r.user_id);
      if (m && m->membership == "join") {
        scopes.push_back({*req.room_id, now, false});
      } else if (world_readable_now(c, *req.room_id)) {
        scopes.push_back({*req.room_id, now, true});
      } else {
        throw MatrixError::forbidden("You are not allowed to view room " + *req.room_id);
      }
    } else {
      for (const auto& m : ev::memberships_of_user(c, r.user_id)) {
        if (m.membership == "join") {
          scopes.push_back({m.room_id, now, false});
        } else if (m.stream_ordering > from.position && m.stream_ordering <= now) {
          // Leaving a room we were in ends its stream there; an invite, or leaving one (a
          // rejection), is only its own event.
          auto before = ev::state_content_before(c, m.room_id, "m.room.member", r.user_id, m.stream_ordering);
          auto* was = before ? before->if_contains("membership") : nullptr;
          const bool was_joined = was && was->is_string() && was->as_string() == "join";
          if ((m.membership == "leave" || m.membership == "ban") && was_joined) {
            scopes.push_back({m.room_id, m.stream_ordering, false});
          } else if (auto e = ev::get_event(c, m.event_id)) {
            singles.push_back(std::move(*e));
          }
        }
        if (m.membership == "invite" || m.membership == "knock") wake_keys.push_back(m.room_id);
      }
    }
    wake_keys.push_back(r.user_id);
    wake_keys.push_back(presence_key(r.user_id));
    for (const auto& s : scopes) {
      wake_keys.push_back(s.room_id);
      if (s.upto < now) continue;  // left: no more presence from there
      wake_keys.push_back(presence_key(s.room_id));
      for (const auto& mem : ev::members_of_room(c, s.room_id)) {
        if (mem.membership == "join") presence_users.insert(mem.user_id);
      }
    }

    // Room events: at most `limit` per room; a room that had more caps the answer at its last
    // one, so that nothing before the returned token is skipped.
    for (const auto& s : scopes) {
      auto batch = ev::room_events_forwards(c, s.room_id, from.position, s.upto, req.limit);
      if (static_cast<int64_t>(batch.size()) >= req.limit) cutoff = std::min(cutoff, batch.back().stream_ordering);
      for (auto& e : batch) {
        bool visible = s.peeking ? visible_to_peeker(c, e) : event_visible_to(c, r.user_id, e);
        if (visible) room_events.push_back(std::move(e));
      }
    }
    for (auto& e : singles) room_events.push_back(std::move(e));
    std::sort(room_events.begin(), room_events.end(),
              [](const ev::StoredEvent& a, const ev::StoredEvent& b) { return a.stream_ordering < b.stream_ordering; });
    for (const auto& e : room_events) {
      if (e.stream_ordering <= cutoff) items.push_back({e.stream_ordering, v1_event(e, c, opts)});
    }

    // Receipts (one m.receipt per room) and account data share the stream positions.
    for (const auto& s : scopes) {
      if (auto re = receipt_event(c, s.room_id, r.user_id, from.position, std::min(s.upto, cutoff))) {
        // Placed at its earliest receipt: if `limit` cuts the answer there, nothing is lost (the
        // later receipts come again next time).
        int64_t pos = INT64_MAX;
        for (const auto& rc : ud::receipts_since(c, s.room_id, from.position, std::min(s.upto, cutoff))) {
          pos = std::min(pos, rc.stream_id);
        }
        items.push_back({pos, std::move(*re)});
      }
    }
    for (const auto& ad : ud::account_data_since(c, r.user_id, from.position, cutoff)) {
      object e{{"type", ad.type}, {"content", core::parse_stored_json(ad.content)}};
      if (!ad.room_id.empty()) e["room_id"] = ad.room_id;
      items.push_back({ad.stream_id, std::move(e)});
    }
  });

  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.pos < b.pos; });
  if (static_cast<int64_t>(items.size()) > req.limit) {
    cutoff = items[req.limit - 1].pos;
    while (!items.empty() && items.back().pos > cutoff) items.pop_back();
  }
  array chunk;
  for (auto& it : items) chunk.push_back(std::move(it.event));

  // Typing: its own serial. Rooms whose typing changed since `from` say who types now.
  for (const auto& s : scopes) {
    if (s.upto < now) continue;  // left
    uint64_t serial = 0;
    auto users = user_data_.typing().typing_users(s.room_id, &serial);
    if (serial <= from.typing) continue;
    array ids;
    for (auto& u : users) ids.push_back(boost::json::value(u));
    chunk.push_back(
        object{{"type", "m.typing"}, {"room_id", s.room_id}, {"content", object{{"user_ids", std::move(ids)}}}});
  }

  // Presence of everyone sharing a streamed room whose presence changed since `from`.
  if (presence_now > presence_from) {
    std::vector<std::string> changed;
    {
      std::lock_guard lock(presence_mu_);
      for (const auto& u : presence_users) {
        auto it = presence_changed_.find(u);
        if (it != presence_changed_.end() && it->second > presence_from) changed.push_back(u);
      }
    }
    for (const auto& u : changed) chunk.push_back(presence_event(u));
  }

  empty = chunk.empty();
  std::string end = token_str(std::max(from.position, cutoff), std::max<uint64_t>(from.typing, typing_now),
                              std::max(presence_from, presence_now));
  return object{{"chunk", std::move(chunk)}, {"start", *req.from}, {"end", std::move(end)}};
}

// ---- GET /initialSync and /rooms/{roomId}/initialSync ----

namespace {

struct Snapshot {
  object room;
  array receipts;  // the room's m.receipt event, if any
};

}  // namespace

object LegacyService::initial_sync(const Requester& r, int64_t limit, bool archived) {
  limit = std::clamp<int64_t>(limit, 0, kMaxLimit);
  const int64_t now = db_.committed_position();
  const SyncToken now_token{now, user_data_.typing().serial(), now, std::nullopt};
  const uint64_t presence_now = presence_serial();
  const ClientEventOptions opts{r.user_id, r.device_id, true};
  array rooms, receipts, account_data;
  std::set<std::string> members_seen;
  array presence;

  db_.read([&](storage::Connection& c) {
    for (const auto& m : ev::memberships_of_user(c, r.user_id)) {
      if (m.stream_ordering > now) continue;
      const bool left = m.membership == "leave" || m.membership == "ban";
      if (m.membership != "join" && m.membership != "invite" && !(left && archived && !m.forgotten)) continue;
      auto row = storage::rooms::get_room(c, m.room_id);
      object room{{"room_id", m.room_id},
                  {"membership", m.membership},
                  {"visibility", row && row->is_public ? "public" : "private"}};
      if (m.membership == "invite") {
        if (auto e = ev::get_event(c, m.event_id)) {
          room["inviter"] = e->sender;
          room["invite"] = v1_event(*e, c, opts);
        }
        rooms.push_back(std::move(room));
        continue;
      }
      const int64_t upto = left ? m.stream_ordering : now;
      auto msgs = recent_events(c, m.room_id, upto, limit,
                                [&](const ev::StoredEvent& e) { return event_visible_to(c, r.user_id, e); });
      array chunk;
      for (const auto& e : msgs) chunk.push_back(v1_event(e, c, opts));
      int64_t first = msgs.empty() ? upto + 1 : msgs.front().stream_ordering;
      room["messages"] = object{{"chunk", std::move(chunk)}, {"start", "s" + std::to_string(first - 1)},
                                {"end", token_str(upto, now_token.typing, presence_now)}};
      array state;
      auto entries = left ? ev::state_at(c, m.room_id, upto) : ev::current_state(c, m.room_id);
      for (const auto& s : entries) {
        if (auto e = ev::get_event(c, s.event_id)) state.push_back(v1_event(*e, c, opts));
      }
      if (!left) {
        for (const auto& mem : ev::members_of_room(c, m.room_id)) {
          if (mem.membership == "join") members_seen.insert(mem.user_id);
        }
      }
      room["state"] = std::move(state);
      room["account_data"] = room_account_data(c, r.user_id, m.room_id, now);
      if (!left) {
        if (auto re = receipt_event(c, m.room_id, r.user_id, 0, now)) receipts.push_back(std::move(*re));
      }
      rooms.push_back(std::move(room));
    }
    for (const auto& ad : ud::account_data_since(c, r.user_id, 0, now)) {
      if (!ad.room_id.empty()) continue;
      account_data.push_back(object{{"type", ad.type}, {"content", core::parse_stored_json(ad.content)}});
    }
  });
  members_seen.insert(r.user_id);
  for (const auto& u : members_seen) presence.push_back(presence_event(u));
  return object{{"end", token_str(now, now_token.typing, presence_now)},
                {"rooms", std::move(rooms)},
                {"presence", std::move(presence)},
                {"account_data", std::move(account_data)},
                {"receipts", std::move(receipts)}};
}

object LegacyService::room_initial_sync(const Requester& r, const std::string& room_id, int64_t limit) {
  limit = std::clamp<int64_t>(limit, 0, kMaxLimit);
  const int64_t now = db_.committed_position();
  const SyncToken now_token{now, user_data_.typing().serial(), now, std::nullopt};
  const uint64_t presence_now = presence_serial();
  const ClientEventOptions opts{r.user_id, r.device_id, true};
  std::vector<std::string> joined_members;
  object out = db_.read([&](storage::Connection& c) {
    auto m = ev::get_membership(c, room_id, r.user_id);
    const bool joined = m && m->membership == "join";
    const bool left = m && (m->membership == "leave" || m->membership == "ban");
    const bool peeking = !joined && !left;
    if (peeking && !world_readable_now(c, room_id)) {
      throw MatrixError::forbidden("You are not allowed to view room " + room_id);
    }
    const int64_t upto = left ? m->stream_ordering : now;
    auto msgs = recent_events(c, room_id, upto, limit, [&](const ev::StoredEvent& e) {
      return peeking ? visible_to_non_member(c, e) : event_visible_to(c, r.user_id, e);
    });
    array chunk;
    for (const auto& e : msgs) chunk.push_back(v1_event(e, c, opts));
    int64_t first = msgs.empty() ? upto + 1 : msgs.front().stream_ordering;
    array state;
    for (const auto& s : left ? ev::state_at(c, room_id, upto) : ev::current_state(c, room_id)) {
      if (auto e = ev::get_event(c, s.event_id)) state.push_back(v1_event(*e, c, opts));
    }
    array receipts;
    if (!left) {
      for (const auto& mem : ev::members_of_room(c, room_id)) {
        if (mem.membership == "join") joined_members.push_back(mem.user_id);
      }
      if (auto re = receipt_event(c, room_id, r.user_id, 0, now)) receipts.push_back(std::move(*re));
    }
    object room{{"room_id", room_id},
                {"messages", object{{"chunk", std::move(chunk)},
                                    {"start", "s" + std::to_string(first - 1)},
                                    {"end", token_str(upto, now_token.typing, presence_now)}}},
                {"state", std::move(state)},
                {"receipts", std::move(receipts)},
                {"account_data", room_account_data(c, r.user_id, room_id, now)}};
    if (!peeking) room["membership"] = m->membership;
    return room;
  });
  array presence;
  for (const auto& u : joined_members) presence.push_back(presence_event(u));
  out["presence"] = std::move(presence);
  return out;
}

// ---- MSC2753 peeking ----

void LegacyService::peek(const Requester& r, const std::string& room_id) {
  db_.write([&](storage::Connection& c) {
    if (!world_readable_now(c, room_id)) {
      throw MatrixError::forbidden("Room " + room_id + " is not world_readable: it cannot be peeked into");
    }
    storage::peeks::put_peek(c, r.user_id, r.device_id.value_or(""), room_id, db_.next_stream_position());
  });
  notifier_.notify({r.user_id});
}

void LegacyService::unpeek(const Requester& r, const std::string& room_id) {
  db_.write([&](storage::Connection& c) {
    storage::peeks::delete_peek(c, r.user_id, r.device_id.value_or(""), room_id);
    db_.next_stream_position();
  });
  notifier_.notify({r.user_id});
}

object LegacyService::sync_peeks(const Requester& r, std::optional<int64_t> since, int64_t now,
                                 int64_t timeline_limit, std::vector<std::string>& wake_keys) {
  object out;
  const ClientEventOptions opts{r.user_id, r.device_id, false};
  db_.read([&](storage::Connection& c) {
    for (const auto& p : storage::peeks::peeks_of(c, r.user_id, r.device_id.value_or(""))) {
      if (p.stream_id > now) continue;  // after this sync's snapshot: next time
      auto m = ev::get_membership(c, p.room_id, r.user_id);
      if (m && m->membership == "join") continue;  // a joined room is under rooms.join
      if (!world_readable_now(c, p.room_id)) continue;  // no longer peekable
      wake_keys.push_back(p.room_id);
      const bool fresh = !since || *since < p.stream_id;
      const int64_t from = fresh ? 0 : *since;
      std::vector<ev::StoredEvent> timeline;
      bool limited = false;
      for (auto& e : ev::room_events_backwards(c, p.room_id, from, now, timeline_limit + 1)) {
        if (static_cast<int64_t>(timeline.size()) >= timeline_limit) {
          limited = true;
          break;
        }
        if (visible_to_peeker(c, e)) timeline.push_back(std::move(e));
      }
      if (!fresh && timeline.empty()) continue;
      std::reverse(timeline.begin(), timeline.end());
      const int64_t first = timeline.empty() ? now + 1 : timeline.front().stream_ordering;
      // State at the timeline's start: all of it for a new peek, else what changed in the gap.
      array state;
      if (fresh || limited) {
        for (const auto& s : ev::state_at(c, p.room_id, first - 1)) {
          auto e = ev::get_event(c, s.event_id);
          if (!e || e->stream_ordering <= from) continue;
          state.push_back(client_event(*e, c, opts));
        }
      }
      array events;
      for (const auto& e : timeline) events.push_back(client_event(e, c, opts));
      out[p.room_id] = object{{"timeline", object{{"events", std::move(events)},
                                                  {"limited", limited},
                                                  {"prev_batch", "s" + std::to_string(first - 1)}}},
                              {"state", object{{"events", std::move(state)}}},
                              {"ephemeral", object{{"events", array{}}}},
                              {"account_data", object{{"events", array{}}}}};
    }
  });
  return out;
}

}  // namespace trestle::service
