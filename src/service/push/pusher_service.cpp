#include "service/push/pusher_service.hpp"

#include "core/canonical_json.hpp"
#include "core/clock.hpp"
#include "core/error.hpp"
#include "service/event_format.hpp"
#include "service/push/push_rules.hpp"
#include "service/room_creators.hpp"
#include "service/threads.hpp"
#include "storage/event_store.hpp"
#include "storage/push_store.hpp"
#include "storage/thread_store.hpp"
#include "storage/user_data_store.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <algorithm>
#include <climits>
#include <deque>
#include <exception>
#include <map>
#include <set>
#include <spdlog/spdlog.h>

namespace trestle::service {

namespace ev = storage::events;
namespace ps = storage::push;
namespace ud = storage::user_data;
using boost::json::array;
using boost::json::object;
using boost::json::value;

namespace {

object parse_object(const std::string& text) {
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  return !ec && v.is_object() ? v.as_object() : object{};
}

object content_of(const ev::StoredEvent& e) {
  auto* c = e.pdu.if_contains("content");
  return c && c->is_object() ? c->as_object() : object{};
}

std::string string_at(const object& o, const char* key) {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

std::optional<object> state_content(storage::Connection& c, const std::string& room_id, const std::string& type,
                                    const std::string& state_key) {
  auto id = ev::current_state_event_id(c, room_id, type, state_key);
  if (!id) return std::nullopt;
  auto e = ev::get_event(c, *id);
  if (!e) return std::nullopt;
  return content_of(*e);
}

int64_t power_level_of(const object& pl, const std::string& user_id) {
  if (auto* users = pl.if_contains("users"); users && users->is_object()) {
    if (auto* lvl = users->as_object().if_contains(user_id); lvl && lvl->is_int64()) return lvl->as_int64();
  }
  if (auto* d = pl.if_contains("users_default"); d && d->is_int64()) return d->as_int64();
  return 0;
}

// The room's notification rows apply to a user unless an appservice owns the user exclusively
// (bridged users: Synapse skips push rules for them too).
ps::NotificationQuery query_for(storage::Connection& c, const std::string& user_id, const std::string& room_id,
                                bool room_rows) {
  ps::NotificationQuery q;
  q.user_id = user_id;
  q.room_id = room_id;
  if (room_rows) q.joined = ps::joined_ranges(c, room_id, user_id);
  return q;
}

// The badge: the user's unread notifications over the rooms they are joined to or invited to. A
// notification is read when it is at or before the later of the user's unthreaded receipt and
// their receipt in its thread.
int64_t unread_count(storage::Connection& c, const std::string& user_id, bool room_rows) {
  int64_t n = 0;
  for (const auto& m : ev::memberships_of_user(c, user_id)) {
    if (m.membership != "join" && m.membership != "invite") continue;
    auto q = query_for(c, user_id, m.room_id, room_rows);
    const auto read = threads::read_positions(c, m.room_id, user_id);
    q.after = read.unthreaded;
    n += ps::count_notifications(c, q);
    for (const auto& [thread, pos] : read.thread) {
      if (pos <= read.unthreaded) continue;
      auto in_thread = q;
      in_thread.thread_id = thread;
      in_thread.upto = pos;
      n -= ps::count_notifications(c, in_thread);
    }
  }
  return n;
}

// An http pusher's gateway URL and the `devices` entry of its notifications; nullopt for other
// kinds or a pusher without a URL. `id_only`: its format is event_id_only.
struct GatewayTarget {
  std::string url;
  object device;
  bool id_only = false;
};
std::optional<GatewayTarget> gateway_target(const ps::Pusher& p, object tweaks) {
  auto stored = parse_object(p.data_json);
  if (string_at(stored, "kind") != "http") return std::nullopt;
  auto* data_v = stored.if_contains("data");
  object data = data_v && data_v->is_object() ? data_v->as_object() : object{};
  GatewayTarget t;
  t.url = string_at(data, "url");
  if (t.url.empty()) return std::nullopt;
  t.id_only = string_at(data, "format") == "event_id_only";
  data.erase("url");
  data.erase("format");
  t.device = object{{"app_id", p.app_id},
                    {"pushkey", p.pushkey},
                    {"pushkey_ts", p.created_ts / 1000},
                    {"data", std::move(data)},
                    {"tweaks", std::move(tweaks)}};
  return t;
}

object tweaks_of(const array& actions) {
  object tweaks;
  for (const auto& a : actions) {
    if (!a.is_object()) continue;
    const auto& o = a.as_object();
    auto* name = o.if_contains("set_tweak");
    if (!name || !name->is_string()) continue;
    auto* v = o.if_contains("value");
    tweaks[name->as_string()] = v ? *v : value(name->as_string() == "highlight" ? value(true) : value(nullptr));
  }
  return tweaks;
}

}  // namespace

PushService::PushService(storage::Database& db, OutboundHttp http, const AppServiceRegistry& appservices)
    : db_(db), http_(std::move(http)), appservices_(appservices) {
  // New events are evaluated in the transaction that writes them (one commit, not two); the
  // evaluator thread catches up after a start, a failed evaluation, or a batch too large for it.
  group_hook_ = db_.add_group_hook({[this](storage::Connection& c, int64_t upto) { evaluate_in_group(c, upto); },
                                    [this](bool committed) { group_done(committed); }});
}

PushService::~PushService() {
  stop();
  db_.remove_group_hook(group_hook_);
}

void PushService::start() {
  db_.write([&](storage::Connection& c) {
    if (!ps::cursor(c)) ps::set_cursor(c, db_.committed_position());  // pushers start from now
  });
  inline_enabled_ = true;
  evaluator_ = std::thread([this] { run_evaluator(); });
  for (int i = 0; i < kSenderThreads; ++i) senders_.emplace_back([this] { run_sender(); });
}

void PushService::stop() {
  inline_enabled_ = false;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  events_cv_.notify_all();
  queue_cv_.notify_all();
  if (evaluator_.joinable()) evaluator_.join();
  for (auto& t : senders_) {
    if (t.joinable()) t.join();
  }
  senders_.clear();
}

void PushService::poke() {
  {
    std::lock_guard lock(mu_);
    events_poked_ = true;
  }
  events_cv_.notify_all();
}

void PushService::run_evaluator() {
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      events_poked_ = false;
    }
    bool more = false;
    try {
      more = evaluate_batch();
    } catch (const std::exception& e) {
      spdlog::error("push: evaluating events failed: {}", e.what());
      room_facts_stale_ = true;  // possibly read inside the rolled-back transaction
      std::lock_guard lock(badge_mu_);
      badges_.clear();  // counted inside the rolled-back transaction
    }
    std::unique_lock lock(mu_);
    // No pause to gather larger batches: pushers are read when an event is evaluated, so a pause
    // would also push events sent just before a pusher was set.
    if (!more) events_cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_ || events_poked_; });
  }
}

namespace {

// A decision with its actions' JSON.
struct Decided {
  push::PushDecision decision;
  std::string actions_json;
  bool same_as(const Decided& o) const {
    return decision.notify == o.decision.notify && decision.highlight == o.decision.highlight &&
           actions_json == o.actions_json;
  }
};
Decided decided(push::PushDecision d) {
  std::string json = boost::json::serialize(d.actions);
  return {std::move(d), std::move(json)};
}

// A user ID that no event names (not the sender, not in m.mentions, not an invite's state_key):
// whom the default rules are evaluated for to get the decision they share.
std::string nobody_in(const std::set<std::string>& named) {
  std::string id = "@\x01";
  while (named.count(id)) id += '\x01';
  return id;
}

}  // namespace

// Each event gets one decision for every member on the default rules whom it does not single out
// (one row in push_room_notifications when it notifies), and its own decision only for the members
// who need one: those it singles out (a mention, the invitee), those with their own rules, and
// those with a pusher (who are pushed). An own row is written only where that decision differs
// from what the room's row implies. So the work per event grows with those members, not with the
// room: a 1,000-member room on the default rules costs one evaluation and one row.
bool PushService::evaluate_batch() {
  const int64_t upto = db_.committed_position();
  bool more = false, queued = false;
  db_.write([&](storage::Connection& c) { more = evaluate_range(c, upto, queued, false); });
  if (queued) {
    std::lock_guard lock(mu_);
    queue_poked_ = true;
    queue_cv_.notify_all();
  }
  return more;
}

void PushService::evaluate_in_group(storage::Connection& c, int64_t upto) {
  if (!inline_enabled_.load()) return;
  group_more_ = evaluate_range(c, upto, group_queued_, true);
}

void PushService::group_done(bool committed) {
  const bool queued = std::exchange(group_queued_, false), more = std::exchange(group_more_, false);
  if (!committed) {
    room_facts_stale_ = true;  // possibly read inside the rolled-back transaction
    std::lock_guard lock(badge_mu_);
    badges_.clear();  // counted inside the rolled-back transaction
  }
  std::lock_guard lock(mu_);
  if (!committed || more) {  // the evaluator thread takes what is left
    events_poked_ = true;
    events_cv_.notify_all();
  }
  if (committed && queued) {
    queue_poked_ = true;
    queue_cv_.notify_all();
  }
}

bool PushService::evaluate_range(storage::Connection& c, int64_t upto, bool& queued, bool in_group) {
  // A failure undoes the cursor's move, so the events will be evaluated again: membership changes
  // already applied to the kept facts would be applied twice. The next evaluation (possibly the
  // group hook right after a failed evaluator write in the same group) reads them afresh.
  struct StaleOnThrow {
    std::atomic<bool>& stale;
    const int uncaught = std::uncaught_exceptions();
    ~StaleOnThrow() {
      if (std::uncaught_exceptions() > uncaught) stale = true;
    }
  } stale_on_throw{room_facts_stale_};
  bool more = false;
  {
    int64_t from = ps::cursor(c).value_or(upto);
    if (from >= upto) return false;
    auto events = ev::events_in_stream_range(c, from, upto, kEventsPerBatch);
    more = static_cast<int64_t>(events.size()) >= kEventsPerBatch;
    const int64_t reached = more ? events.back().stream_ordering : upto;
    // Everything below reads the room's current state, which is the same for the whole batch
    // (one transaction; the evaluator writes no state): read once per room, not per event.
    std::map<std::string, std::optional<object>> stored_rules;  // nullopt: the defaults
    auto custom_rules_of = [&](const std::string& user) -> const std::optional<object>& {
      auto it = stored_rules.find(user);
      if (it != stored_rules.end()) return it->second;
      auto stored = ud::get_push_rules(c, user);
      return stored_rules[user] = stored ? std::optional<object>(parse_object(*stored)) : std::nullopt;
    };
    // The facts read in this transaction hold for its whole batch (they include every event of
    // it); kept facts follow the room's later state events (follow_state_event).
    const uint64_t generation = ps::rules_or_pushers_generation();
    if (room_facts_stale_.exchange(false) || generation != room_facts_generation_ ||
        room_facts_.size() >= kMaxCachedRooms) {
      room_facts_.clear();
      room_facts_generation_ = generation;
    }
    std::set<std::string> read_now;  // rooms whose facts this batch read
    auto facts_of = [&](const std::string& room_id) -> RoomFacts& {
      auto it = room_facts_.find(room_id);
      if (it != room_facts_.end()) return it->second;
      read_now.insert(room_id);
      RoomFacts f;
      for (auto& user : ps::joined_users_with_rules_or_pushers(c, room_id)) {
        if (!owned_by_appservice(user)) f.attention.insert(std::move(user));
      }
      f.ctx.room_member_count = ev::joined_member_count(c, room_id);
      f.ctx.power_levels_content = state_content(c, room_id, "m.room.power_levels", "").value_or(object{});
      f.creators = privileged_creators(c, room_id);
      f.read_at = in_group ? upto : 0;
      return room_facts_[room_id] = std::move(f);
    };
    const int64_t now = core::now_ms();
    for (const auto& e : events) {
      // Before the redacted_by skip: a redacted member or power levels event changed the state.
      if ((e.state_key || e.type == "m.room.redaction") && !read_now.count(e.room_id)) {
        if (auto it = room_facts_.find(e.room_id); it != room_facts_.end() && !follow_state_event(c, it->second, e)) {
          room_facts_.erase(it);
        }
      }
      if (e.redacted_by) continue;
      if (e.type == "m.room.redaction") {
        // The redacted event notifies no one any more (unread counts read the rows).
        auto* top = e.pdu.if_contains("redacts");
        const auto content = content_of(e);
        auto* in_content = content.if_contains("redacts");
        const auto* target = top && top->is_string() ? top : in_content;
        if (target && target->is_string()) {
          auto h = ev::get_event_header(c, std::string(target->as_string()));
          if (h && h->room_id == e.room_id) ps::delete_room_notification(c, h->stream_ordering);
        }
      }
      RoomFacts& room = facts_of(e.room_id);
      auto content = content_of(e);
      const bool member_event = e.type == "m.room.member" && e.state_key;
      const bool invite = member_event && string_at(content, "membership") == "invite";
      if (member_event) forget_badge(*e.state_key);  // the badge counts the rooms they are in

      object client = client_event(e, c, {});
      push::EvaluationContext ctx = room.ctx;
      ctx.sender_power_level = power_level_of(ctx.power_levels_content, e.sender);
      if (std::find(room.creators.begin(), room.creators.end(), e.sender) != room.creators.end()) {
        ctx.sender_power_level = LLONG_MAX;  // v12: infinite power
      }
      // The users the default rules single out: the mentioned, and for an invite its invitee
      // (users_singled_out_by_default_rules answers nullopt for any state event whose membership
      // globs "invite"; its state_key is the one user invite_for_me can match).
      auto singled_out = push::users_singled_out_by_default_rules(client);
      std::set<std::string> singled = singled_out ? std::move(*singled_out) : std::set<std::string>{};
      if (!singled_out && e.state_key) singled.insert(*e.state_key);

      ctx.user_id = nobody_in(singled);
      // Almost always the first such ID: its ruleset is built once, not for every event.
      static const std::string first_nobody = nobody_in({});
      static const object first_nobody_rules = push::default_ruleset(first_nobody);
      std::optional<object> other_rules;
      const object& shared_rules = ctx.user_id == first_nobody ? first_nobody_rules
                                                               : other_rules.emplace(push::default_ruleset(ctx.user_id));
      const Decided shared = decided(push::evaluate(shared_rules, client, ctx));
      std::optional<std::string> thread;
      auto thread_of_event = [&]() -> const std::string& {
        if (!thread) thread = threads::thread_of(c, e);
        return *thread;
      };
      if (shared.decision.notify) {
        ps::add_room_notification(c, {e.stream_ordering, e.room_id, e.event_id, e.sender, thread_of_event(),
                                      shared.actions_json, shared.decision.highlight, now});
      }

      // The members who need their own decision.
      std::set<std::string> own_users = room.attention;
      for (const auto& user : singled) {
        if (room.attention.count(user) || owned_by_appservice(user)) continue;
        auto m = ev::get_membership(c, e.room_id, user);
        if (m && (m->membership == "join" || (invite && user == *e.state_key))) own_users.insert(user);
      }
      own_users.erase(e.sender);
      std::deque<Decided> decisions;  // the rows point into it
      std::vector<ps::UserNotification> rows;
      std::vector<std::pair<const std::string*, const Decided*>> notified;
      for (const auto& user : own_users) {
        const auto& custom = custom_rules_of(user);
        const Decided* d = &shared;
        if (custom || singled.count(user)) {
          ctx.user_id = user;
          // Only a user's own rules can ask for the display name (contains_display_name).
          ctx.display_name = custom ? string_at(state_content(c, e.room_id, "m.room.member", user).value_or(object{}),
                                                "displayname")
                                    : std::string();
          d = &decisions.emplace_back(decided(push::evaluate(custom ? *custom : push::default_ruleset(user), client, ctx)));
        }
        // The room's row applies to members joined at the event; an invitee is not one.
        const bool room_row_applies = shared.decision.notify && !(invite && user == *e.state_key);
        const bool differs = room_row_applies ? !d->same_as(shared) : d->decision.notify;
        if (differs) rows.push_back({user, d->actions_json, d->decision.highlight, d->decision.notify});
        if (d->decision.notify) notified.emplace_back(&user, d);
      }
      if (!rows.empty()) ps::add_notifications(c, e.room_id, e.event_id, e.stream_ordering, now, thread_of_event(), rows);

      std::optional<object> room_info;  // name, alias, sender's display name: read once per event
      for (const auto& [user_ptr, decided_ptr] : notified) {
        const std::string& user = *user_ptr;
        const push::PushDecision& d = decided_ptr->decision;
        auto pushers = ps::pushers_of_user(c, user);
        if (pushers.empty()) continue;
        if (!room_info) {
          room_info = object{};
          auto name = string_at(state_content(c, e.room_id, "m.room.name", "").value_or(object{}), "name");
          auto alias = string_at(state_content(c, e.room_id, "m.room.canonical_alias", "").value_or(object{}), "alias");
          auto sender_name =
              string_at(state_content(c, e.room_id, "m.room.member", e.sender).value_or(object{}), "displayname");
          if (!name.empty()) (*room_info)["room_name"] = name;
          else if (!alias.empty()) (*room_info)["room_name"] = alias;
          if (!alias.empty()) (*room_info)["room_alias"] = alias;
          if (!sender_name.empty()) (*room_info)["sender_display_name"] = sender_name;
        }
        const bool is_target = member_event && *e.state_key == user;
        const bool high = e.type == "m.room.message" || e.type == "m.room.encrypted" || (is_target && invite);
        object counts{{"unread", badge_after_notification(c, user)}};
        for (const auto& p : pushers) {
          auto target = gateway_target(p, tweaks_of(d.actions));
          if (!target) continue;
          object n{{"event_id", e.event_id},
                   {"room_id", e.room_id},
                   {"counts", counts},
                   {"devices", array{std::move(target->device)}},
                   {"prio", high ? "high" : "low"}};
          if (!target->id_only) {
            n["id"] = e.event_id;  // Synapse's older name for event_id, which SyTest reads
            n["type"] = e.type;
            n["sender"] = e.sender;
            n["content"] = content;
            n["user_is_target"] = is_target;
            if (member_event) n["membership"] = string_at(content, "membership");
            for (const auto& [k, v] : *room_info) n[k] = v;
          }
          ps::enqueue(c, {0, user, p.app_id, p.pushkey,
                          boost::json::serialize(object{{"url", target->url}, {"notification", std::move(n)}}), 0, 0});
          queued = true;
        }
      }
    }
    ps::set_cursor(c, reached);
  }
  return more;
}

bool PushService::follow_state_event(storage::Connection& c, RoomFacts& facts, const ev::StoredEvent& e) {
  if (facts.read_at && e.stream_ordering <= facts.read_at) return true;  // read with it
  if (!facts.read_at || e.type != "m.room.member" || !e.state_key || e.redacted_by) return false;
  // The writer applies every state event to the current state: the member's membership went from
  // the replaced event's to this one's (redaction keeps `membership`).
  auto membership_in = [](const ev::StoredEvent& m) { return string_at(content_of(m), "membership"); };
  std::string before;
  if (e.replaces_state) {
    auto replaced = ev::get_event(c, *e.replaces_state);
    if (!replaced) return false;
    before = membership_in(*replaced);
  }
  const bool was_joined = before == "join", joined = membership_in(e) == "join";
  if (was_joined == joined) return true;
  facts.ctx.room_member_count += joined ? 1 : -1;
  const std::string& user = *e.state_key;
  if (!joined) facts.attention.erase(user);
  else if (!owned_by_appservice(user) && ps::has_rules_or_pusher(c, user)) facts.attention.insert(user);
  return true;
}

bool PushService::owned_by_appservice(const std::string& user_id) const {
  return appservices_.exclusive_owner_of_user(user_id) != nullptr;
}

void PushService::run_sender() {
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      queue_poked_ = false;
    }
    int64_t next_due = INT64_MAX;
    bool sent = false;
    try {
      sent = send_due(next_due);
    } catch (const std::exception& e) {
      spdlog::error("push: sending failed: {}", e.what());
    }
    if (sent) continue;
    int64_t wait_ms = std::clamp<int64_t>(next_due - core::now_ms(), 10, 1000);
    std::unique_lock lock(mu_);
    queue_cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [this] { return stopping_ || queue_poked_; });
  }
}

// One due request of a pusher no other thread is serving, if there is one.
bool PushService::send_due(int64_t& next_due_ms) {
  auto heads = db_.read([&](storage::Connection& c) { return ps::queue_heads(c, 100); });
  for (const auto& h : heads) {
    const int64_t now = core::now_ms();
    if (h.next_try_ts > now) {
      next_due_ms = std::min(next_due_ms, h.next_try_ts);
      continue;
    }
    const std::string key = h.user_id + "|" + h.app_id + "|" + h.pushkey;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return false;
      if (!in_flight_.insert(key).second) continue;
    }
    try {
      send_one(h, next_due_ms);
    } catch (...) {
      std::lock_guard lock(mu_);
      in_flight_.erase(key);
      throw;
    }
    std::lock_guard lock(mu_);
    in_flight_.erase(key);
    return true;
  }
  return false;
}

void PushService::send_one(const ps::QueuedPush& h, int64_t& next_due_ms) {
  // The heads were read before this thread took the pusher: another thread may have sent this
  // one and dequeued it since. Sending it again would push the same notification twice.
  const auto [queued, pusher_exists] = db_.read([&](storage::Connection& c) {
    return std::pair{ps::is_queued(c, h.id), ps::pusher_exists(c, h.user_id, h.app_id, h.pushkey)};
  });
  if (!queued) return;
  if (!pusher_exists) {
    db_.write([&](storage::Connection& c) { ps::delete_pusher(c, h.user_id, h.app_id, h.pushkey); });  // its queue
    return;
  }
  auto stored = parse_object(h.body);
  std::string url = string_at(stored, "url");
  object request{{"notification", stored.contains("notification") ? stored.at("notification") : value(object{})}};
  auto res = http_("POST", url, "", {{"Content-Type", "application/json"}}, boost::json::serialize(request),
                   kRequestTimeoutMs);
  if (res.status >= 200 && res.status < 300) {
    std::vector<std::string> rejected;
    auto answer = parse_object(res.body);
    if (auto* r = answer.if_contains("rejected"); r && r->is_array()) {
      for (const auto& k : r->as_array()) {
        if (k.is_string()) rejected.emplace_back(k.as_string());
      }
    }
    db_.write([&](storage::Connection& c) {
      ps::dequeue(c, h.id);
      for (const auto& key : rejected) {
        spdlog::info("push: gateway rejected a pushkey of app {}: pusher removed", h.app_id);
        ps::delete_pusher(c, h.user_id, h.app_id, key);
      }
    });
  } else if (res.status >= 400 && res.status < 500 && res.status != 429) {
    // The gateway refuses this request for good: retrying the same body cannot help.
    spdlog::warn("push: gateway for app {} refused a notification with HTTP {}: dropped", h.app_id, res.status);
    db_.write([&](storage::Connection& c) { ps::dequeue(c, h.id); });
  } else if (h.attempts + 1 >= kMaxAttempts) {
    spdlog::warn("push: gateway for app {} failed {} times ({}): notification dropped", h.app_id, kMaxAttempts,
                 res.status ? "HTTP " + std::to_string(res.status) : res.error);
    db_.write([&](storage::Connection& c) { ps::dequeue(c, h.id); });
  } else {
    int64_t attempts = h.attempts + 1;
    int64_t backoff = kInitialBackoffMs << std::min<int64_t>(attempts - 1, 20);
    backoff = std::min(backoff, kMaxBackoffMs);
    spdlog::warn("push: gateway for app {} failed ({}), retry {} in {} ms", h.app_id,
                 res.status ? "HTTP " + std::to_string(res.status) : res.error, attempts, backoff);
    db_.write([&](storage::Connection& c) { ps::reschedule(c, h.id, attempts, core::now_ms() + backoff); });
    next_due_ms = std::min(next_due_ms, core::now_ms() + backoff);
  }
}

object PushService::notifications(const std::string& user_id, const std::optional<std::string>& from, int64_t limit,
                                  bool only_highlight) {
  int64_t before = INT64_MAX;
  if (from && !from->empty()) {
    if (from->size() > 18 || !std::all_of(from->begin(), from->end(), ::isdigit)) {
      throw MatrixError::invalid_param("Invalid 'from' token");
    }
    before = std::stoll(*from);
  }
  limit = std::clamp<int64_t>(limit, 1, 1000);
  const bool room_rows = !owned_by_appservice(user_id);
  return db_.read([&](storage::Connection& c) {
    // Newest first over every room the user has a membership in: each room's newest `limit`,
    // merged. The token is the stream position of the last one handed out.
    std::vector<ps::Notification> rows;
    for (const auto& m : ev::memberships_of_user(c, user_id)) {
      auto q = query_for(c, user_id, m.room_id, room_rows);
      q.upto = before - 1;
      q.only_highlight = only_highlight;
      auto in_room = ps::notifications(c, q, limit);
      rows.insert(rows.end(), std::make_move_iterator(in_room.begin()), std::make_move_iterator(in_room.end()));
    }
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.stream_ordering > b.stream_ordering; });
    if (static_cast<int64_t>(rows.size()) > limit) rows.resize(static_cast<size_t>(limit));
    array out;
    std::map<std::string, threads::ReadPositions> read_pos;
    for (const auto& n : rows) {
      auto e = ev::get_event(c, n.event_id);
      if (!e) continue;
      auto it = read_pos.find(n.room_id);
      if (it == read_pos.end()) it = read_pos.emplace(n.room_id, threads::read_positions(c, n.room_id, user_id)).first;
      boost::system::error_code ec;
      auto actions = boost::json::parse(n.actions_json, ec);
      out.push_back(object{{"actions", ec ? value(array{}) : actions},
                           {"event", client_event(*e, c, {})},
                           {"profile_tag", nullptr},
                           {"read", n.stream_ordering <= it->second.effective(n.thread_id)},
                           {"room_id", n.room_id},
                           {"ts", n.ts}});
    }
    object body{{"notifications", std::move(out)}};
    if (static_cast<int64_t>(rows.size()) >= limit) body["next_token"] = std::to_string(rows.back().stream_ordering);
    return body;
  });
}

void PushService::pusher_set(const std::string& user_id, const std::string& app_id, const std::string& pushkey,
                             const std::optional<std::string>& device_id) {
  db_.write([&](storage::Connection& c) { ps::set_pusher_origin(c, user_id, app_id, pushkey, device_id, core::now_ms()); });
}

int64_t PushService::badge_after_notification(storage::Connection& c, const std::string& user_id) {
  {
    std::lock_guard lock(badge_mu_);
    auto it = badges_.find(user_id);
    if (it != badges_.end()) return ++it->second;
  }
  // Counted in the evaluator's transaction: the rows just written are in it.
  const int64_t n = unread_count(c, user_id, true);
  std::lock_guard lock(badge_mu_);
  if (badges_.size() >= kMaxCachedBadges) badges_.clear();
  badges_[user_id] = n;
  return n;
}

void PushService::forget_badge(const std::string& user_id) {
  std::lock_guard lock(badge_mu_);
  badges_.erase(user_id);
}

void PushService::badge_changed(const std::string& user_id) {
  // Called after the receipt committed: the evaluator counts afresh from then on.
  forget_badge(user_id);
  // Most users have no pusher: a read decides that without a write transaction per receipt.
  if (db_.read([&](storage::Connection& c) { return ps::pushers_of_user(c, user_id).empty(); })) return;
  bool queued = false;
  db_.write([&](storage::Connection& c) {
    auto pushers = ps::pushers_of_user(c, user_id);
    const object counts{{"unread", unread_count(c, user_id, !owned_by_appservice(user_id))}};
    for (const auto& p : pushers) {
      auto target = gateway_target(p, object{});
      if (!target) continue;
      // Synapse's badge update: no event, empty id and sender, null type.
      object n{{"id", ""}, {"type", nullptr}, {"sender", ""}, {"counts", counts},
               {"devices", array{std::move(target->device)}}};
      ps::enqueue(c, {0, user_id, p.app_id, p.pushkey,
                      boost::json::serialize(object{{"url", target->url}, {"notification", std::move(n)}}), 0, 0});
      queued = true;
    }
  });
  if (queued) {
    std::lock_guard lock(mu_);
    queue_poked_ = true;
    queue_cv_.notify_all();
  }
}

void PushService::password_changed(const std::string& user_id, const std::optional<std::string>& device_id) {
  db_.write([&](storage::Connection& c) { ps::delete_pushers_of_other_devices(c, user_id, device_id.value_or("")); });
}

}  // namespace trestle::service
