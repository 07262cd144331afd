#include "service/sync.hpp"

#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/json_depth.hpp"
#include "room/auth_rules.hpp"
#include "service/event_format.hpp"
#include "service/filter.hpp"
#include "service/ignored_users.hpp"
#include "service/keys.hpp"
#include "service/membership_rules.hpp"
#include "service/presence_sync.hpp"
#include "service/push/push_rules.hpp"
#include "service/stream_token.hpp"
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
#include <unordered_map>

namespace trestle::service {

namespace ev = storage::events;
namespace ud = storage::user_data;
using boost::json::array;
using boost::json::object;

namespace {

constexpr int64_t kDefaultTimelineLimit = 10;
// How many unshown events past a full timeline are read to learn whether it is `limited`.
constexpr int64_t kMaxLimitedScan = 500;

using StateKey = std::pair<std::string, std::string>;

}  // namespace

void SentMembers::reset(const std::string& device) {
  std::lock_guard lock(mu_);
  by_device_.erase(device);
}

bool SentMembers::was_sent(const std::string& device, const std::string& key, const std::string& event_id) const {
  std::lock_guard lock(mu_);
  auto d = by_device_.find(device);
  if (d == by_device_.end()) return false;
  auto it = d->second.find(key);
  return it != d->second.end() && it->second == event_id;
}

void SentMembers::record(const std::string& device, const std::unordered_map<std::string, std::string>& sent) {
  if (sent.empty()) return;
  std::lock_guard lock(mu_);
  if (by_device_.size() >= kMaxDevices && !by_device_.count(device)) by_device_.clear();
  auto& map = by_device_[device];
  if (map.size() + sent.size() > kMaxPerDevice) map.clear();
  for (const auto& [k, v] : sent) map[k] = v;
}

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

SyncResult SyncService::sync(const Requester& r, const SyncRequest& req) {
  int64_t deadline = core::steady_ms() + std::clamp<int64_t>(req.timeout_ms, 0, 10 * 60 * 1000);
  // The notifier position is taken before reading, so nothing committed meanwhile can slip
  // between the read and the wait.
  uint64_t notifier_pos = notifier_.position();
  SyncToken now{db_.committed_position(), user_data_.typing().serial(), 0, std::nullopt};
  if (presence_) now.presence = presence_->serial();
  std::vector<std::string> keys;
  bool empty = false;
  object body = compute(r, req, now, keys, empty);
  if (!empty || !req.since || req.timeout_ms <= 0 || req.full_state) return body;
  SyncWait wait;
  wait.wake_keys = std::move(keys);
  wait.notifier_position = notifier_pos;
  wait.deadline_ms = deadline;
  wait.owner = r.user_id;
  wait.resume = [this, r, req, deadline](bool reached) -> SyncResult {
    SyncRequest again = req;
    // Re-enter with the same arguments; the recursion is through the transport, not the stack.
    again.timeout_ms = reached ? 0 : std::max<int64_t>(0, deadline - core::steady_ms());
    return sync(r, again);
  };
  return wait;
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
  const int64_t timeline_limit = std::clamp<int64_t>(filter_limit(timeline_filter, kDefaultTimelineLimit), 0, 1000);
  const bool lazy_members = filter_flag(state_filter, "lazy_load_members");
  const bool redundant_members = filter_flag(state_filter, "include_redundant_members");
  // Per-thread notification counts (spec 1.4): the flag of the timeline filter (or, as some
  // clients send it, the state filter).
  const bool thread_counts = filter_flag(timeline_filter, "unread_thread_notifications") ||
                             filter_flag(state_filter, "unread_thread_notifications");
  auto* event_format = filter.if_contains("event_format");
  const bool federation_format = event_format && event_format->is_string() && event_format->as_string() == "federation";
  const bool include_leave = filter_flag(room_filter, "include_leave");
  ClientEventOptions opts{r.user_id, r.device_id, false};

  wake_keys.push_back(r.user_id);
  object join_rooms, invite_rooms, leave_rooms, knock_rooms;
  // The user's push rules, read only when needed (unread counts of new events, an initial sync):
  // most long-poll rounds need neither.
  std::optional<object> push_rules_cache;
  auto global_push_rules = [&](storage::Connection& c) -> const object& {
    if (!push_rules_cache) {
      auto stored = ud::get_push_rules(c, r.user_id);
      push_rules_cache = stored ? core::parse_stored_json(*stored).as_object() : push::default_ruleset(r.user_id);
    }
    return *push_rules_cache;
  };

  // Lazy loading: the member events this device was already sent ("room|user" -> event ID).
  const std::string device_key = r.user_id + "|" + r.device_id.value_or("");
  const bool dedupe_members = lazy_members && !redundant_members;
  std::unordered_map<std::string, std::string> newly_sent_members;
  if (dedupe_members && initial) sent_members_.reset(device_key);  // a new sync sequence

  array account_data;
  bool saw_push_rules = false;
  array presence_events;
  db_.read([&](storage::Connection& c) {
    const auto ignored = ignored_users(c, r.user_id);
    // Invite permission (v1.18): a user blocking invites is not sent them.
    const bool invites_blocked = membership_rules::invites_blocked(c, r.user_id);
    auto format = [&](const ev::StoredEvent& e) {
      return federation_format ? federation_event(e, c) : client_event(e, c, opts);
    };
    for (const auto& m : ev::memberships_of_user(c, r.user_id)) {
      if (m.stream_ordering > now.position) continue;  // joined after our snapshot: next time
      if (!room_allowed(room_filter, m.room_id)) continue;
      if (m.membership == "join") wake_keys.push_back(m.room_id);
      if (m.membership == "invite" || m.membership == "knock") wake_keys.push_back(m.room_id);

      if (m.membership == "invite") {
        if (!initial && m.stream_ordering <= since_pos) continue;
        if (invites_blocked) continue;
        // Invites from ignored users are not sent (spec: ignoring users).
        if (!ignored.empty()) {
          auto inv = ev::get_event_header(c, m.event_id);
          if (inv && ignored.count(inv->sender)) continue;
        }
        array stripped;
        auto inv = ev::get_event(c, m.event_id);
        for (const auto& s : ev::current_state(c, m.room_id)) {
          static const std::set<std::string> kStrippedTypes = {"m.room.create", "m.room.join_rules", "m.room.name",
                                                               "m.room.avatar", "m.room.canonical_alias",
                                                               "m.room.encryption", "m.room.topic"};
          // Also the inviter's own membership, as Synapse sends (clients show who invited).
          bool inviter = inv && s.type == "m.room.member" && s.state_key == inv->sender;
          if (!kStrippedTypes.count(s.type) && s.event_id != m.event_id && !inviter) continue;
          if (auto e = ev::get_event(c, s.event_id)) stripped.push_back(stripped_state_event(*e));
        }
        if (inv) {
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

      if (m.membership == "knock") {
        // Knocked rooms: the stripped state the knock carries and the knock itself.
        if (!initial && m.stream_ordering <= since_pos) continue;
        if (auto knock = ev::get_event(c, m.event_id)) {
          knock_rooms[m.room_id] =
              object{{"knock_state", object{{"events", membership_rules::knock_state(c, *knock)}}}};
        }
        continue;
      }

      const bool left = m.membership == "leave" || m.membership == "ban";
      if (m.membership != "join" && !left) continue;
      if (left) {
        // A forgotten room is gone from initial syncs; a leave the client has not seen yet still
        // shows once (Synapse: an admin's room deletion makes members leave and forget at once).
        if (m.forgotten && (initial || m.stream_ordering <= since_pos)) continue;
        if (initial && !include_leave) continue;
        if (!initial && m.stream_ordering <= since_pos) continue;
      }
      // A room the user was not in at `since` (joined, or joined and left, since then) is new to
      // this client: send all of it. A join -> join change (a new displayname) is not.
      bool newly_joined = false;
      if (!initial && m.stream_ordering > since_pos) {
        auto membership_before = [&](int64_t before) {
          auto content = ev::state_content_before(c, m.room_id, "m.room.member", r.user_id, before);
          auto* v = content ? content->if_contains("membership") : nullptr;
          return v && v->is_string() ? std::string(v->as_string()) : std::string();
        };
        if (membership_before(since_pos + 1) != "join") {
          newly_joined = m.membership == "join" || membership_before(m.stream_ordering) == "join";
        }
      }
      const bool room_full = initial || req.full_state || newly_joined;
      const int64_t upto = left ? std::min(now.position, m.stream_ordering) : now.position;
      // full_state brings all the state but, as the spec says, the timeline still starts at `since`.
      const int64_t from = (initial || newly_joined) ? 0 : since_pos;

      // Timeline: newest `limit` events in (from, upto] passing the filter, the ignore list and
      // history visibility; current state is always shown (Synapse: a member who joined while
      // history was hidden from us still appears). `limited` when a further such event exists.
      std::optional<std::set<std::string>> current_ids;
      auto shown = [&](const ev::StoredEvent& e) {
        if (!event_matches(timeline_filter, e) || hidden_by_ignore(ignored, e)) return false;
        if (event_visible_to(c, r.user_id, e)) return true;
        if (!e.state_key) return false;
        if (!current_ids) {
          current_ids.emplace();
          for (const auto& s : ev::current_state(c, m.room_id)) current_ids->insert(s.event_id);
        }
        return current_ids->count(e.event_id) > 0;
      };
      std::vector<ev::StoredEvent> timeline;
      bool limited = false;
      // A membership changed in (from, upto]: seen by the scan below, which reads that whole range
      // unless the timeline is limited (then the summary is sent anyway).
      bool member_event_in_range = false;
      {
        const int64_t batch_size = std::max<int64_t>(timeline_limit + 1, 20);
        int64_t cursor = upto, skipped_past_limit = 0;
        bool done = false;
        while (!done) {
          auto batch = ev::room_events_backwards(c, m.room_id, from, cursor, batch_size);
          for (auto& e : batch) {
            cursor = e.stream_ordering - 1;
            if (e.state_key && e.type == "m.room.member") member_event_in_range = true;
            const bool full = static_cast<int64_t>(timeline.size()) >= timeline_limit;
            if (!shown(e)) {
              // Looking for one more shown event only to set `limited`: bounded.
              if (full && ++skipped_past_limit > kMaxLimitedScan) limited = done = true;
              if (done) break;
              continue;
            }
            if (full) {
              limited = done = true;
              break;
            }
            timeline.push_back(std::move(e));
          }
          if (static_cast<int64_t>(batch.size()) < batch_size) break;
        }
      }
      // Synapse marks a newly joined room's timeline limited: the client has none of its history.
      if (newly_joined) limited = true;
      std::reverse(timeline.begin(), timeline.end());
      const int64_t timeline_start = timeline.empty() ? upto + 1 : timeline.front().stream_ordering;
      int64_t prev_batch = timeline.empty() ? upto : timeline.front().stream_ordering - 1;
      // An initial sync holding the whole room paginates back from its end, as Synapse's does.
      if (initial && !limited) prev_batch = upto;

      // State (spec: "state" is the state up to the start of the timeline). In full for new
      // rooms, else what changed between `since` and the timeline's start (when the timeline
      // skipped events). With lazy-loaded members only the members the timeline's senders need,
      // plus (gappy syncs, as Synapse) every member change in the gap.
      std::set<std::string> in_timeline;
      std::set<std::string> needed_members;  // lazy loading: senders whose membership precedes the timeline
      {
        std::set<std::string> member_in_timeline;
        for (const auto& e : timeline) {
          in_timeline.insert(e.event_id);
          if (lazy_members && !member_in_timeline.count(e.sender)) needed_members.insert(e.sender);
          if (e.type == "m.room.member" && e.state_key) member_in_timeline.insert(*e.state_key);
        }
        if (lazy_members && room_full) needed_members.insert(r.user_id);
      }
      std::map<StateKey, std::string> state_ids;
      if (req.use_state_after) {
        // `state_after`: the state at the END of the timeline; in full for new rooms, else what
        // changed since `since`, timeline events included (the client takes state only from here).
        for (const auto& s : ev::state_at(c, m.room_id, upto)) {
          const bool member = s.type == "m.room.member";
          const bool needed = member && needed_members.count(s.state_key);
          if (room_full) {
            if (lazy_members && member && !needed) continue;
          } else {
            auto h = ev::get_event_header(c, s.event_id);
            const bool changed = h && h->stream_ordering > since_pos;
            if (!changed && !needed) continue;
            if (lazy_members && member && !needed && !in_timeline.count(s.event_id)) continue;
          }
          state_ids[{s.type, s.state_key}] = s.event_id;
        }
      } else if (room_full || limited) {
        for (const auto& s : ev::state_at(c, m.room_id, timeline_start - 1)) {
          StateKey key{s.type, s.state_key};
          const bool needed = lazy_members && s.type == "m.room.member" && needed_members.count(s.state_key);
          if (room_full) {
            if (lazy_members && s.type == "m.room.member" && !needed) continue;
          } else if (!needed) {
            auto h = ev::get_event_header(c, s.event_id);
            if (!h || h->stream_ordering <= since_pos) continue;  // the client has it already
          }
          state_ids[key] = s.event_id;
        }
      } else if (lazy_members) {
        for (const auto& u : needed_members) {
          if (auto id = ev::state_event_id_before(c, m.room_id, "m.room.member", u, timeline_start)) {
            state_ids[{"m.room.member", u}] = *id;
          }
        }
      }
      for (auto it = state_ids.begin(); !req.use_state_after && it != state_ids.end();) {
        it = in_timeline.count(it->second) ? state_ids.erase(it) : std::next(it);
      }
      if (dedupe_members) {
        // Members this device was already sent are not sent again (include_redundant_members).
        if (!initial) {
          for (auto it = state_ids.begin(); it != state_ids.end();) {
            bool sent = it->first.first == "m.room.member" &&
                        sent_members_.was_sent(device_key, m.room_id + "|" + it->first.second, it->second);
            it = sent ? state_ids.erase(it) : std::next(it);
          }
        }
        for (const auto& e : timeline) {
          if (e.type == "m.room.member" && e.state_key) newly_sent_members[m.room_id + "|" + *e.state_key] = e.event_id;
        }
      }
      array timeline_json;
      for (const auto& e : timeline) timeline_json.push_back(format(e));

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

      array state;
      for (const auto& [key, event_id] : state_ids) {
        auto e = ev::get_event(c, event_id);
        if (!e || !event_matches(state_filter, *e)) continue;
        if (dedupe_members && key.first == "m.room.member") newly_sent_members[m.room_id + "|" + key.second] = event_id;
        state.push_back(format(*e));
      }

      bool anything = room_full || !timeline_json.empty() || !state.empty() || !ephemeral.empty() ||
                      !room_account_data.empty();
      if (!anything) continue;

      // Room summary: counts whenever the membership changed, and heroes when the room has no
      // name or canonical alias (spec: m.heroes), sorted as Synapse does.
      object summary;
      // The summary is sent when the room is new, gappy or has state to show, or its members
      // changed: otherwise the members (all of them) are not read. Every member of a busy room
      // wakes with each message, so reading them per sync cost members^2 per message.
      if (!left && (room_full || limited || !state.empty() || member_event_in_range)) {
        int64_t joined = 0, invited = 0;
        bool members_changed = false;  // the counts are required whenever they changed since `since`
        std::vector<std::pair<std::string, std::string>> present, gone;  // (user, member event)
        for (const auto& mem : ev::members_of_room(c, m.room_id)) {
          if (mem.stream_ordering > since_pos) members_changed = true;
          if (mem.membership == "join") ++joined;
          if (mem.membership == "invite") ++invited;
          if (mem.user_id == r.user_id) continue;
          if (mem.membership == "join" || mem.membership == "invite") present.emplace_back(mem.user_id, mem.event_id);
          else if (mem.membership == "leave" || mem.membership == "ban") gone.emplace_back(mem.user_id, mem.event_id);
        }
        if (room_full || limited || !state.empty() || members_changed) {
          summary["m.joined_member_count"] = joined;
          summary["m.invited_member_count"] = invited;
          auto named = [&](const char* type, const char* key) {
            auto content = ev::state_content_before(c, m.room_id, type, "", now.position + 1);
            auto* v = content ? content->if_contains(key) : nullptr;
            return v && v->is_string() && !v->as_string().empty();
          };
          if (!named("m.room.name", "name") && !named("m.room.canonical_alias", "alias")) {
            auto& pool = present.empty() ? gone : present;
            std::sort(pool.begin(), pool.end());
            if (pool.size() > 5) pool.resize(5);
            array heroes;
            for (const auto& [user, event_id] : pool) {
              heroes.push_back(boost::json::value(user));
              // Lazy loading: the client needs the heroes' member events to name the room.
              if (!lazy_members || state_ids.count({"m.room.member", user}) || in_timeline.count(event_id)) continue;
              const std::string key = m.room_id + "|" + user;
              if (dedupe_members && !initial && sent_members_.was_sent(device_key, key, event_id)) continue;
              state_ids[{"m.room.member", user}] = event_id;
              if (auto e = ev::get_event(c, event_id); e && event_matches(state_filter, *e)) {
                if (dedupe_members) newly_sent_members[key] = event_id;
                state.push_back(format(*e));
              }
            }
            summary["m.heroes"] = std::move(heroes);
          }
        }
      }

      object room{{"timeline", object{{"events", std::move(timeline_json)},
                                      {"limited", limited},
                                      {"prev_batch", "s" + std::to_string(prev_batch)}}},
                  {req.use_state_after ? "state_after" : "state", object{{"events", std::move(state)}}},
                  {"account_data", object{{"events", std::move(room_account_data)}}}};
      if (!left) {
        room["ephemeral"] = object{{"events", std::move(ephemeral)}};
        auto unread = unread_.count(c, r.user_id, m.room_id, m.event_id,
                                    [&]() -> const object& { return global_push_rules(c); }, now.position);
        const auto& shown = thread_counts ? unread.main : unread.total;
        room["unread_notifications"] =
            object{{"notification_count", shown.notifications}, {"highlight_count", shown.highlights}};
        if (thread_counts && !unread.threads.empty()) {
          object by_thread;
          for (const auto& [root, n] : unread.threads) {
            by_thread[root] = object{{"notification_count", n.notifications}, {"highlight_count", n.highlights}};
          }
          room["unread_thread_notifications"] = std::move(by_thread);
        }
        room["summary"] = std::move(summary);
        join_rooms[m.room_id] = std::move(room);
      } else {
        leave_rooms[m.room_id] = std::move(room);
      }
    }

    // Account data, then presence below: in the same read snapshot as the rooms (one read
    // transaction per sync, not one per part: a woken long-poll's sync is mostly these).
    for (const auto& ad : ud::account_data_since(c, r.user_id, initial ? 0 : since_pos, now.position)) {
      if (!ad.room_id.empty()) continue;
      if (ad.type == "m.push_rules") saw_push_rules = true;
      if (!event_matches(account_data_filter, ad.type, r.user_id, "", {})) continue;
      account_data.push_back(object{{"type", ad.type}, {"content", core::parse_stored_json(ad.content)}});
    }
    // Clients expect their push rules in the first sync even if they never changed them.
    if (initial && !saw_push_rules && event_matches(account_data_filter, "m.push_rules", r.user_id, "", {})) {
      account_data.push_back(object{{"type", "m.push_rules"}, {"content", object{{"global", global_push_rules(c)}}}});
    }

    // ---- presence (presence_sync): contacts' m.presence since the token's presence serial.
    if (presence_) {
      PresenceSyncWindow window{std::nullopt, since_pos, now.position};
      if (since) {
        // A token from before presence was in tokens is taken as current; one from before a
        // restart (serial beyond ours) as "everything".
        uint64_t s = since->presence.value_or(*now.presence);
        window.since_serial = s > *now.presence ? 0 : s;
      }
      presence_events = presence_for_sync(c, *presence_, r.user_id, window, sub_filter(filter, {"presence"}));
    }
    // ---- end presence
  });

  if (dedupe_members) sent_members_.record(device_key, newly_sent_members);

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

  empty = join_rooms.empty() && invite_rooms.empty() && leave_rooms.empty() && knock_rooms.empty() && account_data.empty() &&
          to_device_events.empty() && presence_events.empty();
  object rooms{{"join", std::move(join_rooms)}, {"invite", std::move(invite_rooms)},
               {"leave", std::move(leave_rooms)}, {"knock", std::move(knock_rooms)}};
  // --- MSC2753 peeks (LegacyService): this device's peeked rooms ---
  if (peeks_) {
    std::optional<int64_t> peek_since;
    if (since) peek_since = since_pos;
    auto peek = peeks_(r, peek_since, now.position, timeline_limit, wake_keys);
    if (!peek.empty()) {
      empty = false;
      rooms["peek"] = std::move(peek);
    }
  }
  // --- end peeks ---
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
