#include "service/sync.hpp"

#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/json_depth.hpp"
#include "room/auth_rules.hpp"
#include "service/event_format.hpp"
#include "service/filter.hpp"
#include "service/keys.hpp"
#include "service/presence_sync.hpp"
#include "service/push/push_rules.hpp"
#include "service/rooms.hpp"
#include "service/to_device.hpp"
#include "service/unread_counts.hpp"
#include "service/user_data.hpp"
#include "service/visibility.hpp"
#include "storage/account_store.hpp"
#include "storage/event_store.hpp"
#include "storage/room_store.hpp"
#include "storage/user_data_store.hpp"

#include <algorithm>
#include <map>
#include <set>

namespace trestle::service {

namespace ev = storage::events;
namespace ud = storage::user_data;
using boost::json::array;
using boost::json::object;

namespace {

constexpr int64_t kDefaultTimelineLimit = 10;

using StateKey = std::pair<std::string, std::string>;

// The room state just before `first_stream` (the first timeline event): current state with the
// state events at or after it rolled back. Our rooms are linear, so this is exact.
std::map<StateKey, std::string> state_before(storage::Connection& c, const std::string& room_id,
                                             int64_t first_stream, int64_t upto) {
  std::map<StateKey, std::string> state;
  for (const auto& s : ev::current_state(c, room_id)) state[{s.type, s.state_key}] = s.event_id;
  // Roll back state events after `upto` too, so the answer matches the token's snapshot.
  auto later = ev::room_events_backwards(c, room_id, first_stream - 1, INT64_MAX, INT64_MAX);
  for (const auto& e : later) {  // newest first
    if (!e.state_key) continue;
    StateKey key{e.type, *e.state_key};
    if (e.replaces_state) state[key] = *e.replaces_state;
    else state.erase(key);
  }
  (void)upto;
  return state;
}


}  // namespace

SyncToken SyncToken::parse(const std::string& s) {
  SyncToken t;
  t.position = parse_stream_token(s);
  t.to_device = t.position;  // tokens from before to-device paging: everything up to pos was handed out
  auto number = [](const std::string& part) -> uint64_t {
    if (part.empty() || part.size() > 18 || !std::all_of(part.begin(), part.end(), ::isdigit)) {
      throw MatrixError::invalid_param("Invalid sync token");
    }
    return std::stoull(part);
  };
  auto us = s.find('_');
  if (us != std::string::npos) {
    auto us2 = s.find('_', us + 1);
    t.typing = number(s.substr(us + 1, us2 == std::string::npos ? std::string::npos : us2 - us - 1));
    if (us2 != std::string::npos) {
      auto us3 = s.find('_', us2 + 1);
      t.to_device = std::min<int64_t>(
          static_cast<int64_t>(number(s.substr(us2 + 1, us3 == std::string::npos ? std::string::npos : us3 - us2 - 1))),
          t.position);
      if (us3 != std::string::npos) t.presence = number(s.substr(us3 + 1));
    }
  }
  return t;
}

SyncService::SyncService(storage::Database& db, Notifier& notifier, UserDataService& user_data)
    : db_(db), notifier_(notifier), user_data_(user_data) {}

http::Reply SyncService::sync(const Requester& r, const SyncRequest& req) {
  std::optional<SyncToken> since;
  if (req.since) since = SyncToken::parse(*req.since);
  int64_t deadline = core::steady_ms() + std::clamp<int64_t>(req.timeout_ms, 0, 10 * 60 * 1000);

  // Each round captures the notifier position before reading, so nothing committed meanwhile
  // can slip between the read and the wait.
  std::function<http::Reply(bool)> round = [this, r, req, deadline, &round](bool deadline_reached) -> http::Reply {
    (void)round;
    uint64_t notifier_pos = notifier_.position();
    SyncToken now{db_.committed_position(), user_data_.typing().serial()};
    if (presence_) now.presence = presence_->serial();
    std::vector<std::string> keys;
    bool empty = false;
    object body = compute(r, req, now, keys, empty);
    if (!empty || deadline_reached || !req.since || req.timeout_ms <= 0 || req.full_state) {
      return http::Response::json(body);
    }
    http::LongPoll lp;
    lp.wake_keys = std::move(keys);
    lp.notifier_position = notifier_pos;
    lp.deadline_ms = deadline;
    lp.owner = r.user_id;
    SyncService* self = this;
    Requester rr = r;
    SyncRequest rq = req;
    lp.poll = [self, rr, rq, deadline](bool reached) -> http::Reply {
      SyncRequest again = rq;
      // Re-enter with the same arguments; the recursion is through the transport, not the stack.
      again.timeout_ms = std::max<int64_t>(0, deadline - core::steady_ms());
      if (reached) again.timeout_ms = 0;
      return self->sync(rr, again);
    };
    return lp;
  };
  return round(false);
}

object SyncService::compute(const Requester& r, const SyncRequest& req, const SyncToken& now,
                            std::vector<std::string>& wake_keys, bool& empty) {
  std::optional<SyncToken> since;
  if (req.since) since = SyncToken::parse(*req.since);
  const int64_t since_pos = since ? since->position : 0;
  const bool initial = !since;
  const auto& filter = req.filter;
  object room_filter = sub_filter(filter, {"room"});
  object timeline_filter = sub_filter(filter, {"room", "timeline"});
  object state_filter = sub_filter(filter, {"room", "state"});
  object ephemeral_filter = sub_filter(filter, {"room", "ephemeral"});
  object room_account_data_filter = sub_filter(filter, {"room", "account_data"});
  object account_data_filter = sub_filter(filter, {"account_data"});
  const int64_t timeline_limit = std::clamp<int64_t>(filter_limit(timeline_filter, kDefaultTimelineLimit), 1, 1000);
  const bool lazy_members = filter_flag(state_filter, "lazy_load_members");
  const bool include_leave = filter_flag(room_filter, "include_leave");
  ClientEventOptions opts{r.user_id, r.device_id, false};

  wake_keys.push_back(r.user_id);
  object join_rooms, invite_rooms, leave_rooms;
  object global_push_rules = user_data_.push_rules(r.user_id);

  db_.read([&](storage::Connection& c) {
    for (const auto& m : ev::memberships_of_user(c, r.user_id)) {
      if (m.stream_ordering > now.position) continue;  // joined after our snapshot: next time
      if (!room_allowed(room_filter, m.room_id)) continue;
      if (m.membership == "join") wake_keys.push_back(m.room_id);
      if (m.membership == "invite" || m.membership == "knock") wake_keys.push_back(m.room_id);

      if (m.membership == "invite") {
        if (!initial && m.stream_ordering <= since_pos) continue;
        array stripped;
        for (const auto& s : ev::current_state(c, m.room_id)) {
          static const std::set<std::string> kStrippedTypes = {"m.room.create", "m.room.join_rules", "m.room.name",
                                                               "m.room.avatar", "m.room.canonical_alias",
                                                               "m.room.encryption", "m.room.topic"};
          if (!kStrippedTypes.count(s.type) && s.event_id != m.event_id) continue;
          if (auto e = ev::get_event(c, s.event_id)) stripped.push_back(stripped_state_event(*e));
        }
        if (auto inv = ev::get_event(c, m.event_id)) {
          auto se = stripped_state_event(*inv);
          se["event_id"] = inv->event_id;
          se["origin_server_ts"] = inv->origin_server_ts;
          // The invite event itself must be there even if current state has moved on.
          bool present = std::any_of(stripped.begin(), stripped.end(), [&](const boost::json::value& v) {
            return v.as_object().at("type").as_string() == "m.room.member" &&
                   v.as_object().at("state_key").as_string() == r.user_id;
          });
          if (!present) stripped.push_back(se);
        }
        invite_rooms[m.room_id] = object{{"invite_state", object{{"events", std::move(stripped)}}}};
        continue;
      }

      const bool left = m.membership == "leave" || m.membership == "ban";
      if (m.membership != "join" && !left) continue;
      if (left) {
        if (m.forgotten) continue;
        if (initial && !include_leave) continue;
        if (!initial && m.stream_ordering <= since_pos) continue;
      }
      // A room we joined (or rejoined) after `since` is new to this client: send all of it.
      const bool newly_joined = !initial && m.membership == "join" && m.stream_ordering > since_pos;
      const bool room_full = initial || req.full_state || newly_joined;
      const int64_t upto = left ? std::min(now.position, m.stream_ordering) : now.position;
      // full_state brings all the state but, as the spec says, the timeline still starts at `since`.
      const int64_t from = (initial || newly_joined) ? 0 : since_pos;

      // Timeline: newest `limit` events in (from, upto] passing the filter.
      std::vector<ev::StoredEvent> timeline;
      bool limited = false;
      int64_t cursor = upto;
      while (static_cast<int64_t>(timeline.size()) < timeline_limit) {
        auto batch = ev::room_events_backwards(c, m.room_id, from, cursor, timeline_limit);
        if (batch.empty()) break;
        for (auto& e : batch) {
          cursor = e.stream_ordering - 1;
          if (static_cast<int64_t>(timeline.size()) >= timeline_limit) {
            limited = true;
            break;
          }
          if (event_matches(timeline_filter, e) && event_visible_to(c, r.user_id, e)) timeline.push_back(std::move(e));
        }
        if (static_cast<int64_t>(batch.size()) < timeline_limit) break;
      }
      if (!limited && static_cast<int64_t>(timeline.size()) >= timeline_limit) {
        limited = !ev::room_events_backwards(c, m.room_id, from, cursor, 1).empty();
      }
      std::reverse(timeline.begin(), timeline.end());
      const int64_t timeline_start = timeline.empty() ? upto + 1 : timeline.front().stream_ordering;
      const int64_t prev_batch = (timeline.empty() ? upto : timeline.front().stream_ordering - 1);

      // State: at the start of the timeline, in full for new rooms, else what changed between
      // `since` and the timeline's start (only when the timeline skipped events).
      array state;
      if (room_full || limited) {
        std::set<std::string> wanted_members;
        if (lazy_members) {
          wanted_members.insert(r.user_id);
          for (const auto& e : timeline) wanted_members.insert(e.sender);
        }
        std::set<std::string> in_timeline;
        for (const auto& e : timeline) in_timeline.insert(e.event_id);
        for (const auto& [key, event_id] : state_before(c, m.room_id, timeline_start, upto)) {
          if (lazy_members && key.first == "m.room.member" && !wanted_members.count(key.second)) continue;
          auto e = ev::get_event(c, event_id);
          if (!e || in_timeline.count(event_id)) continue;
          if (!room_full && e->stream_ordering <= since_pos) continue;  // client has it already
          if (!event_matches(state_filter, *e)) continue;
          state.push_back(client_event(*e, c, opts));
        }
      }

      array timeline_json;
      for (const auto& e : timeline) timeline_json.push_back(client_event(e, c, opts));

      // Room account data.
      array room_account_data;
      for (const auto& ad : ud::account_data_since(c, r.user_id, initial ? 0 : since_pos, now.position)) {
        if (ad.room_id != m.room_id) continue;
        if (!event_matches(room_account_data_filter, ad.type, r.user_id, "", {})) continue;
        room_account_data.push_back(object{{"type", ad.type}, {"content", core::parse_stored_json(ad.content)}});
      }

      // Ephemeral: typing and receipts.
      array ephemeral;
      if (!left) {
        uint64_t typing_serial = 0;
        auto typing = user_data_.typing().typing_users(m.room_id, &typing_serial);
        if (room_full || (since && typing_serial > since->typing)) {
          if (room_full && typing.empty()) {
            // nothing to say on a first sync
          } else if (event_matches(ephemeral_filter, "m.typing", "", "", {})) {
            array ids;
            for (auto& u : typing) ids.push_back(boost::json::value(u));
            ephemeral.push_back(object{{"type", "m.typing"}, {"content", object{{"user_ids", std::move(ids)}}}});
          }
        }
        auto receipts = ud::receipts_since(c, m.room_id, room_full ? 0 : since_pos, now.position);
        if (!receipts.empty() && event_matches(ephemeral_filter, "m.receipt", "", "", {})) {
          object content;
          for (const auto& rc : receipts) {
            // Private receipts are only for their owner.
            if (rc.receipt_type == "m.read.private" && rc.user_id != r.user_id) continue;
            object data{{"ts", rc.ts}};
            if (!rc.thread_id.empty()) data["thread_id"] = rc.thread_id;
            auto& by_event = content[rc.event_id];
            if (!by_event.is_object()) by_event = object{};
            auto& by_type = by_event.as_object()[rc.receipt_type];
            if (!by_type.is_object()) by_type = object{};
            by_type.as_object()[rc.user_id] = std::move(data);
          }
          if (!content.empty()) ephemeral.push_back(object{{"type", "m.receipt"}, {"content", std::move(content)}});
        }
      }

      bool anything = room_full || !timeline_json.empty() || !state.empty() || !ephemeral.empty() ||
                      !room_account_data.empty();
      if (!anything) continue;

      object room{{"timeline", object{{"events", std::move(timeline_json)},
                                      {"limited", limited},
                                      {"prev_batch", "s" + std::to_string(prev_batch)}}},
                  {"state", object{{"events", std::move(state)}}},
                  {"account_data", object{{"events", std::move(room_account_data)}}}};
      if (!left) {
        room["ephemeral"] = object{{"events", std::move(ephemeral)}};
        auto unread = unread_.count(c, r.user_id, m.room_id, m.event_id, global_push_rules, now.position);
        int64_t notifications = unread.notifications, highlights = unread.highlights;
        room["unread_notifications"] = object{{"notification_count", notifications}, {"highlight_count", highlights}};
        // Room summary: heroes and counts, so clients can name unnamed rooms.
        object summary;
        int64_t joined = 0, invited = 0;
        bool members_changed = false;  // the counts are required whenever they changed since `since`
        array heroes;
        for (const auto& mem : ev::members_of_room(c, m.room_id)) {
          if (mem.stream_ordering > since_pos) members_changed = true;
          if (mem.membership == "join") ++joined;
          if (mem.membership == "invite") ++invited;
          if (mem.user_id != r.user_id && (mem.membership == "join" || mem.membership == "invite") && heroes.size() < 5) {
            heroes.push_back(boost::json::value(mem.user_id));
          }
        }
        if (room_full || limited || !state.empty() || members_changed) {
          summary["m.joined_member_count"] = joined;
          summary["m.invited_member_count"] = invited;
          summary["m.heroes"] = std::move(heroes);
        }
        room["summary"] = std::move(summary);
        join_rooms[m.room_id] = std::move(room);
      } else {
        leave_rooms[m.room_id] = std::move(room);
      }
    }
  });

  array account_data;
  bool saw_push_rules = false;
  db_.read([&](storage::Connection& c) {
    for (const auto& ad : ud::account_data_since(c, r.user_id, initial ? 0 : since_pos, now.position)) {
      if (!ad.room_id.empty()) continue;
      if (ad.type == "m.push_rules") saw_push_rules = true;
      if (!event_matches(account_data_filter, ad.type, r.user_id, "", {})) continue;
      account_data.push_back(object{{"type", ad.type}, {"content", core::parse_stored_json(ad.content)}});
    }
  });
  // Clients expect their push rules in the first sync even if they never changed them.
  if (initial && !saw_push_rules && event_matches(account_data_filter, "m.push_rules", r.user_id, "", {})) {
    account_data.push_back(object{{"type", "m.push_rules"}, {"content", object{{"global", global_push_rules}}}});
  }

  // ---- to_device (ToDeviceService): this device's messages; `since` acknowledges earlier ones.
  SyncToken next = now;
  array to_device_events;
  if (to_device_) {
    if (r.device_id) wake_keys.push_back(ToDeviceService::wake_key(r.user_id, *r.device_id));
    auto page = to_device_->sync_page(r, since ? std::optional<int64_t>(since->to_device) : std::nullopt, now.position);
    next.to_device = page.position;
    to_device_events = std::move(page.events);
  } else {
    next.to_device = now.position;
  }
  // ---- end to_device

  // ---- presence (presence_sync): contacts' m.presence since the token's presence serial.
  array presence_events;
  if (presence_) {
    PresenceSyncWindow window{std::nullopt, since_pos, now.position};
    if (since) {
      // A token from before presence was in tokens is taken as current; one from before a
      // restart (serial beyond ours) as "everything".
      uint64_t s = since->presence.value_or(*now.presence);
      window.since_serial = s > *now.presence ? 0 : s;
    }
    presence_events = db_.read([&](storage::Connection& c) {
      return presence_for_sync(c, *presence_, r.user_id, window, sub_filter(filter, {"presence"}));
    });
  }
  // ---- end presence

  empty = join_rooms.empty() && invite_rooms.empty() && leave_rooms.empty() && account_data.empty() &&
          to_device_events.empty() && presence_events.empty();
  object rooms{{"join", std::move(join_rooms)}, {"invite", std::move(invite_rooms)},
               {"leave", std::move(leave_rooms)}, {"knock", object{}}};
  object response{{"next_batch", next.str()},
                  {"rooms", std::move(rooms)},
                  {"account_data", object{{"events", std::move(account_data)}}},
                  {"presence", object{{"events", std::move(presence_events)}}},
                  {"to_device", object{{"events", std::move(to_device_events)}}},
                  {"device_lists", object{{"changed", array{}}, {"left", array{}}}},
                  {"device_one_time_keys_count", object{}}};
  // --- E2EE keys: device_lists, device_one_time_keys_count, device_unused_fallback_key_types ---
  if (keys_ && keys_->fill_sync(r, since_pos, now.position, initial, response)) empty = false;
  // --- end E2EE keys ---
  return response;
}

}  // namespace trestle::service
