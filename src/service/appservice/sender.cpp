#include "service/appservice/sender.hpp"

#include "core/clock.hpp"
#include "service/event_format.hpp"
#include "core/json_depth.hpp"
#include "core/metrics.hpp"
#include "storage/appservice_store.hpp"
#include "storage/device_inbox_store.hpp"
#include "storage/key_store.hpp"
#include "storage/room_store.hpp"
#include "storage/user_data_store.hpp"

#include <algorithm>
#include <cstdlib>
#include <boost/json/serialize.hpp>
#include <deque>
#include <limits>
#include <spdlog/spdlog.h>

namespace trestle::service {

namespace asdb = storage::appservices;
namespace ev = storage::events;

// A stored transaction, not yet accepted by the appservice.
struct AppServiceSender::Built {
  asdb::QueuedTxn txn;
  // Built ahead of a transaction still being sent: while it has not been sent it may be taken
  // back (un-stored), restoring the cursor to `before` and the ephemeral changes it took, so that
  // a backlog after a failure goes out in full transactions. Not when it took to-device messages
  // out of the inbox, nor when it was loaded at start-up.
  bool revocable = false;
  asdb::State before;
  std::set<std::string> typing_rooms, presence_users;
};

struct AppServiceSender::Worker {
  const AppService* as;
  std::thread builder, deliverer;
  std::mutex mu;
  std::condition_variable cv;       // the builder waits here
  std::condition_variable send_cv;  // the deliverer waits here
  bool wake = false;  // new events, ephemeral changes, an accepted or failed transaction
  bool poked = false;      // a poke since the last attempt began
  bool poke_retry = false; // the next attempt is a poke's: its failure does not double the delay
  bool stopping = true;     // no holding of the lease (not yet, or not any more), or stop()
  std::set<std::string> typing_rooms;  // rooms whose typing changed since the last transaction
  std::set<std::string> presence_users;  // users whose presence changed since the last transaction
  // Status, guarded by mu.
  int64_t backoff_ms = 0;
  int64_t delivered_txns = 0;
  int64_t delivered_events = 0;
  int64_t last_success_ts = 0;
  std::string last_error;   // the deliverer's: why the front is not accepted
  std::string build_error;  // the builder's: why the stream cannot be read into transactions
  int64_t skipped_events = 0;
  std::string last_skipped;
  // Delivery bookkeeping, guarded by mu. `ready` holds the stored transactions not yet accepted,
  // in txn id order: the deliverer sends the front (references to it stay valid: the builder only
  // pushes and pops at the back, and only the deliverer pops the front); the builder stores at
  // most kBuildAhead beyond the front, and none while the front is failing (and takes back the
  // one it built just before the failure), so that the backlog after an outage goes out in full
  // transactions. Accepted transactions are deleted from the queue by the
  // builder's next write, so that a transaction costs one database write, not two.
  bool loaded = false;  // the transactions stored by an earlier run are in `ready`
  std::deque<Built> ready;
  std::vector<int64_t> delivered;  // accepted, not yet deleted from the queue
  bool take_back = false;          // the front failed: take back what was built ahead of it
  // The builder's own: the cursor is cached (only the builder moves it), and which rooms hold a
  // joined member of the appservice's as of the cursor (see interested(); cleared whenever the
  // builder does not know that it has seen every event up to the cursor in order).
  std::optional<asdb::State> state;
  MemberInterest member_interest;
  // Guarded by mu: the builder thread or the write group hook is using `state` and
  // `member_interest` now (the other one waits, or leaves this appservice alone).
  bool building = false;
  // The hook's transaction, stored in the group's transaction, adopted once that commits.
  struct InGroup {
    asdb::State before, next;
    std::optional<asdb::QueuedTxn> built;
    std::vector<int64_t> accepted;
    bool took_to_device = false;
  };
  std::optional<InGroup> in_group;
  // The lease. The lease thread's own, except `epoch` and `threads` (guarded by mu): this process
  // holds it, and runs the two threads, from begin_holding() until the lease thread finds it gone.
  // `threads`: started and not yet finished; a new holding waits until the last one's are done.
  bool held = false;
  int64_t epoch = 0;
  int64_t held_until = 0;  // the lease's end as last written (this process's clock)
  int threads = 0;
};

AppServiceSender::AppServiceSender(const AppServiceRegistry& registry, storage::Database& db, Notifier& notifier,
                                   OutboundHttp http, std::string instance, std::string preferred,
                                   bool several_processes)
    : registry_(registry),
      db_(db),
      notifier_(notifier),
      http_(std::move(http)),
      instance_(std::move(instance)),
      preferred_((preferred.empty() ? std::string("main") : preferred) == instance_),
      several_processes_(several_processes) {
  // The test knob (kLeaseMs): a takeover test waits for a lease of a second, not of ten.
  if (const char* v = std::getenv("TRESTLE_AS_LEASE_MS"); v && *v) lease_ms_ = std::max<int64_t>(300, std::atoll(v));
}

AppServiceSender::~AppServiceSender() { stop(); }

void AppServiceSender::start() {
  for (const auto& as : registry_.all()) {
    if (!as->url) continue;  // url: null means the appservice receives nothing
    auto w = std::make_unique<Worker>();
    w->as = as.get();
    workers_.push_back(std::move(w));
  }
  notifier_.add_global_listener([this] {
    for (auto& w : workers_) {
      std::lock_guard lock(w->mu);
      w->wake = true;
      w->cv.notify_one();
    }
  });
  // A new appservice starts at the current stream position: it gets what happens from now on.
  int64_t now = db_.committed_position();
  // (Whichever process starts first: the others find the row.)
  for (auto& w : workers_) {
    db_.write([&](storage::Connection& c) { asdb::get_or_create_state(c, w->as->id, now); });
  }
  if (workers_.empty()) return;
  lease_round();  // what this process may send to now starts now
  group_hook_ = db_.add_group_hook({[this](storage::Connection& c, int64_t upto) { build_in_group(c, upto); },
                                    [this](bool committed) { group_done(committed); }});
  lease_thread_ = std::thread([this] { run_leases(); });
}

void AppServiceSender::lease_round() {
  const int64_t now = core::now_ms();
  struct Step {
    Worker* w;
    bool renew;  // else: an acquisition
    std::optional<int64_t> epoch;
    bool renewed = false;
  };
  std::vector<Step> steps;
  for (auto& wp : workers_) {
    Worker& w = *wp;
    if (w.held) {
      steps.push_back({&w, true, w.epoch});
      continue;
    }
    std::lock_guard lock(w.mu);
    if (w.threads == 0 && !w.building) steps.push_back({&w, false, std::nullopt});
  }
  if (steps.empty()) return;
  try {
    db_.write([&](storage::Connection& c) {
      for (auto& st : steps) {
        if (st.renew) {
          st.renewed = asdb::renew_lease(c, st.w->as->id, instance_, *st.epoch, now, lease_ms_);
        } else {
          st.epoch = asdb::try_acquire_lease(c, st.w->as->id, instance_, preferred_, now, lease_ms_);
        }
      }
    });
  } catch (const std::exception& e) {
    // The database is away. Once a lease may have expired, another process may send: stop here.
    spdlog::warn("appservice leases: cannot renew or take ({})", e.what());
    for (auto& st : steps) {
      if (!st.renew || now < st.w->held_until) continue;
      spdlog::warn("appservice {}: the sender's lease expired unrenewed; stopping here", st.w->as->id);
      st.w->held = false;
      stop_holding(*st.w);
    }
    return;
  }
  for (auto& st : steps) {
    Worker& w = *st.w;
    if (st.renew && st.renewed) {
      w.held_until = now + lease_ms_;
    } else if (st.renew) {
      spdlog::warn("appservice {}: another process holds the sender's lease now; stopping here", w.as->id);
      w.held = false;
      stop_holding(w);
    } else if (st.epoch) {
      spdlog::info("appservice {}: sending from {} (lease epoch {})", w.as->id, instance_, *st.epoch);
      begin_holding(w, *st.epoch, now + lease_ms_);
    }
  }
}

void AppServiceSender::begin_holding(Worker& w, int64_t epoch, int64_t until) {
  if (w.builder.joinable()) w.builder.join();  // the last holding's, done (threads == 0)
  if (w.deliverer.joinable()) w.deliverer.join();
  {
    // What the last holding knew may be stale: another process sent meanwhile. From the database.
    std::lock_guard lock(w.mu);
    w.ready.clear();
    w.delivered.clear();
    w.loaded = false;
    w.take_back = false;
    w.state.reset();
    w.member_interest.clear();
    w.backoff_ms = 0;
    w.poked = w.poke_retry = false;
    w.last_error.clear();
    w.build_error.clear();
    w.epoch = epoch;
    w.stopping = false;
    w.wake = true;
    w.threads = 2;
  }
  w.held = true;
  w.held_until = until;
  auto finished = [](Worker& w) {
    std::lock_guard lock(w.mu);
    --w.threads;
  };
  Worker* wp = &w;
  wp->builder = std::thread([this, wp, finished] {
    run_builder(*wp);
    finished(*wp);
  });
  wp->deliverer = std::thread([this, wp, finished] {
    run_deliverer(*wp);
    finished(*wp);
  });
}

void AppServiceSender::stop_holding(Worker& w) {
  {
    std::lock_guard lock(w.mu);
    w.stopping = true;
  }
  w.cv.notify_all();
  w.send_cv.notify_all();
}

int64_t AppServiceSender::epoch_of(Worker& w) {
  std::lock_guard lock(w.mu);
  return w.epoch;
}

void AppServiceSender::run_leases() {
  const auto period = std::chrono::milliseconds(lease_ms_ / 3);
  while (true) {
    {
      std::unique_lock lock(lease_mu_);
      if (lease_cv_.wait_for(lock, period, [&] { return lease_stopping_; })) return;
    }
    try {
      lease_round();
    } catch (const std::exception& e) {
      spdlog::error("appservice leases: {}", e.what());
    }
  }
}

void AppServiceSender::stop() {
  if (group_hook_) db_.remove_group_hook(group_hook_);  // waits for a running one
  group_hook_ = 0;
  {
    std::lock_guard lock(lease_mu_);
    lease_stopping_ = true;
  }
  lease_cv_.notify_all();
  if (lease_thread_.joinable()) lease_thread_.join();
  for (auto& w : workers_) stop_holding(*w);
  for (auto& w : workers_) {
    if (w->deliverer.joinable()) w->deliverer.join();
    if (w->builder.joinable()) w->builder.join();
    if (!w->held) continue;
    w->held = false;
    std::vector<int64_t> accepted;
    {
      std::lock_guard lock(w->mu);
      accepted = w->delivered;
    }
    try {
      // Best effort: a transaction left in the queue is only sent again. Then another process
      // may take the lease at once.
      db_.write([&](storage::Connection& c) {
        if (!asdb::holds_lease(c, w->as->id, instance_, w->epoch)) return;
        for (int64_t id : accepted) asdb::delete_txn(c, w->as->id, id);
        asdb::release_lease(c, w->as->id, instance_, w->epoch);
      });
    } catch (const std::exception& e) {
      spdlog::warn("appservice {}: cannot clear delivered transactions or release the lease: {}", w->as->id, e.what());
    }
  }
}

void AppServiceSender::poke(const std::string& appservice_id) {
  for (auto& w : workers_) {
    if (w->as->id != appservice_id) continue;
    std::lock_guard lock(w->mu);
    if (w->backoff_ms == 0) return;  // healthy: nothing to hurry
    w->poked = true;
    w->send_cv.notify_one();
  }
}

void AppServiceSender::on_typing(const std::string& room_id) {
  for (auto& w : workers_) {
    if (!w->as->receive_ephemeral) continue;
    std::lock_guard lock(w->mu);
    if (w->stopping) continue;  // another process sends to it (and hears of the change itself)
    w->typing_rooms.insert(room_id);
    w->wake = true;
    w->cv.notify_one();
  }
}

void AppServiceSender::on_presence(const std::string& user_id) {
  for (auto& w : workers_) {
    if (!w->as->receive_ephemeral) continue;
    std::lock_guard lock(w->mu);
    if (w->stopping) continue;
    w->presence_users.insert(user_id);
    w->wake = true;
    w->cv.notify_one();
  }
}

std::vector<DeliveryStatus> AppServiceSender::status() const {
  std::vector<DeliveryStatus> out;
  int64_t committed = db_.committed_position();
  for (const auto& as : registry_.all()) {
    DeliveryStatus s;
    s.appservice_id = as->id;
    db_.read([&](storage::Connection& c) {
      auto st = asdb::get_state(c, as->id);
      s.last_stream = st ? st->last_stream : committed;
      s.queued_txns = asdb::queued_count(c, as->id);
    });
    s.stream_lag = std::max<int64_t>(0, committed - s.last_stream);
    for (const auto& w : workers_) {
      if (w->as != as.get()) continue;
      std::lock_guard lock(w->mu);
      s.backoff_ms = w->backoff_ms;
      s.delivered_txns = w->delivered_txns;
      s.delivered_events = w->delivered_events;
      s.last_success_ts = w->last_success_ts;
      s.last_error = w->last_error.empty() ? w->build_error : w->last_error;
      s.skipped_events = w->skipped_events;
      s.last_skipped = w->last_skipped;
    }
    out.push_back(std::move(s));
  }
  return out;
}

bool AppServiceSender::interested(const AppService& as, const ev::StoredEvent& e, storage::Connection& c,
                                  std::map<std::string, bool>& room_cache, MemberInterest* members) const {
  // Events come in stream order: a membership change makes the room's cached interest stale.
  if (e.type == "m.room.member") {
    room_cache.erase(e.room_id);
    if (members) members->erase(e.room_id);
  }
  if (!e.sender.empty() && as.is_interested_in_user(e.sender)) return true;
  if (e.type == "m.room.member" && e.state_key && as.is_interested_in_user(*e.state_key)) return true;
  auto cached = room_cache.find(e.room_id);
  if (cached != room_cache.end()) return cached->second;
  bool room_interest = as.is_interested_in_room(e.room_id);
  if (!room_interest && !as.aliases.empty()) {
    for (const auto& alias : storage::rooms::aliases_of_room(c, e.room_id)) {
      if (as.is_interested_in_alias(alias)) {
        room_interest = true;
        break;
      }
    }
  }
  if (!room_interest) {
    // A room where one of the appservice's users is a member is the appservice's business: as of
    // the event (a backlog built after the user left still holds what happened before), or now for
    // ephemeral data (a probe without a stream position). For events, the answer is kept across
    // transactions until the room's next membership event passes (`members`): reading every
    // member of a big room once per transaction would cost more than the transaction.
    if (e.stream_ordering <= 0) members = nullptr;
    auto known = members ? members->find(e.room_id) : MemberInterest::iterator{};
    if (members && known != members->end()) {
      room_interest = known->second;
    } else {
      for (const auto& m : ev::members_of_room(c, e.room_id)) {
        if (!as.is_interested_in_user(m.user_id)) continue;
        bool changed_since = e.stream_ordering > 0 && m.stream_ordering > e.stream_ordering;
        auto membership = changed_since ? asdb::membership_as_of(c, m.event_id, e.stream_ordering) : m.membership;
        if (membership == "join") {
          room_interest = true;
          break;
        }
      }
      if (members) {
        if (members->size() >= kMaxMemberInterestRooms) members->clear();
        members->emplace(e.room_id, room_interest);
      }
    }
  }
  room_cache[e.room_id] = room_interest;
  return room_interest;
}

// A transaction being built: what it holds so far, and how far into the stream it reaches.
struct AppServiceSender::Draft {
  int64_t cursor = 0;
  boost::json::array events, ephemeral;
  std::vector<storage::device_inbox::Addressed> taken;  // MSC4203; deleted from the inbox with the enqueue
  boost::json::object otk_counts, fallback_types;       // MSC3202
  std::set<std::string> lists_changed, lists_left;       // MSC3202's device lists
  bool events_full() const { return static_cast<int64_t>(events.size()) >= kMaxEventsPerTxn; }
  bool to_device_full() const { return static_cast<int64_t>(taken.size()) >= kMaxToDevicePerTxn; }
};

// An event that cannot be read or formatted is skipped, never retried: it would stop delivery
// to this appservice for good (the same range fails every time, across restarts).
void AppServiceSender::skip(Worker& w, int64_t stream, const std::string& event_id, const std::string& why) {
  std::string what = "event " + event_id + " at stream position " + std::to_string(stream) + ": " + why;
  spdlog::error("appservice {}: skipping {}", w.as->id, what);
  std::lock_guard lock(w.mu);
  w.skipped_events++;
  w.last_skipped = std::move(what);
}

// Adds what happened in the stream range (cursor, to] to the transaction and moves the cursor to
// the end of what it took: to-device messages, events (`rows`, when given, are the range's events
// already read; otherwise they are read in pages), then the device lists, key counts and receipts
// of the same range. Every range of a transaction goes through here (the builder's snapshot and
// top-up, the write group's own events), so they cannot disagree on what a range holds.
void AppServiceSender::collect(Worker& w, Draft& d, storage::Connection& c, int64_t to,
                               const std::vector<ev::StreamRow>* rows, std::map<std::string, bool>& room_cache) {
  const AppService& as = *w.as;
  const int64_t from = d.cursor;
  if (as.receive_ephemeral) {
    // To-device messages for the appservice's users, in stream order. A full transaction's
    // worth ends the range here: the rest (and the events after it) go in the next one.
    int64_t after = from;
    while (after < to && !d.to_device_full()) {
      auto page = storage::device_inbox::in_stream_range(c, after, to, 500);
      if (page.empty()) break;
      for (auto& m : page) {
        after = m.message.stream_id;
        if (!as.takes_to_device_for(m.user_id)) continue;
        d.taken.push_back(std::move(m));
        if (d.to_device_full()) {
          to = after;
          break;
        }
      }
    }
  }
  std::vector<ev::StoredEvent> member_changes;  // for MSC3202's device lists
  auto take = [&](const ev::StreamRow& row) {
    d.cursor = row.stream_ordering;
    if (!row.event) {
      w.member_interest.clear();  // it may have been a membership change
      skip(w, row.stream_ordering, row.event_id, row.error);
      return;
    }
    const auto& e = *row.event;
    try {
      if (!interested(as, e, c, room_cache, &w.member_interest)) return;
      if (as.msc3202 && e.type == "m.room.member" && e.state_key) member_changes.push_back(e);
      // No unsigned.age: the body is stored and may be resent much later, when an age taken
      // now would be wrong. origin_server_ts says when the event happened.
      auto ce = client_event(e, c);
      ce["unsigned"].as_object().erase("age");
      d.events.push_back(std::move(ce));
    } catch (const boost::system::system_error& ex) {  // JSON of this or a related event
      skip(w, e.stream_ordering, e.event_id, std::string("cannot format: ") + ex.what());
    } catch (const std::logic_error& ex) {  // a stored event without the fields it needs
      skip(w, e.stream_ordering, e.event_id, std::string("cannot format: ") + ex.what());
    }
    // Anything else (the database failing) is not this event's fault: the range is retried.
  };
  if (rows) {
    for (const auto& row : *rows) {
      if (row.stream_ordering > to || d.events_full()) break;
      take(row);
    }
    if (!d.events_full()) d.cursor = to;
  } else {
    // Scan in pages until a transaction is full or the range is exhausted.
    while (d.cursor < to && !d.events_full()) {
      // Only as many as the transaction can still take: loading more would parse them for nothing.
      auto page = ev::stream_rows(c, d.cursor, to, kMaxEventsPerTxn - static_cast<int64_t>(d.events.size()));
      if (page.empty()) {
        d.cursor = to;
        break;
      }
      for (const auto& row : page) {
        if (d.events_full()) break;
        take(row);
      }
    }
  }
  // A transaction filled with events ends before some messages: they wait for the next one.
  std::erase_if(d.taken, [&](const auto& m) { return m.message.stream_id > d.cursor; });
  if (as.msc3202) {
    // Device lists and key counts changed in the same range; only what changed is read, so the
    // cost follows the changes, not the number of bridged users.
    auto shares_with_us = [&](const std::string& u) {
      if (as.is_interested_in_user(u)) return true;
      for (const auto& other : storage::keys::users_sharing_a_room(c, u)) {
        if (as.is_interested_in_user(other)) return true;
      }
      return false;
    };
    for (const auto& u : storage::keys::device_lists_changed_between(c, from, d.cursor)) {
      if (shares_with_us(u)) d.lists_changed.insert(u);
    }
    // Memberships: a user who now shares a room with the appservice's users is "changed" (the
    // bridge must fetch their keys); one who shares none any more is "left".
    for (const auto& e : member_changes) {
      std::string membership;
      if (const auto* content = e.pdu.if_contains("content"); content && content->is_object()) {
        if (const auto* m = content->as_object().if_contains("membership"); m && m->is_string()) {
          membership = std::string(m->as_string());
        }
      }
      std::vector<std::string> affected;
      if (as.is_interested_in_user(*e.state_key)) {
        for (const auto& m : ev::members_of_room(c, e.room_id)) {
          if (m.membership == "join" && !as.is_interested_in_user(m.user_id)) affected.push_back(m.user_id);
        }
      } else {
        affected.push_back(*e.state_key);
      }
      for (const auto& u : affected) {
        if (shares_with_us(u)) {
          if (membership == "join") d.lists_changed.insert(u);
        } else {
          d.lists_left.insert(u);
        }
      }
    }
    for (const auto& [user, device] : storage::keys::key_counts_changed_between(c, from, d.cursor)) {
      if (!as.is_interested_in_user(user)) continue;
      boost::json::object counts{{"signed_curve25519", 0}};
      for (const auto& [alg, n] : storage::keys::count_one_time_keys(c, user, device)) counts[alg] = n;
      boost::json::array types;
      for (const auto& alg : storage::keys::unused_fallback_algorithms(c, user, device)) {
        types.push_back(boost::json::value(alg));
      }
      auto per_device = [&](boost::json::object& o) -> boost::json::object& {
        auto& v = o[user];
        if (!v.is_object()) v.emplace_object();
        return v.as_object();
      };
      per_device(d.otk_counts)[device] = std::move(counts);
      per_device(d.fallback_types)[device] = std::move(types);
    }
  }
  if (!as.receive_ephemeral) return;
  // Receipts in the same stream range as the events, grouped the way /sync groups them.
  for (const auto& r : storage::user_data::all_receipts_between(c, from, d.cursor)) {
    // Private read receipts only for the appservice's own users (spec: "Pushing ephemeral data").
    if (r.receipt_type == "m.read.private" && !as.is_interested_in_user(r.user_id)) continue;
    ev::StoredEvent probe;  // interest in a room, without an event: only the room rules apply
    probe.room_id = r.room_id;
    if (!interested(as, probe, c, room_cache)) continue;
    boost::json::object data{{"ts", r.ts}};
    if (!r.thread_id.empty()) data["thread_id"] = r.thread_id;
    boost::json::object content{
        {r.event_id, boost::json::object{{r.receipt_type, boost::json::object{{r.user_id, data}}}}}};
    d.ephemeral.push_back(boost::json::object{{"type", "m.receipt"}, {"room_id", r.room_id}, {"content", content}});
  }
}

std::optional<asdb::QueuedTxn> AppServiceSender::store(Worker& w, Draft& d, storage::Connection& c,
                                                       const asdb::State& state, const std::vector<int64_t>& accepted,
                                                       asdb::State& next) {
  const AppService& as = *w.as;
  for (int64_t id : accepted) asdb::delete_txn(c, as.id, id);
  next = asdb::State{d.cursor, state.next_txn_id};
  boost::json::object device_lists;
  for (const auto& u : d.lists_changed) d.lists_left.erase(u);
  if (!d.lists_changed.empty() || !d.lists_left.empty()) {
    boost::json::array ch, lf;
    for (const auto& u : d.lists_changed) ch.push_back(boost::json::value(u));
    for (const auto& u : d.lists_left) lf.push_back(boost::json::value(u));
    device_lists = boost::json::object{{"changed", std::move(ch)}, {"left", std::move(lf)}};
  }
  boost::json::array to_device;  // MSC4203
  for (const auto& m : d.taken) {
    boost::json::object o{{"type", m.message.type},
                          {"sender", m.message.sender},
                          {"to_user_id", m.user_id},
                          {"to_device_id", m.device_id}};
    try {
      o["content"] = core::parse_stored_json(m.message.content);
    } catch (const std::exception&) {
      o["content"] = boost::json::object{};
    }
    to_device.push_back(std::move(o));
  }
  std::optional<asdb::QueuedTxn> built;
  if (!d.events.empty() || !d.ephemeral.empty() || !to_device.empty() || !device_lists.empty() ||
      !d.otk_counts.empty()) {
    int64_t n_events = static_cast<int64_t>(d.events.size());
    boost::json::object body{{"events", std::move(d.events)}};
    if (!d.ephemeral.empty()) {
      // Stable name and MSC2409's unstable one: deployed bridges read either.
      body["ephemeral"] = d.ephemeral;
      body["de.sorunome.msc2409.ephemeral"] = std::move(d.ephemeral);
    }
    if (!to_device.empty()) body["de.sorunome.msc2409.to_device"] = std::move(to_device);
    if (!device_lists.empty()) body["org.matrix.msc3202.device_lists"] = std::move(device_lists);
    if (!d.otk_counts.empty()) {
      body["org.matrix.msc3202.device_one_time_keys_count"] = std::move(d.otk_counts);
      body["org.matrix.msc3202.device_unused_fallback_key_types"] = std::move(d.fallback_types);
    }
    // In the stored transaction now: delivered from there (exactly once), not by /sync.
    for (const auto& m : d.taken) storage::device_inbox::delete_one(c, m.user_id, m.device_id, m.message.stream_id);
    built.emplace(asdb::QueuedTxn{state.next_txn_id, boost::json::serialize(body), n_events, core::now_ms()});
    asdb::enqueue(c, as.id, *built);
    next.next_txn_id = state.next_txn_id + 1;  // ids never repeat for this appservice
  }
  asdb::set_state(c, as.id, next);
  return built;
}

// Accepted transactions deleted from the queue by a write that committed (w.mu held).
static void forget(std::vector<int64_t>& delivered, const std::vector<int64_t>& deleted) {
  std::erase_if(delivered, [&](int64_t id) { return std::find(deleted.begin(), deleted.end(), id) != deleted.end(); });
}

void AppServiceSender::adopt(Worker& w, const asdb::State& before, const asdb::State& next,
                             std::optional<asdb::QueuedTxn> built, const std::vector<int64_t>& accepted,
                             bool took_to_device, std::set<std::string> typing_rooms,
                             std::set<std::string> presence_users) {
  std::lock_guard lock(w.mu);
  w.state = next;
  forget(w.delivered, accepted);
  if (!built) return;
  Built b;
  b.txn = std::move(*built);
  b.revocable = !w.ready.empty() && !took_to_device;
  if (b.revocable) {
    b.before = before;
    b.typing_rooms = std::move(typing_rooms);
    b.presence_users = std::move(presence_users);
  }
  w.ready.push_back(std::move(b));
  w.send_cv.notify_one();
}

bool AppServiceSender::queue_next(Worker& w) {
  const AppService& as = *w.as;
  int64_t upto = db_.committed_position();
  // The cursor is only ever moved by the builder, so reading it outside the write is safe.
  if (!w.state) w.state = *db_.read([&](storage::Connection& c) { return asdb::get_state(c, as.id); });
  const asdb::State state = *w.state;
  std::set<std::string> typing_rooms, presence_users;
  std::vector<int64_t> accepted;  // deleted from the queue by this write
  int64_t epoch;
  {
    std::lock_guard lock(w.mu);
    typing_rooms.swap(w.typing_rooms);
    presence_users.swap(w.presence_users);
    accepted = w.delivered;
    epoch = w.epoch;
  }
  if (state.last_stream >= upto && typing_rooms.empty() && presence_users.empty()) return false;

  Draft d;
  d.cursor = state.last_stream;
  // First what is committed now, from a read snapshot, outside the writer lock.
  db_.read([&](storage::Connection& c) {
    std::map<std::string, bool> room_cache;
    auto room_interesting = [&](const std::string& room_id) {
      ev::StoredEvent probe;  // interest in a room, without an event: only the room rules apply
      probe.room_id = room_id;
      return interested(as, probe, c, room_cache);
    };
    collect(w, d, c, upto, nullptr, room_cache);
    if (!as.receive_ephemeral) return;
    for (const auto& room_id : typing_rooms) {
      if (!typing_source_ || !room_interesting(room_id)) continue;
      boost::json::array ids;
      for (auto& u : typing_source_(room_id)) ids.push_back(boost::json::value(u));
      d.ephemeral.push_back(boost::json::object{
          {"type", "m.typing"}, {"room_id", room_id}, {"content", boost::json::object{{"user_ids", ids}}}});
    }
    // Presence of the appservice's users and of their contacts (users sharing a room with one).
    for (const auto& user : presence_users) {
      if (!presence_source_) break;
      bool contact = as.is_interested_in_user(user);
      if (!contact) {
        for (const auto& other : storage::keys::users_sharing_a_room(c, user)) {
          if (as.is_interested_in_user(other)) {
            contact = true;
            break;
          }
        }
      }
      if (!contact) continue;
      d.ephemeral.push_back(
          boost::json::object{{"type", "m.presence"}, {"sender", user}, {"content", presence_source_(user)}});
    }
  });
  std::optional<asdb::QueuedTxn> built;
  asdb::State next;
  db_.write([&](storage::Connection& c) {
    asdb::check_lease(c, as.id, instance_, epoch);  // or store nothing
    // Then the events committed since the snapshot, up to the writer's own view (groups committed
    // while this write waited for its turn, and the writes before it in its own group, which commit
    // with it or not at all): under load this is what keeps a transaction from always being one
    // write behind. Only when the snapshot's range was taken in full.
    if (d.cursor == upto && !d.events_full() && !d.to_device_full()) {
      auto rows = ev::stream_rows(c, d.cursor, std::numeric_limits<int64_t>::max(),
                                  kMaxEventsPerTxn - static_cast<int64_t>(d.events.size()));
      if (!rows.empty()) {
        std::map<std::string, bool> room_cache;
        collect(w, d, c, rows.back().stream_ordering, &rows, room_cache);
      }
    }
    built = store(w, d, c, state, accepted, next);
  });
  // Committed (a failed write throws above and leaves all of this as it was).
  bool queued = built.has_value();
  adopt(w, state, next, std::move(built), accepted, !d.taken.empty(), std::move(typing_rooms),
        std::move(presence_users));
  return queued;
}

// The write group hook: an appservice that is caught up, healthy and has room for a transaction
// gets the group's events in a transaction stored by the same commit, handed to its deliverer as
// soon as that commit is done: no wait for a write of its own behind the next group, no thread in
// between. Any other appservice (behind, failing, with typing or presence waiting) is left to its
// builder, which does the same from a snapshot.
void AppServiceSender::build_in_group(storage::Connection& c, int64_t upto) {
  const int64_t before_group = db_.committed_position();  // still the previous group's end
  for (auto& wp : workers_) {
    Worker& w = *wp;
    std::vector<int64_t> accepted;
    int64_t epoch;
    {
      std::lock_guard lock(w.mu);
      if (!w.loaded || w.building || w.stopping || w.take_back || w.backoff_ms != 0 || w.ready.size() > kBuildAhead ||
          !w.typing_rooms.empty() || !w.presence_users.empty() || !w.build_error.empty()) {
        continue;
      }
      w.building = true;  // the builder waits until group_done()
      accepted = w.delivered;
      epoch = w.epoch;
    }
    in_group_.push_back(&w);
    if (!w.state || w.state->last_stream < before_group) continue;  // behind: its builder catches up
    // The fence, without failing the group.
    if (several_processes_ && !asdb::holds_lease(c, w.as->id, instance_, epoch)) {
      stop_holding(w);
      continue;
    }
    const asdb::State state = *w.state;
    Draft d;
    d.cursor = state.last_stream;
    std::map<std::string, bool> room_cache;
    collect(w, d, c, upto, nullptr, room_cache);
    Worker::InGroup g{state, {}, {}, accepted, !d.taken.empty()};
    g.built = store(w, d, c, state, accepted, g.next);
    w.in_group = std::move(g);
  }
}

void AppServiceSender::group_done(bool committed) {
  for (Worker* w : in_group_) {
    if (w->in_group) {
      if (committed) {
        auto& g = *w->in_group;
        adopt(*w, g.before, g.next, std::move(g.built), g.accepted, g.took_to_device, {}, {});
      } else {
        w->member_interest.clear();  // it saw events that are not there
      }
      w->in_group.reset();
    }
    std::lock_guard lock(w->mu);
    w->building = false;
    w->cv.notify_one();
  }
  in_group_.clear();
}

void AppServiceSender::take_back_ahead(Worker& w) {
  std::optional<Built> b;
  std::vector<int64_t> accepted;
  int64_t epoch;
  {
    std::lock_guard lock(w.mu);
    epoch = w.epoch;
    w.take_back = false;
    // Never the front (it may be on the wire), and only while the front is failing.
    if (w.ready.size() < 2 || !w.ready.back().revocable || w.backoff_ms == 0) return;
    b.emplace(std::move(w.ready.back()));
    w.ready.pop_back();
    accepted = w.delivered;
  }
  try {
    db_.write([&](storage::Connection& c) {
      asdb::check_lease(c, w.as->id, instance_, epoch);
      for (int64_t id : accepted) asdb::delete_txn(c, w.as->id, id);
      asdb::delete_txn(c, w.as->id, b->txn.txn_id);
      asdb::set_state(c, w.as->id, b->before);  // its txn id was never sent: it is used again
    });
  } catch (...) {
    std::lock_guard lock(w.mu);
    w.ready.push_back(std::move(*b));  // still stored: sent in its turn
    throw;
  }
  w.member_interest.clear();  // as of a later position than the cursor now
  std::lock_guard lock(w.mu);
  w.state = b->before;
  forget(w.delivered, accepted);
  w.typing_rooms.merge(b->typing_rooms);
  w.presence_users.merge(b->presence_users);
}

void AppServiceSender::forget_delivered(Worker& w) {
  std::vector<int64_t> accepted;
  {
    std::lock_guard lock(w.mu);
    accepted = w.delivered;
  }
  if (accepted.empty()) return;
  const int64_t epoch = epoch_of(w);
  db_.write([&](storage::Connection& c) {
    asdb::check_lease(c, w.as->id, instance_, epoch);
    for (int64_t id : accepted) asdb::delete_txn(c, w.as->id, id);
  });
  std::lock_guard lock(w.mu);
  forget(w.delivered, accepted);
}

// Synapse's names (synapse/appservice/api.py), plus the time a transaction took to be answered.
static void record_transaction_metrics(const std::string& service, bool ok, int64_t events, double seconds) {
  auto& r = metrics::registry();
  static auto& sent = r.counter("synapse_appservice_api_sent_transactions", "Number of /transactions/ requests sent", {"service"});
  static auto& failed = r.counter("synapse_appservice_api_failed_transactions",
                                  "Number of /transactions/ requests that failed to send", {"service"});
  static auto& sent_events = r.counter("synapse_appservice_api_sent_events", "Number of events sent to the AS", {"service"});
  static auto& latency = r.histogram("trestle_appservice_transaction_seconds",
                                     "Time from sending a transaction to its answer (or failure)", {"service"});
  latency.labels({service}).observe(seconds);
  if (ok) {
    sent.labels({service}).inc();
    sent_events.labels({service}).inc(static_cast<double>(events));
  } else {
    failed.labels({service}).inc();
  }
}

void AppServiceSender::deliver_front(Worker& w) {
  const AppService& as = *w.as;
  const asdb::QueuedTxn* txn;
  bool poke_retry;
  int64_t attempt_start = core::steady_ms();
  {
    // A poke from here on (even during this attempt) ends the wait before the next one.
    std::lock_guard lock(w.mu);
    txn = &w.ready.front().txn;  // stays put: only this thread pops the front
    w.poked = false;
    poke_retry = w.poke_retry;
    w.poke_retry = false;
  }
  auto resp = http_("PUT", *as.url, "/_matrix/app/v1/transactions/" + std::to_string(txn->txn_id),
                    {{"Authorization", "Bearer " + as.hs_token}}, txn->body, kRequestTimeoutMs);
  record_transaction_metrics(as.id, resp.status >= 200 && resp.status < 300, txn->event_count,
                             static_cast<double>(core::steady_ms() - attempt_start) / 1000.0);
  if (resp.status >= 200 && resp.status < 300) {
    std::lock_guard lock(w.mu);
    // Deleted from the queue by the builder's next write (a restart before it resends the same
    // txn id, which the appservice acknowledges again: the spec's idempotent /transactions).
    w.delivered.push_back(txn->txn_id);
    if (w.backoff_ms) spdlog::info("appservice {}: delivering again", as.id);
    w.backoff_ms = 0;
    w.delivered_txns++;
    w.delivered_events += txn->event_count;
    w.last_success_ts = core::now_ms();
    w.last_error.clear();
    w.ready.pop_front();
    w.wake = true;  // room for the builder to store the next one
    w.cv.notify_one();
    return;
  }
  std::string why = resp.status ? "HTTP " + std::to_string(resp.status) : resp.error;
  std::unique_lock lock(w.mu);
  // A failed retry that a poke started keeps the delay: only the timer's own retries double it.
  if (!poke_retry || !w.backoff_ms) {
    w.backoff_ms = w.backoff_ms ? std::min(w.backoff_ms * 2, kMaxBackoffMs) : kInitialBackoffMs;
  }
  w.last_error = "transaction " + std::to_string(txn->txn_id) + ": " + why;
  spdlog::warn("appservice {}: transaction {} failed ({}); retrying in {} ms", as.id, txn->txn_id, why, w.backoff_ms);
  if (w.ready.size() >= 2 && w.ready.back().revocable) {
    w.take_back = true;  // the backlog behind a failure goes out in full transactions
    w.wake = true;
    w.cv.notify_one();
  }
  // Wait out the backoff unless the appservice shows signs of life or we stop. A poke ends the
  // wait, not the backoff: backoff_ms stays until the appservice accepts a transaction, so the
  // status endpoint reports it even right after the appservice's own request.
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(w.backoff_ms);
  w.send_cv.wait_until(lock, until, [&] { return w.stopping || w.poked; });
  if (w.poked && !w.stopping) {
    // Attempts at most every kMinPokeRetryMs, so a bridge's burst of requests cannot make us hammer it.
    auto earliest = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(std::max<int64_t>(0, attempt_start + kMinPokeRetryMs - core::steady_ms()));
    w.send_cv.wait_until(lock, std::min(until, earliest), [&] { return w.stopping; });
    w.poke_retry = std::chrono::steady_clock::now() < until;  // the timer's own retry when it came anyway
  }
  w.poked = false;
}

void AppServiceSender::run_deliverer(Worker& w) {
  while (true) {
    {
      std::unique_lock lock(w.mu);
      w.send_cv.wait(lock, [&] { return w.stopping || (w.loaded && !w.ready.empty()); });
      if (w.stopping) break;
    }
    try {
      deliver_front(w);
    } catch (const std::exception& e) {  // the transport reports failures; this is a bug's way out
      spdlog::error("appservice {}: delivery error: {}", w.as->id, e.what());
      std::unique_lock lock(w.mu);
      w.last_error = std::string("delivery error: ") + e.what();
      w.send_cv.wait_for(lock, std::chrono::seconds(1), [&] { return w.stopping; });
    }
  }
}

void AppServiceSender::run_builder(Worker& w) {
  // Transactions stored by an earlier run (or before a restart) go first, in txn id order.
  while (true) {
    try {
      auto stored = db_.read([&](storage::Connection& c) { return asdb::queued_txns(c, w.as->id); });
      std::lock_guard lock(w.mu);
      for (auto& t : stored) w.ready.push_back(Built{std::move(t), false, {}, {}, {}});
      w.loaded = true;
      w.send_cv.notify_one();
      break;
    } catch (const std::exception& e) {
      spdlog::error("appservice {}: cannot read the queued transactions: {}", w.as->id, e.what());
      std::unique_lock lock(w.mu);
      w.build_error = std::string("delivery error: ") + e.what();
      w.cv.wait_for(lock, std::chrono::seconds(1), [&] { return w.stopping; });
      if (w.stopping) return;
    }
  }
  while (true) {
    bool take_back;
    {
      std::unique_lock lock(w.mu);
      w.cv.wait(lock, [&] { return w.stopping || !w.building; });  // the write group hook's turn
      w.wake = false;
      if (w.stopping) break;
      take_back = w.take_back;
      // One stored ahead of the one being sent, unless that one is failing.
      bool room = w.ready.empty() || (w.ready.size() <= kBuildAhead && w.backoff_ms == 0);
      bool behind = !w.state || w.state->last_stream < db_.committed_position() || !w.typing_rooms.empty() ||
                    !w.presence_users.empty();
      if (!take_back && !(room && behind)) {
        // Nothing to build. Accepted transactions leave the queue with the next write that stores
        // one (usually a write group's, at no cost of its own); when none comes for a while, here.
        bool forget_due = !w.delivered.empty();
        bool woken = w.cv.wait_for(lock, forget_due ? std::chrono::milliseconds(kForgetDelayMs) : std::chrono::seconds(5),
                                   [&] { return w.stopping || w.wake; });
        if (woken || !forget_due) continue;
        lock.unlock();
        try {
          forget_delivered(w);
        } catch (const asdb::LeaseLost& e) {
          spdlog::warn("{}; stopping here", e.what());
          stop_holding(w);
        } catch (const std::exception& e) {
          spdlog::warn("appservice {}: cannot clear delivered transactions: {}", w.as->id, e.what());
        }
        continue;
      }
      w.building = true;
    }
    std::string error;
    try {
      if (take_back) {
        take_back_ahead(w);
      } else {
        queue_next(w);  // the loop's top sees whether more is left
        // The stream reads again: no error of the builder stands in the way any more.
        std::lock_guard lock(w.mu);
        w.build_error.clear();
      }
    } catch (const asdb::LeaseLost& e) {
      spdlog::warn("{}; stopping here", e.what());
      stop_holding(w);
    } catch (const std::exception& e) {
      spdlog::error("appservice {}: delivery error: {}", w.as->id, e.what());
      w.member_interest.clear();  // it may have seen events the cursor did not move past
      error = std::string("delivery error: ") + e.what();
    }
    std::unique_lock lock(w.mu);
    w.building = false;
    if (!error.empty()) {
      w.build_error = std::move(error);  // the status endpoint shows what stops us
      w.cv.wait_for(lock, std::chrono::seconds(1), [&] { return w.stopping; });
    }
  }
}

}  // namespace trestle::service
