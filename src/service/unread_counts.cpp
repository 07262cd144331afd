#include "service/unread_counts.hpp"

#include "service/event_format.hpp"
#include "service/push/push_rules.hpp"
#include "service/room_creators.hpp"
#include "storage/event_store.hpp"
#include "storage/push_store.hpp"

#include <algorithm>
#include <climits>

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

size_t UnreadCounter::Entry::size() const {
  size_t n = 0;
  for (const auto& [thread, events] : unread) n += events.size();
  return n;
}

namespace {

// Whether `now` is `before` moved forward (never back): each read position at least as far.
bool moved_forward(const threads::ReadPositions& before, const threads::ReadPositions& now) {
  if (now.unthreaded < before.unthreaded) return false;
  for (const auto& [thread, pos] : before.thread) {
    if (now.effective(thread) < pos) return false;
  }
  return true;
}

}  // namespace

ThreadedUnreadCounts UnreadCounter::count(storage::Connection& c, const std::string& user_id,
                                          const std::string& room_id, const std::string& member_event_id,
                                          const std::function<const boost::json::object&()>& push_rules,
                                          int64_t upto) {
  auto read = threads::read_positions(c, room_id, user_id);
  const std::string key = user_id + "|" + room_id;
  Entry entry;
  bool cached = false;
  {
    std::lock_guard lock(mu_);
    auto it = cache_.find(key);
    if (it != cache_.end() && it->second.counted_upto <= upto && it->second.counted_upto > 0 &&
        moved_forward(it->second.read, read)) {
      entry = it->second;
      cached = true;
    }
  }
  if (cached && !(entry.read == read)) {
    // The receipts moved: what they now cover is read.
    for (auto it = entry.unread.begin(); it != entry.unread.end();) {
      const int64_t pos = read.effective(it->first);
      auto& events = it->second;
      auto first_unread = std::find_if(events.begin(), events.end(),
                                       [pos](const Unread& u) { return u.stream_ordering > pos; });
      events.erase(events.begin(), first_unread);
      it = events.empty() ? entry.unread.erase(it) : std::next(it);
    }
    entry.read = read;
    // Counting resumes where it stopped, but never before the unthreaded receipt.
    entry.counted_upto = std::max(entry.counted_upto, read.unthreaded);
  }
  // Every thread without its own receipt starts at the unthreaded one, so counting starts there.
  if (!cached) entry = Entry{read, read.unthreaded, {}};

  // Evaluates the events in (entry.counted_upto, until] with the user's rules, at most kMaxScan;
  // false when it stopped at the bound.
  std::optional<push::EvaluationContext> ctx;
  std::vector<std::string> creators;
  std::optional<std::vector<storage::push::JoinedRange>> joined;  // as the stored rows: joined members only
  auto joined_at = [&](int64_t s) {
    if (!joined) joined = storage::push::joined_ranges(c, room_id, user_id);
    return std::any_of(joined->begin(), joined->end(), [s](const auto& r) { return r.after < s && s < r.before; });
  };
  auto evaluate_until = [&](int64_t until) {
    if (entry.counted_upto >= until) return true;
    auto unread = ev::room_events_forwards(c, room_id, entry.counted_upto, until, kMaxScan);
    if (!unread.empty() && !ctx) {
      ctx.emplace();
      ctx->user_id = user_id;
      ctx->room_member_count = ev::joined_member_count(c, room_id);
      if (auto pl_id = ev::current_state_event_id(c, room_id, "m.room.power_levels", "")) {
        if (auto pl = ev::get_event(c, *pl_id)) ctx->power_levels_content = content_of(*pl);
      }
      if (auto me = ev::get_event(c, member_event_id)) {
        auto content = content_of(*me);
        if (auto* dn = content.if_contains("displayname"); dn && dn->is_string()) ctx->display_name = dn->as_string();
      }
      creators = privileged_creators(c, room_id);  // v12: infinite power
    }
    for (const auto& e : unread) {
      entry.counted_upto = e.stream_ordering;
      if (e.redacted_by && e.sender != user_id) continue;
      const std::string thread = threads::thread_of(c, e);
      if (e.sender == user_id) {
        // The user's own message: everything before it in its thread counts as read (in the
        // main timeline, everything before it in the room).
        if (thread == threads::kMain) entry.unread.clear();
        else entry.unread.erase(thread);
        continue;
      }
      if (e.stream_ordering <= entry.read.effective(thread) || !joined_at(e.stream_ordering)) continue;
      ctx->sender_power_level = power_level_of(ctx->power_levels_content, e.sender);
      if (std::find(creators.begin(), creators.end(), e.sender) != creators.end()) ctx->sender_power_level = LLONG_MAX;
      auto d = push::evaluate(push_rules(), client_event(e, c, {}), *ctx);
      if (!d.notify) continue;
      entry.unread[thread].push_back(Unread{e.stream_ordering, d.highlight});
    }
    if (static_cast<int64_t>(unread.size()) >= kMaxScan) return false;
    entry.counted_upto = until;
    return true;
  };
  // The events the push evaluator passed have its decisions stored (storage/push_store): those
  // are read, not evaluated again. Only the others (before its rows start, or not evaluated yet)
  // are evaluated here.
  std::optional<storage::push::RowCoverage> cov;
  if (!rows_apply_ || rows_apply_(user_id)) cov = storage::push::row_coverage(c);
  bool complete = true;
  if (cov && entry.counted_upto < std::min(upto, cov->rows_from)) complete = evaluate_until(std::min(upto, cov->rows_from));
  if (complete && cov) complete = count_stored(c, user_id, room_id, entry, std::min(upto, cov->last_stream));
  if (complete) evaluate_until(upto);

  ThreadedUnreadCounts out;
  for (const auto& [thread, events] : entry.unread) {
    UnreadCounts counts;
    counts.notifications = static_cast<int64_t>(events.size());
    for (const auto& u : events) counts.highlights += u.highlight ? 1 : 0;
    out.total.notifications += counts.notifications;
    out.total.highlights += counts.highlights;
    if (thread == threads::kMain) out.main = counts;
    else if (counts.notifications > 0) out.threads[thread] = counts;
  }
  {
    std::lock_guard lock(mu_);
    // Bound memory; entries are cheap to recount.
    if (cache_.size() > 200000 || cached_unread_ > kMaxCachedUnread) {
      cache_.clear();
      cached_unread_ = 0;
    }
    auto& slot = cache_[key];
    cached_unread_ -= std::min(cached_unread_, slot.size());
    cached_unread_ += entry.size();
    slot = std::move(entry);
  }
  return out;
}

bool UnreadCounter::count_stored(storage::Connection& c, const std::string& user_id, const std::string& room_id,
                                 Entry& entry, int64_t upto) {
  if (entry.counted_upto >= upto) return true;
  const auto stored = storage::push::stored_decisions(c, user_id, room_id, entry.counted_upto, upto, kMaxScan);
  // The room's row applies while the user was joined (and not to their own events).
  const auto joined = storage::push::joined_ranges(c, room_id, user_id);
  auto joined_at = [&](int64_t s) {
    return std::any_of(joined.begin(), joined.end(), [s](const auto& r) { return r.after < s && s < r.before; });
  };
  for (const auto& d : stored.rows) {
    if (d.room_row && d.sender == user_id) {
      // As in count(): the user's own message reads its thread (in main: the whole room). Only
      // their notifying events have rows: an own reaction or edit does not read the room here.
      if (d.room_thread == threads::kMain) entry.unread.clear();
      else entry.unread.erase(d.room_thread);
      continue;
    }
    bool notify = false, highlight = false;
    const std::string* thread = nullptr;
    if (d.own_row) {
      notify = d.own_notify;
      highlight = d.own_highlight;
      thread = &d.own_thread;
    } else if (d.room_row && joined_at(d.stream_ordering)) {
      notify = true;
      highlight = d.room_highlight;
      thread = &d.room_thread;
    }
    if (!notify || d.stream_ordering <= entry.read.effective(*thread)) continue;
    entry.unread[*thread].push_back(Unread{d.stream_ordering, highlight});
  }
  entry.counted_upto = stored.upto;
  return stored.upto >= upto;
}

}  // namespace trestle::service
