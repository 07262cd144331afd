#include "service/admin/room_admin.hpp"
#include "service/stream_token.hpp"

#include "core/clock.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/identifiers.hpp"
#include "service/event_format.hpp"
#include "service/filter.hpp"
#include "storage/event_store.hpp"
#include "storage/room_store.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

namespace trestle::service {

using boost::json::array;
using boost::json::object;
using boost::json::value;
namespace ev = storage::events;
namespace ra = storage::room_admin;

namespace {

constexpr int64_t kTaskKeepMs = 24 * 3600 * 1000;  // status answered for a day after the end

value opt(const std::optional<std::string>& s) { return s ? value(*s) : value(nullptr); }

object stats_json(const ra::RoomStats& s) {
  return object{{"room_id", s.room_id},
                {"name", opt(s.name)},
                {"canonical_alias", opt(s.canonical_alias)},
                {"joined_members", s.joined_members},
                {"joined_local_members", s.joined_local_members},
                {"version", s.version},
                {"creator", s.creator},
                {"encryption", opt(s.encryption)},
                {"federatable", s.federatable},
                {"public", s.is_public},
                {"join_rules", opt(s.join_rules)},
                {"guest_access", opt(s.guest_access)},
                {"history_visibility", opt(s.history_visibility)},
                {"state_events", s.state_events},
                {"room_type", opt(s.room_type)}};
}

void require_room_id(const std::string& room_id) {
  if (!core::is_valid_room_id(room_id)) throw MatrixError(400, "M_UNKNOWN", room_id + " is not a legal room ID");
}

Requester as_user(const std::string& user_id) {
  Requester r;
  r.user_id = user_id;
  return r;
}

std::optional<std::string> text_field(const std::optional<object>& content, const char* key) {
  if (!content) return std::nullopt;
  auto* v = content->if_contains(key);
  if (!v || !v->is_string()) return std::nullopt;
  return std::string(v->as_string());
}

}  // namespace

RoomAdminService::RoomAdminService(const config::Config& cfg, storage::Database& db, Rooms& rooms,
                                   AccountService& accounts)
    : cfg_(cfg), db_(db), rooms_(rooms), accounts_(accounts), worker_([this] { worker_loop(); }) {}

RoomAdminService::~RoomAdminService() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void RoomAdminService::worker_loop() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      job();
    } catch (const std::exception& e) {
      spdlog::error("room admin task: {}", e.what());
    }
  }
}

void RoomAdminService::enqueue(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void RoomAdminService::forget_old_tasks() {
  const int64_t now = core::now_ms();
  for (auto it = tasks_.begin(); it != tasks_.end();) {
    if (it->second.finished_ts && now - it->second.finished_ts > kTaskKeepMs) it = tasks_.erase(it);
    else ++it;
  }
}

std::string RoomAdminService::new_task(const std::string& room_id, const std::string& kind) {
  std::lock_guard lock(mu_);
  forget_old_tasks();
  Task t;
  t.id = core::random_string(16);
  t.room_id = room_id;
  t.kind = kind;
  t.status = kind == "delete" ? "scheduled" : "active";
  if (kind == "delete") {
    t.shutdown_room = object{{"kicked_users", array{}},
                             {"failed_to_kick_users", array{}},
                             {"local_aliases", array{}},
                             {"new_room_id", nullptr}};
  }
  tasks_[t.id] = t;
  return t.id;
}

void RoomAdminService::update_task(const std::string& id, const std::function<void(Task&)>& fn) {
  std::lock_guard lock(mu_);
  auto it = tasks_.find(id);
  if (it != tasks_.end()) fn(it->second);
}

object RoomAdminService::task_json(const Task& t) const {
  object o{{"delete_id", t.id}, {"room_id", t.room_id}, {"status", t.status}};
  if (t.error) o["error"] = *t.error;
  o["shutdown_room"] = t.shutdown_room;
  return o;
}

// ---- reading rooms ----

object RoomAdminService::list_rooms(const ra::RoomQuery& query) {
  static const std::set<std::string> orders{"alphabetical", "size", "name", "canonical_alias", "joined_members",
                                            "joined_local_members", "version", "creator", "encryption",
                                            "federatable", "public", "join_rules", "guest_access",
                                            "history_visibility", "state_events"};
  if (!orders.count(query.order_by)) {
    throw MatrixError::invalid_param("Query parameter \"order_by\" must be one of: name, canonical_alias, "
                                     "joined_members, joined_local_members, version, creator, encryption, "
                                     "federatable, public, join_rules, guest_access, history_visibility, "
                                     "state_events");
  }
  if (query.search_term && query.search_term->empty()) {
    throw MatrixError::invalid_param("search_term cannot be an empty string");
  }
  if (query.offset < 0) throw MatrixError::invalid_param("Query parameter \"from\" must be a positive integer.");
  if (query.limit < 0) throw MatrixError::invalid_param("Query parameter \"limit\" must be a positive integer.");
  auto q = query;
  q.limit = std::min<int64_t>(q.limit, 1000);  // a page is bounded
  auto [rooms, total] = db_.read([&](storage::Connection& c) { return ra::list_rooms(c, cfg_.server_name, q); });
  array list;
  for (const auto& s : rooms) list.push_back(stats_json(s));
  object out{{"rooms", std::move(list)}, {"offset", q.offset}, {"total_rooms", total}};
  if (q.offset + q.limit < total) out["next_batch"] = q.offset + q.limit;
  if (q.offset > 0) out["prev_batch"] = q.offset > q.limit ? q.offset - q.limit : 0;
  return out;
}

object RoomAdminService::room_details(const std::string& room_id) {
  return db_.read([&](storage::Connection& c) {
    auto stats = ra::room_stats(c, cfg_.server_name, room_id);
    if (!stats) throw MatrixError::not_found("Room not found");
    object out = stats_json(*stats);
    auto content = [&](const char* type) -> std::optional<object> {
      auto id = ev::current_state_event_id(c, room_id, type, "");
      if (!id) return std::nullopt;
      auto e = ev::get_event(c, *id);
      if (!e) return std::nullopt;
      auto* ct = e->pdu.if_contains("content");
      if (!ct || !ct->is_object()) return std::nullopt;
      return ct->as_object();
    };
    out["topic"] = opt(text_field(content("m.room.topic"), "topic"));
    out["avatar"] = opt(text_field(content("m.room.avatar"), "url"));
    out["joined_local_devices"] = ra::joined_local_devices(c, room_id);
    out["forgotten"] = ra::locally_forgotten(c, cfg_.server_name, room_id);
    auto tombstone = content("m.room.tombstone");
    out["tombstoned"] = tombstone.has_value();
    out["replacement_room"] = opt(text_field(tombstone, "replacement_room"));
    return out;
  });
}

object RoomAdminService::members(const std::string& room_id) {
  return db_.read([&](storage::Connection& c) {
    if (!storage::rooms::get_room(c, room_id)) throw MatrixError::not_found("Room not found");
    array list;
    for (auto& u : ra::joined_users(c, room_id)) list.push_back(value(u));
    auto total = static_cast<int64_t>(list.size());
    return object{{"members", std::move(list)}, {"total", total}};
  });
}

object RoomAdminService::state(const std::string& room_id, const std::optional<std::string>& type) {
  return db_.read([&](storage::Connection& c) {
    if (!storage::rooms::get_room(c, room_id)) throw MatrixError::not_found("Room not found");
    array out;
    for (const auto& s : ev::current_state(c, room_id)) {
      if (type && !type->empty() && s.type != *type) continue;
      if (auto e = ev::get_event(c, s.event_id)) out.push_back(client_event(*e, c, {}));
    }
    return object{{"state", std::move(out)}};
  });
}

object RoomAdminService::messages(const std::string& room_id, const std::optional<std::string>& from,
                                  const std::optional<std::string>& to, const std::string& dir, int64_t limit,
                                  const object& filter) {
  return rooms_.history.admin_messages(room_id, from, to, dir, limit, filter);
}

object RoomAdminService::context(const std::string& room_id, const std::string& event_id, int64_t limit,
                                 const object& filter) {
  if (limit < 0) throw MatrixError::invalid_param("limit must be a positive integer");
  limit = std::clamp<int64_t>(limit, 0, 100);
  return db_.read([&](storage::Connection& c) {
    auto target = ev::get_event(c, event_id);
    if (!target || target->room_id != room_id) throw MatrixError::not_found("Event not found.");
    int64_t before_n = limit / 2, after_n = limit - before_n;
    array before, after;
    int64_t start = target->stream_ordering - 1, end = target->stream_ordering;
    for (const auto& e : ev::room_events_backwards(c, room_id, 0, target->stream_ordering - 1, before_n)) {
      start = e.stream_ordering - 1;
      if (event_matches(filter, e)) before.push_back(client_event(e, c, {}));
    }
    for (const auto& e : ev::room_events_forwards(c, room_id, target->stream_ordering, db_.committed_position(),
                                                  after_n)) {
      end = e.stream_ordering;
      if (event_matches(filter, e)) after.push_back(client_event(e, c, {}));
    }
    array state;
    for (const auto& s : ev::state_at(c, room_id, end)) {
      auto e = ev::get_event(c, s.event_id);
      if (e && event_matches(filter, *e)) state.push_back(client_event(*e, c, {}));
    }
    return object{{"event", client_event(*target, c, {})},
                  {"events_before", std::move(before)},
                  {"events_after", std::move(after)},
                  {"start", "s" + std::to_string(start)},
                  {"end", "s" + std::to_string(end)},
                  {"state", std::move(state)}};
  });
}

// ---- blocking ----

object RoomAdminService::block_status(const std::string& room_id) {
  require_room_id(room_id);
  auto by = db_.read([&](storage::Connection& c) { return ra::blocked_by(c, room_id); });
  if (by) return object{{"block", true}, {"user_id", *by}};
  return object{{"block", false}};
}

void RoomAdminService::set_blocked(const std::string& room_id, bool block, const std::string& admin_user_id) {
  require_room_id(room_id);
  db_.write([&](storage::Connection& c) {
    if (block) ra::block_room(c, room_id, admin_user_id);
    else ra::unblock_room(c, room_id);
  });
}

bool RoomAdminService::is_blocked(const std::string& room_id) {
  return db_.read([&](storage::Connection& c) { return ra::blocked_by(c, room_id).has_value(); });
}

// ---- deleting rooms ----

void RoomAdminService::validate_delete(const std::string& room_id, const RoomDeleteParams& p) {
  require_room_id(room_id);
  if (p.new_room_user_id) {
    auto u = core::parse_user_id(*p.new_room_user_id);
    if (!u) throw MatrixError::invalid_param("Invalid user ID '" + *p.new_room_user_id + "'");
    if (u->server_name != cfg_.server_name) {
      throw MatrixError(400, "M_UNKNOWN", "User must be our own: " + *p.new_room_user_id);
    }
  }
}

object RoomAdminService::shutdown(const std::string& room_id, const RoomDeleteParams& p,
                                  const std::function<void(const object&)>& progress) {
  object result{{"kicked_users", array{}},
                {"failed_to_kick_users", array{}},
                {"local_aliases", array{}},
                {"new_room_id", nullptr}};
  if (p.block) db_.write([&](storage::Connection& c) { ra::block_room(c, room_id, p.requester_user_id); });
  bool known = db_.read([&](storage::Connection& c) { return storage::rooms::get_room(c, room_id).has_value(); });
  if (!known) return result;

  std::optional<std::string> new_room_id;
  if (p.new_room_user_id) {
    object pl_override{{"users_default", -10}};
    object body{{"preset", "public_chat"},
                {"name", p.room_name.value_or("Content Violation Notification")},
                {"power_level_content_override", pl_override}};
    new_room_id = rooms_.creation.create_room(as_user(*p.new_room_user_id), body);
    result["new_room_id"] = *new_room_id;
    progress(result);
  }
  // Out of the directory at once, so nobody finds the room while it is being emptied.
  db_.write([&](storage::Connection& c) { storage::rooms::set_public(c, room_id, false); });

  auto local = db_.read([&](storage::Connection& c) { return ra::local_members(c, cfg_.server_name, room_id); });
  for (const auto& [user_id, membership] : local) {
    if (membership != "join" && membership != "invite" && membership != "knock") continue;
    try {
      auto who = as_user(user_id);
      rooms_.membership.leave(who, room_id, std::nullopt);
      rooms_.membership.forget(who, room_id);
      if (new_room_id && membership == "join") rooms_.membership.join(who, *new_room_id, std::nullopt);
      result["kicked_users"].as_array().push_back(value(user_id));
    } catch (const std::exception& e) {
      spdlog::warn("room delete: could not move {} out of {}: {}", user_id, room_id, e.what());
      result["failed_to_kick_users"].as_array().push_back(value(user_id));
    }
    progress(result);
  }

  if (p.new_room_user_id && new_room_id) {
    object content{{"msgtype", "m.text"},
                   {"body", p.message.value_or("Sharing illegal content on this server is not permitted and rooms in "
                                               "violation will be blocked.")}};
    rooms_.writer.send(NewEvent{*new_room_id, *p.new_room_user_id, "m.room.message", std::nullopt, content,
                               std::nullopt, std::nullopt, std::nullopt, std::nullopt});
    array aliases;
    db_.write([&](storage::Connection& c) {
      for (auto& a : storage::rooms::aliases_of_room(c, room_id)) aliases.push_back(value(a));
      storage::rooms::move_aliases(c, room_id, *new_room_id);
    });
    result["local_aliases"] = std::move(aliases);
    progress(result);
  }
  return result;
}

void RoomAdminService::purge(const std::string& room_id, bool force) {
  db_.write([&](storage::Connection& c) {
    if (!storage::rooms::get_room(c, room_id)) throw MatrixError::not_found("Unknown room id " + room_id);
    if (!force && ra::local_users_joined(c, cfg_.server_name, room_id)) {
      throw MatrixError(400, "M_UNKNOWN", "Users are still joined to this room");
    }
    ra::purge_room(c, room_id);
  });
  spdlog::info("room delete: purged {}", room_id);
}

void RoomAdminService::run_delete(const std::string& task_id, const std::string& room_id, const RoomDeleteParams& p) {
  update_task(task_id, [](Task& t) { t.status = "active"; });
  try {
    bool known = db_.read([&](storage::Connection& c) { return storage::rooms::get_room(c, room_id).has_value(); });
    if (!known && !p.block) throw MatrixError::not_found("Unknown room id " + room_id);
    auto result = shutdown(room_id, p, [&](const object& r) { update_task(task_id, [&](Task& t) { t.shutdown_room = r; }); });
    update_task(task_id, [&](Task& t) { t.shutdown_room = result; });
    if (p.purge && known) purge(room_id, p.force_purge);
    update_task(task_id, [](Task& t) {
      t.status = "complete";
      t.finished_ts = core::now_ms();
    });
  } catch (const std::exception& e) {
    spdlog::warn("room delete of {} failed: {}", room_id, e.what());
    std::string msg = e.what();
    update_task(task_id, [&](Task& t) {
      t.status = "failed";
      t.error = msg;
      t.finished_ts = core::now_ms();
    });
  }
}

std::string RoomAdminService::start_delete(const std::string& room_id, const RoomDeleteParams& p) {
  validate_delete(room_id, p);
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, t] : tasks_) {
      if (t.room_id == room_id && t.kind == "delete" && (t.status == "scheduled" || t.status == "active")) {
        throw MatrixError(400, "M_UNKNOWN", "Purge already in progress for " + room_id);
      }
    }
  }
  auto id = new_task(room_id, "delete");
  enqueue([this, id, room_id, p] { run_delete(id, room_id, p); });
  return id;
}

object RoomAdminService::delete_now(const std::string& room_id, const RoomDeleteParams& p) {
  validate_delete(room_id, p);
  auto result = shutdown(room_id, p, [](const object&) {});
  if (p.purge) {
    try {
      purge(room_id, p.force_purge);
    } catch (const MatrixError& e) {
      // A room blocked before this server knew it has nothing to purge.
      if (!(e.status() == 404 && p.block)) throw;
    }
  }
  return result;
}

object RoomAdminService::delete_status_by_room(const std::string& room_id) {
  require_room_id(room_id);
  std::lock_guard lock(mu_);
  forget_old_tasks();
  array results;
  for (const auto& [id, t] : tasks_) {
    if (t.kind == "delete" && t.room_id == room_id) results.push_back(task_json(t));
  }
  if (results.empty()) throw MatrixError::not_found("No delete task for room_id '" + room_id + "' found");
  return object{{"results", std::move(results)}};
}

object RoomAdminService::delete_status(const std::string& delete_id) {
  std::lock_guard lock(mu_);
  forget_old_tasks();
  auto it = tasks_.find(delete_id);
  if (it == tasks_.end() || it->second.kind != "delete") {
    throw MatrixError::not_found("delete id '" + delete_id + "' not found");
  }
  return task_json(it->second);
}

// ---- purging history ----

std::string RoomAdminService::start_purge_history(const std::string& room_id,
                                                  const std::optional<std::string>& event_id_param,
                                                  const object& body) {
  bool delete_local = false;
  if (auto* v = body.if_contains("delete_local_events")) {
    delete_local = v->is_bool() ? v->as_bool() : !(v->is_null() || (v->is_int64() && v->as_int64() == 0));
  }
  std::optional<std::string> event_id = event_id_param;
  if (!event_id) {
    if (auto* v = body.if_contains("purge_up_to_event_id"); v && !v->is_null()) {
      if (!v->is_string()) throw MatrixError::bad_json("purge_up_to_event_id must be a string");
      event_id = std::string(v->as_string());
    }
  }
  int64_t before = 0;
  if (event_id) {
    auto e = db_.read([&](storage::Connection& c) { return ev::get_event_header(c, *event_id); });
    if (!e) throw MatrixError::not_found("Could not find event " + *event_id);
    if (e->room_id != room_id) throw MatrixError(400, "M_UNKNOWN", "Event is for wrong room.");
    before = e->stream_ordering;
  } else if (auto* v = body.if_contains("purge_up_to_ts")) {
    if (!v->is_int64()) throw MatrixError::bad_json("purge_up_to_ts must be an int");
    int64_t ts = v->as_int64();
    auto at = db_.read([&](storage::Connection& c) { return ra::last_event_before_ts(c, room_id, ts); });
    if (!at) throw MatrixError::not_found("there is no event to be purged");
    before = *at;
  } else {
    throw MatrixError::bad_json("must specify purge_up_to_event_id or purge_up_to_ts");
  }
  auto id = new_task(room_id, "purge_history");
  enqueue([this, id, room_id, before, delete_local] {
    try {
      auto n = db_.write([&](storage::Connection& c) {
        return ra::purge_history(c, cfg_.server_name, room_id, before, delete_local);
      });
      spdlog::info("purge history of {} before stream position {}: {} events deleted", room_id, before, n);
      update_task(id, [](Task& t) {
        t.status = "complete";
        t.finished_ts = core::now_ms();
      });
    } catch (const std::exception& e) {
      std::string msg = e.what();
      update_task(id, [&](Task& t) {
        t.status = "failed";
        t.error = msg;
        t.finished_ts = core::now_ms();
      });
    }
  });
  return id;
}

object RoomAdminService::purge_history_status(const std::string& purge_id) {
  std::lock_guard lock(mu_);
  forget_old_tasks();
  auto it = tasks_.find(purge_id);
  if (it == tasks_.end() || it->second.kind != "purge_history") {
    throw MatrixError::not_found("purge id '" + purge_id + "' not found");
  }
  object out{{"status", it->second.status}};
  if (it->second.error) out["error"] = *it->second.error;
  return out;
}

// ---- joining users ----

std::string RoomAdminService::join_user(const std::string& room_id_or_alias, const std::string& user_id,
                                        const std::string& admin_user_id) {
  auto u = core::parse_user_id(user_id);
  if (!u) throw MatrixError::invalid_param("Invalid user ID '" + user_id + "'");
  if (u->server_name != cfg_.server_name) {
    throw MatrixError(400, "M_UNKNOWN", "This endpoint can only be used with local users");
  }
  if (!accounts_.user_exists(user_id)) throw MatrixError::not_found("User not found");
  const std::string room_id = rooms_.directory.resolve_room_id_or_alias(room_id_or_alias);
  bool known = db_.read([&](storage::Connection& c) { return storage::rooms::get_room(c, room_id).has_value(); });
  if (!known) throw MatrixError::not_found("No known servers for room " + room_id);
  auto join_rule = text_field(rooms_.history.current_state_content(room_id, "m.room.join_rules", ""), "join_rule");
  if (join_rule && *join_rule != "public") {
    auto current = db_.read([&](storage::Connection& c) { return ev::get_membership(c, room_id, user_id); });
    if (!current || (current->membership != "invite" && current->membership != "join")) {
      rooms_.membership.invite(as_user(admin_user_id), room_id, user_id, std::nullopt);
    }
  }
  rooms_.membership.join(as_user(user_id), room_id, std::nullopt);
  return room_id;
}

void RoomAdminService::make_room_admin(const std::string& room_id_or_alias, const std::string& user_id) {
  auto u = core::parse_user_id(user_id);
  if (!u) throw MatrixError::invalid_param("Invalid user ID '" + user_id + "'");
  const std::string room_id = rooms_.directory.resolve_room_id_or_alias(room_id_or_alias);
  bool known = db_.read([&](storage::Connection& c) { return storage::rooms::get_room(c, room_id).has_value(); });
  if (!known) throw MatrixError(400, "M_UNKNOWN", "Server not in room");
  auto pl = rooms_.history.current_state_content(room_id, "m.room.power_levels", "");
  if (!pl) throw MatrixError(400, "M_UNKNOWN", "No power level event in room " + room_id);
  object users;
  if (auto* v = pl->if_contains("users"); v && v->is_object()) users = v->as_object();
  // The local joined user with the most power sends the change (Synapse: the "admin" of the room).
  std::optional<std::string> sender;
  int64_t best = std::numeric_limits<int64_t>::min();
  auto joined = db_.read([&](storage::Connection& c) { return ra::joined_users(c, room_id); });
  for (const auto& m : joined) {
    auto mu = core::parse_user_id(m);
    if (!mu || mu->server_name != cfg_.server_name) continue;
    auto* lv = users.if_contains(m);
    if (!lv || !lv->is_int64()) continue;
    if (lv->as_int64() > best) {
      best = lv->as_int64();
      sender = m;
    }
  }
  if (!sender) {
    // A room whose creator holds the power implicitly (room version 12): its creator.
    auto create = rooms_.history.current_state_pdu(room_id, "m.room.create", "");
    if (create) {
      if (auto* s = create->if_contains("sender"); s && s->is_string()) {
        std::string creator(s->as_string());
        if (std::find(joined.begin(), joined.end(), creator) != joined.end()) {
          auto cu = core::parse_user_id(creator);
          if (cu && cu->server_name == cfg_.server_name) {
            sender = creator;
            best = 100;
            if (auto* lv = users.if_contains(creator); lv && lv->is_int64()) best = lv->as_int64();
          }
        }
      }
    }
  }
  if (!sender) throw MatrixError(400, "M_UNKNOWN", "No local admin user in room with power to update power levels.");
  object content = *pl;
  users[user_id] = best;
  content["users"] = users;
  rooms_.writer.send(NewEvent{room_id, *sender, "m.room.power_levels", std::string(""), content, std::nullopt,
                             std::nullopt, std::nullopt, std::nullopt});
  auto current = db_.read([&](storage::Connection& c) { return ev::get_membership(c, room_id, user_id); });
  bool in_room = current && (current->membership == "join" || current->membership == "invite");
  auto join_rule = text_field(rooms_.history.current_state_content(room_id, "m.room.join_rules", ""), "join_rule");
  if (!in_room && join_rule != std::optional<std::string>("public")) {
    rooms_.membership.invite(as_user(*sender), room_id, user_id, std::nullopt);
  }
}

// ---- event reports ----

namespace {

object report_json(const ra::EventReportRow& r) {
  object o{{"id", r.id},
           {"received_ts", r.received_ts},
           {"room_id", r.room_id},
           {"name", opt(r.name)},
           {"event_id", r.event_id},
           {"user_id", r.user_id},
           {"reason", opt(r.reason)},
           {"score", nullptr},
           {"sender", opt(r.sender)},
           {"canonical_alias", opt(r.canonical_alias)}};
  boost::system::error_code ec;
  auto content = boost::json::parse(r.content_json, ec);
  if (!ec && content.is_object()) {
    if (auto* s = content.as_object().if_contains("score"); s && s->is_int64()) o["score"] = s->as_int64();
  }
  return o;
}

}  // namespace

object RoomAdminService::event_reports(const ra::ReportQuery& query) {
  if (query.offset < 0) throw MatrixError::invalid_param("The start parameter must be a positive integer.");
  if (query.limit < 0) throw MatrixError::invalid_param("The limit parameter must be a positive integer.");
  auto q = query;
  q.limit = std::min<int64_t>(q.limit, 1000);
  auto [rows, total] = db_.read([&](storage::Connection& c) { return ra::list_event_reports(c, q); });
  array list;
  for (const auto& r : rows) list.push_back(report_json(r));
  auto n = static_cast<int64_t>(list.size());
  object out{{"event_reports", std::move(list)}, {"total", total}};
  if (q.offset + q.limit < total) out["next_token"] = q.offset + n;
  return out;
}

object RoomAdminService::event_report(int64_t id) {
  return db_.read([&](storage::Connection& c) {
    auto r = ra::get_event_report(c, id);
    if (!r) throw MatrixError::not_found("Event report not found");
    object out = report_json(*r);
    auto e = ev::get_event(c, r->event_id);
    out["event_json"] = e ? value(e->pdu) : value(nullptr);
    return out;
  });
}

void RoomAdminService::delete_event_report(int64_t id) {
  bool deleted = db_.write([&](storage::Connection& c) { return ra::delete_event_report(c, id); });
  if (!deleted) throw MatrixError::not_found("Event report not found");
}

}  // namespace trestle::service
