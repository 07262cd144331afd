#include "service/unread_counts.hpp"

#include "service/event_format.hpp"
#include "service/push/push_rules.hpp"
#include "storage/event_store.hpp"

namespace trestle::service {

namespace ev = storage::events;

namespace {

boost::json::object content_of(const ev::StoredEvent& e) {
  auto* c = e.pdu.if_contains("content");
  return c && c->is_object() ? c->as_object() : boost::json::object{};
}

int64_t power_level_of(const boost::json::object& pl, const std::string& user_id) {
  if (auto* users = pl.if_contains("users"); users && users->is_object()) {
    if (auto* lvl = users->as_object().if_contains(user_id); lvl && lvl->is_int64()) return lvl->as_int64();
  }
  if (auto* d = pl.if_contains("users_default"); d && d->is_int64()) return d->as_int64();
  return 0;
}

}  // namespace

ThreadedUnreadCounts UnreadCounter::count(storage::Connection& c, const std::string& user_id,
                                          const std::string& room_id, const std::string& member_event_id,
                                          const boost::json::object& push_rules, int64_t upto) {
  auto read = threads::read_positions(c, room_id, user_id);
  const std::string key = user_id + "|" + room_id;
  Entry entry;
  bool cached = false;
  {
    std::lock_guard lock(mu_);
    auto it = cache_.find(key);
    if (it != cache_.end() && it->second.read == read && it->second.counted_upto <= upto && it->second.counted_upto > 0) {
      entry = it->second;
      cached = true;
    }
  }
  // Every thread without its own receipt starts at the unthreaded one, so counting starts there.
  if (!cached) entry = Entry{read, read.unthreaded, {}};

  auto unread = ev::room_events_forwards(c, room_id, entry.counted_upto, upto, kMaxScan);
  if (!unread.empty()) {
    push::EvaluationContext ctx;
    ctx.user_id = user_id;
    ctx.room_member_count = ev::joined_member_count(c, room_id);
    if (auto pl_id = ev::current_state_event_id(c, room_id, "m.room.power_levels", "")) {
      if (auto pl = ev::get_event(c, *pl_id)) ctx.power_levels_content = content_of(*pl);
    }
    if (auto me = ev::get_event(c, member_event_id)) {
      auto content = content_of(*me);
      if (auto* dn = content.if_contains("displayname"); dn && dn->is_string()) ctx.display_name = dn->as_string();
    }
    for (const auto& e : unread) {
      entry.counted_upto = e.stream_ordering;
      if (e.redacted_by && e.sender != user_id) continue;
      const std::string thread = threads::thread_of(c, e);
      if (e.sender == user_id) {
        // The user's own message: everything before it in its thread counts as read (in the
        // main timeline, everything before it in the room).
        if (thread == threads::kMain) entry.counts.clear();
        else entry.counts.erase(thread);
        continue;
      }
      if (e.stream_ordering <= entry.read.effective(thread)) continue;
      ctx.sender_power_level = power_level_of(ctx.power_levels_content, e.sender);
      auto d = push::evaluate(push_rules, client_event(e, c, {}), ctx);
      if (!d.notify) continue;
      auto& counts = entry.counts[thread];
      ++counts.notifications;
      if (d.highlight) ++counts.highlights;
    }
  }
  if (static_cast<int64_t>(unread.size()) < kMaxScan) entry.counted_upto = upto;
  {
    std::lock_guard lock(mu_);
    if (cache_.size() > 200000) cache_.clear();  // bound memory; entries are cheap to recount
    cache_[key] = entry;
  }
  ThreadedUnreadCounts out;
  for (const auto& [thread, counts] : entry.counts) {
    out.total.notifications += counts.notifications;
    out.total.highlights += counts.highlights;
    if (thread == threads::kMain) out.main = counts;
    else if (counts.notifications > 0 || counts.highlights > 0) out.threads[thread] = counts;
  }
  return out;
}

}  // namespace trestle::service
