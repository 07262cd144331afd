#include "service/unread_counts.hpp"

#include "service/event_format.hpp"
#include "service/push/push_rules.hpp"
#include "service/room_creators.hpp"
#include "storage/event_store.hpp"
#include "storage/user_data_store.hpp"

#include <algorithm>
#include <climits>

namespace trestle::service {

namespace ev = storage::events;
namespace ud = storage::user_data;

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

UnreadCounts UnreadCounter::count(storage::Connection& c, const std::string& user_id, const std::string& room_id,
                                  const std::string& member_event_id, const boost::json::object& push_rules,
                                  int64_t upto) {
  int64_t read_upto = 0;
  for (const char* type : {"m.read", "m.read.private"}) {
    if (auto rc = ud::get_receipt(c, room_id, type, user_id)) {
      if (auto e = ev::get_event(c, rc->event_id)) read_upto = std::max(read_upto, e->stream_ordering);
    }
  }
  const std::string key = user_id + "|" + room_id;
  Entry entry;
  {
    std::lock_guard lock(mu_);
    auto it = cache_.find(key);
    if (it != cache_.end() && it->second.read_upto == read_upto && it->second.counted_upto <= upto) entry = it->second;
  }
  if (entry.read_upto != read_upto || entry.counted_upto == 0) entry = Entry{read_upto, read_upto, {}};

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
    const auto creators = privileged_creators(c, room_id);  // v12: infinite power
    for (const auto& e : unread) {
      entry.counted_upto = e.stream_ordering;
      if (e.sender == user_id) {
        entry.counts = {};  // the user's own message: everything before it counts as read
        continue;
      }
      if (e.redacted_by) continue;
      ctx.sender_power_level = power_level_of(ctx.power_levels_content, e.sender);
      if (std::find(creators.begin(), creators.end(), e.sender) != creators.end()) ctx.sender_power_level = LLONG_MAX;
      auto d = push::evaluate(push_rules, client_event(e, c, {}), ctx);
      if (d.notify) ++entry.counts.notifications;
      if (d.notify && d.highlight) ++entry.counts.highlights;
    }
  }
  if (static_cast<int64_t>(unread.size()) < kMaxScan) entry.counted_upto = upto;
  {
    std::lock_guard lock(mu_);
    if (cache_.size() > 200000) cache_.clear();  // bound memory; entries are cheap to recount
    cache_[key] = entry;
  }
  return entry.counts;
}

}  // namespace trestle::service
