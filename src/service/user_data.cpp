#include "service/user_data.hpp"

#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/json_depth.hpp"
#include "service/filter.hpp"
#include "service/push/push_rules.hpp"
#include "service/rooms/rooms.hpp"
#include "service/threads.hpp"
#include "storage/event_store.hpp"
#include "storage/thread_store.hpp"
#include "storage/user_data_store.hpp"

#include <boost/json/serialize.hpp>

namespace trestle::service {

namespace ud = storage::user_data;
using boost::json::array;
using boost::json::object;

void TypingTracker::set(const std::string& room_id, const std::string& user_id, bool typing, int64_t timeout_ms) {
  if (forward_) {
    forward_(room_id, user_id, typing, timeout_ms);  // a worker: the main process decides
    return;
  }
  RoomState state;
  {
    std::lock_guard lock(mu_);
    auto& room = expiry_[room_id];
    bool was = room.count(user_id) > 0;
    if (typing) room[user_id] = core::steady_ms() + std::clamp<int64_t>(timeout_ms, 0, 120000);
    else room.erase(user_id);
    if (was == typing && typing) return;  // only a refresh: nobody needs waking
    room_serial_[room_id] = ++serial_;
    if (publish_) state = room_state_locked(room_id, core::steady_ms());
  }
  changed({state.room_id.empty() ? RoomState{room_id, {}, 0, 0} : state});
}

void TypingTracker::changed(const std::vector<RoomState>& rooms) {
  for (const auto& r : rooms) {
    // The state goes out before the wake-up, so a woken worker's sync sees it.
    if (publish_) publish_(r);
    notifier_.notify({r.room_id});
    if (listener_) listener_(r.room_id);
  }
}

TypingTracker::RoomState TypingTracker::room_state_locked(const std::string& room_id, int64_t now) const {
  RoomState r;
  r.room_id = room_id;
  if (auto it = expiry_.find(room_id); it != expiry_.end()) {
    for (const auto& [user, at] : it->second) {
      if (at > now) r.users.emplace_back(user, at - now);
    }
  }
  auto s = room_serial_.find(room_id);
  r.room_serial = s == room_serial_.end() ? 0 : s->second;
  r.serial = serial_;
  return r;
}

void TypingTracker::apply(const RoomState& state) {
  {
    std::lock_guard lock(mu_);
    int64_t now = core::steady_ms();
    auto& room = expiry_[state.room_id];
    room.clear();
    for (const auto& [user, ms] : state.users) room[user] = now + ms;
    if (room.empty()) expiry_.erase(state.room_id);
    room_serial_[state.room_id] = state.room_serial;
    serial_ = std::max(serial_, state.serial);
  }
  notifier_.notify_from_peer({state.room_id});
  if (listener_) listener_(state.room_id);
}

void TypingTracker::expire_due() {
  std::vector<RoomState> rooms;
  {
    std::lock_guard lock(mu_);
    int64_t now = core::steady_ms();
    for (auto it = expiry_.begin(); it != expiry_.end();) {
      bool expired = std::erase_if(it->second, [&](const auto& u) { return u.second <= now; }) > 0;
      if (expired) {
        room_serial_[it->first] = ++serial_;
        rooms.push_back(room_state_locked(it->first, now));
      }
      it = it->second.empty() ? expiry_.erase(it) : std::next(it);
    }
  }
  changed(rooms);
}

std::vector<TypingTracker::RoomState> TypingTracker::snapshot() const {
  std::lock_guard lock(mu_);
  std::vector<RoomState> out;
  int64_t now = core::steady_ms();
  for (const auto& [room_id, users] : expiry_) {
    if (!users.empty()) out.push_back(room_state_locked(room_id, now));
  }
  return out;
}

std::vector<std::string> TypingTracker::typing_users(const std::string& room_id, uint64_t* changed_serial) {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  int64_t now = core::steady_ms();
  auto it = expiry_.find(room_id);
  if (it != expiry_.end()) {
    for (auto u = it->second.begin(); u != it->second.end();) {
      if (u->second > now) {
        out.push_back(u->first);
        ++u;
      } else if (forward_ || publish_) {
        // Several processes: expiry_due() expires (and announces) on the owner; here the user is
        // only hidden.
        ++u;
      } else {
        u = it->second.erase(u);  // expired: drop it now, and count it as a change
        room_serial_[room_id] = ++serial_;
      }
    }
  }
  if (changed_serial) {
    auto s = room_serial_.find(room_id);
    *changed_serial = s == room_serial_.end() ? 0 : s->second;
  }
  return out;
}

uint64_t TypingTracker::serial() const {
  std::lock_guard lock(mu_);
  return serial_;
}

UserDataService::UserDataService(storage::Database& db, Notifier& notifier, Rooms& rooms)
    : db_(db), notifier_(notifier), rooms_(rooms), typing_(notifier) {}

void UserDataService::put_account_data(const std::string& user_id, const std::string& room_id,
                                       const std::string& type, const object& content) {
  if (type == "m.fully_read" || type == "m.push_rules") {
    // The spec's answer for server-controlled types: 405 with M_BAD_JSON.
    throw MatrixError(405, "M_BAD_JSON", "Cannot set " + type + " through this API");
  }
  db_.write([&](storage::Connection& c) {
    ud::put_account_data(c, user_id, room_id, type, boost::json::serialize(content), db_.next_stream_position());
  });
  notifier_.notify({user_id});
}

object UserDataService::get_account_data(const std::string& user_id, const std::string& room_id,
                                         const std::string& type) {
  auto v = db_.read([&](storage::Connection& c) { return ud::get_account_data(c, user_id, room_id, type); });
  if (!v) throw MatrixError::not_found("Account data not found");
  return core::parse_stored_json(*v).as_object();
}

object UserDataService::tags(const std::string& user_id, const std::string& room_id) {
  auto v = db_.read([&](storage::Connection& c) { return ud::get_account_data(c, user_id, room_id, "m.tag"); });
  if (!v) return object{{"tags", object{}}};
  auto content = core::parse_stored_json(*v);
  auto* t = content.as_object().if_contains("tags");
  return object{{"tags", t && t->is_object() ? *t : boost::json::value(object{})}};
}

void UserDataService::set_tag(const std::string& user_id, const std::string& room_id, const std::string& tag,
                              const object& info) {
  if (tag.empty() || tag.size() > 255) throw MatrixError::invalid_param("Tag names are 1 to 255 bytes");
  if (auto* order = info.if_contains("order"); order && !order->is_number()) {
    throw MatrixError::bad_json("'order' must be a number");
  }
  db_.write([&](storage::Connection& c) {
    object content{{"tags", object{}}};
    if (auto v = ud::get_account_data(c, user_id, room_id, "m.tag")) content = core::parse_stored_json(*v).as_object();
    if (!content["tags"].is_object()) content["tags"] = object{};
    content["tags"].as_object()[tag] = info;
    ud::put_account_data(c, user_id, room_id, "m.tag", boost::json::serialize(content), db_.next_stream_position());
  });
  notifier_.notify({user_id});
}

void UserDataService::delete_tag(const std::string& user_id, const std::string& room_id, const std::string& tag) {
  db_.write([&](storage::Connection& c) {
    auto v = ud::get_account_data(c, user_id, room_id, "m.tag");
    if (!v) return;
    auto content = core::parse_stored_json(*v).as_object();
    if (auto* t = content.if_contains("tags"); t && t->is_object()) t->as_object().erase(tag);
    ud::put_account_data(c, user_id, room_id, "m.tag", boost::json::serialize(content), db_.next_stream_position());
  });
  notifier_.notify({user_id});
}

void UserDataService::send_receipt(const Requester& r, const std::string& room_id, const std::string& receipt_type,
                                   const std::string& event_id, const std::string& thread_id) {
  if (receipt_type != "m.read" && receipt_type != "m.read.private" && receipt_type != "m.fully_read") {
    throw MatrixError::invalid_param("Unknown receipt type " + receipt_type);
  }
  if (receipt_type == "m.fully_read" && !thread_id.empty()) {
    throw MatrixError::invalid_param("thread_id is not compatible with m.fully_read receipts.");
  }
  rooms_.history.require_joined(r, room_id);
  if (receipt_type == "m.fully_read") {
    set_read_markers(r, room_id, object{{"m.fully_read", event_id}});
    return;
  }
  bool moved = db_.write([&](storage::Connection& c) {
    auto e = storage::events::get_event(c, event_id);
    if (!e || e->room_id != room_id) throw MatrixError::not_found("Event not found in this room");
    if (!thread_id.empty()) threads::check_receipt_thread(c, *e, thread_id);
    // A receipt only moves forward in its thread (as in Synapse): one for an earlier event than
    // the user's receipt of this type and thread ('' = unthreaded) is ignored.
    if (auto old = storage::threads::receipt_event(c, room_id, receipt_type, r.user_id, thread_id)) {
      auto old_event = storage::events::get_event_header(c, *old);
      if (old_event && old_event->stream_ordering > e->stream_ordering) return false;
    }
    ud::put_receipt(c, {room_id, receipt_type, r.user_id, thread_id, event_id, core::now_ms(),
                        db_.next_stream_position()});
    return true;
  });
  if (moved) notifier_.notify({room_id, r.user_id});
}

void UserDataService::set_read_markers(const Requester& r, const std::string& room_id, const object& body) {
  rooms_.history.require_joined(r, room_id);
  auto str = [&](const char* key) -> std::optional<std::string> {
    auto* v = body.if_contains(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) throw MatrixError::bad_json(std::string(key) + " must be an event ID");
    return std::string(v->as_string());
  };
  auto fully_read = str("m.fully_read");
  auto read = str("m.read");
  auto read_private = str("m.read.private");
  if (fully_read) {
    db_.write([&](storage::Connection& c) {
      auto e = storage::events::get_event(c, *fully_read);
      if (!e || e->room_id != room_id) throw MatrixError::not_found("Event not found in this room");
      ud::put_account_data(c, r.user_id, room_id, "m.fully_read",
                           boost::json::serialize(object{{"event_id", *fully_read}}), db_.next_stream_position());
    });
    notifier_.notify({r.user_id});
  }
  if (read) send_receipt(r, room_id, "m.read", *read, "");
  if (read_private) send_receipt(r, room_id, "m.read.private", *read_private, "");
}

std::string UserDataService::create_filter(const std::string& user_id, const object& filter) {
  validate_filter(filter);
  auto id = db_.write([&](storage::Connection& c) { return ud::insert_filter(c, user_id, boost::json::serialize(filter)); });
  return std::to_string(id);
}

object UserDataService::get_filter(const std::string& user_id, const std::string& filter_id) {
  int64_t id = 0;
  try {
    size_t used = 0;
    id = std::stoll(filter_id, &used);
    if (used != filter_id.size()) throw std::invalid_argument(filter_id);
  } catch (const std::exception&) {
    throw MatrixError::not_found("No such filter");
  }
  auto f = db_.read([&](storage::Connection& c) { return ud::get_filter(c, user_id, id); });
  if (!f) throw MatrixError::not_found("No such filter");
  return core::parse_stored_json(*f).as_object();
}

object UserDataService::push_rules(const std::string& user_id) {
  auto stored = db_.read([&](storage::Connection& c) { return ud::get_push_rules(c, user_id); });
  if (stored) return core::parse_stored_json(*stored).as_object();
  return push::default_ruleset(user_id);
}

void UserDataService::save_push_rules(const std::string& user_id, const object& global) {
  db_.write([&](storage::Connection& c) {
    ud::put_push_rules(c, user_id, boost::json::serialize(global));
    // Clients learn of push rule changes through m.push_rules account data in /sync.
    ud::put_account_data(c, user_id, "", "m.push_rules", boost::json::serialize(object{{"global", global}}),
                         db_.next_stream_position());
  });
  notifier_.notify({user_id});
}

array UserDataService::pushers(const std::string& user_id) {
  array out;
  for (auto& p : db_.read([&](storage::Connection& c) { return ud::pushers_of_user(c, user_id); })) {
    out.push_back(core::parse_stored_json(p));
  }
  return out;
}

void UserDataService::set_pusher(const std::string& user_id, const object& body) {
  auto req = [&](const char* key) -> std::string {
    auto* v = body.if_contains(key);
    if (!v) throw MatrixError::missing_param(std::string("Missing ") + key);
    if (!v->is_string()) throw MatrixError::bad_json(std::string(key) + " must be a string");
    return std::string(v->as_string());
  };
  std::string pushkey = req("pushkey");
  std::string app_id = req("app_id");
  std::string kind;
  auto* k = body.if_contains("kind");
  if (!k) throw MatrixError::missing_param("Missing kind");
  if (k->is_null()) {
    db_.write([&](storage::Connection& c) { ud::delete_pusher(c, user_id, app_id, pushkey); });
    return;
  }
  if (!k->is_string()) throw MatrixError::bad_json("kind must be a string or null");
  kind = std::string(k->as_string());
  if (kind != "http" && kind != "email") throw MatrixError::invalid_param("kind must be http or email");
  object data;
  for (const char* key : {"app_display_name", "device_display_name", "lang"}) req(key);
  auto* d = body.if_contains("data");
  if (!d || !d->is_object()) throw MatrixError::missing_param("Missing data");
  data = d->as_object();
  if (kind == "http") {
    auto* url = data.if_contains("url");
    if (!url || !url->is_string()) throw MatrixError::invalid_param("http pushers need data.url");
  }
  object stored{{"pushkey", pushkey},
                {"kind", kind},
                {"app_id", app_id},
                {"app_display_name", req("app_display_name")},
                {"device_display_name", req("device_display_name")},
                {"lang", req("lang")},
                {"data", data}};
  if (auto* pt = body.if_contains("profile_tag"); pt && pt->is_string()) stored["profile_tag"] = *pt;
  bool append = false;
  if (auto* a = body.if_contains("append"); a && a->is_bool()) append = a->as_bool();
  db_.write([&](storage::Connection& c) {
    if (!append) ud::delete_pushers_by_key(c, app_id, pushkey, user_id);
    ud::put_pusher(c, user_id, app_id, pushkey, boost::json::serialize(stored));
  });
}

}  // namespace trestle::service
