#include "service/cluster_state.hpp"

#include "service/homeserver.hpp"

#include <boost/json.hpp>

namespace trestle::service {

namespace json = boost::json;

namespace {

std::string str(const json::object& m, const char* key) {
  auto* v = m.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}
int64_t num(const json::object& m, const char* key) {
  auto* v = m.if_contains(key);
  return v && v->is_int64() ? v->as_int64() : v && v->is_uint64() ? static_cast<int64_t>(v->as_uint64()) : 0;
}
std::optional<std::string> opt_str(const json::object& m, const char* key) {
  auto* v = m.if_contains(key);
  if (!v || !v->is_string()) return std::nullopt;
  return std::string(v->as_string());
}

json::object typing_message(const TypingTracker::RoomState& r) {
  json::array users;
  for (const auto& [user, ms] : r.users) users.push_back(json::array{json::string(user), ms});
  return {{"r", r.room_id}, {"u", std::move(users)}, {"rs", r.room_serial}, {"s", r.serial}};
}

TypingTracker::RoomState typing_state(const json::object& m) {
  TypingTracker::RoomState r;
  r.room_id = str(m, "r");
  r.room_serial = static_cast<uint64_t>(num(m, "rs"));
  r.serial = static_cast<uint64_t>(num(m, "s"));
  if (auto* u = m.if_contains("u"); u && u->is_array()) {
    for (const auto& e : u->as_array()) {
      if (!e.is_array() || e.as_array().size() != 2 || !e.as_array()[0].is_string() || !e.as_array()[1].is_int64()) {
        continue;
      }
      r.users.emplace_back(std::string(e.as_array()[0].as_string()), e.as_array()[1].as_int64());
    }
  }
  return r;
}

}  // namespace

void share_state_across_processes(Homeserver& hs) {
  auto& cluster = hs.cluster;
  if (!cluster.enabled()) return;

  // Token owners are cached per process: a revocation anywhere empties every cache.
  hs.accounts.set_tokens_listener([&cluster] { cluster.publish("tokens", {}); });
  cluster.on("tokens", [&hs](const json::object&) { hs.accounts.forget_cached_tokens(false); });
  cluster.on_gap([&hs] { hs.accounts.forget_cached_tokens(false); });  // one may have been missed

  auto& typing = hs.user_data.typing();
  if (!hs.config.is_worker()) {
    // The main process owns typing and presence: it publishes every change, takes the workers'
    // requests, expires typing once a second, and answers a worker that lost messages.
    typing.set_owner([&cluster](const TypingTracker::RoomState& r) { cluster.publish("typing", typing_message(r)); });
    cluster.on_tick([&typing] { typing.expire_due(); });
    cluster.on("typing_set", [&typing](const json::object& m) {
      auto* t = m.if_contains("t");
      typing.set(str(m, "r"), str(m, "u"), t && t->is_bool() && t->as_bool(), num(m, "ms"));
    });
    hs.presence.set_owner([&cluster](const std::string& user_id, const PresenceState& s) {
      json::object m{{"u", user_id}, {"p", s.presence}, {"a", s.last_active_ts}, {"s", s.serial}};
      if (s.status_msg) m["m"] = *s.status_msg;
      cluster.publish("presence", std::move(m));
    });
    cluster.on("presence_set", [&hs](const json::object& m) {
      auto* keep = m.if_contains("keep");
      try {
        if (keep && keep->is_bool() && keep->as_bool()) {
          hs.presence.touch(str(m, "u"), str(m, "p"));
        } else {
          hs.presence.set(str(m, "u"), str(m, "p"), opt_str(m, "m"));
        }
      } catch (const std::exception&) {
        // An invalid value was refused where it was asked for; nothing to do here.
      }
    });
    cluster.on("client_ip", [&hs](const json::object& m) {
      hs.client_ips.record(str(m, "u"), str(m, "d"), str(m, "ip"), str(m, "ua"), num(m, "ts"));
    });
    cluster.on("resync", [&typing, &cluster](const json::object&) {
      for (const auto& r : typing.snapshot()) cluster.publish("typing", typing_message(r));
    });
    return;
  }
  // Exact over caching: a worker looks every token up (service/accounts.hpp).
  hs.accounts.set_cache_tokens(false);
  typing.set_mirror([&cluster](const std::string& room_id, const std::string& user_id, bool t, int64_t ms) {
    cluster.publish("typing_set", {{"r", room_id}, {"u", user_id}, {"t", t}, {"ms", ms}});
  });
  cluster.on("typing", [&typing](const json::object& m) { typing.apply(typing_state(m)); });
  hs.presence.set_mirror([&cluster](const std::string& user_id, const std::string& presence,
                                    const std::optional<std::string>& status_msg, bool keep) {
    json::object m{{"u", user_id}, {"p", presence}, {"keep", keep}};
    if (status_msg) m["m"] = *status_msg;
    cluster.publish("presence_set", std::move(m));
  });
  cluster.on("presence", [&hs](const json::object& m) {
    PresenceState s;
    s.presence = str(m, "p");
    s.status_msg = opt_str(m, "m");
    s.last_active_ts = num(m, "a");
    s.serial = static_cast<uint64_t>(num(m, "s"));
    hs.presence.apply(str(m, "u"), s);
  });
  hs.client_ips.set_forward([&cluster](const std::string& user_id, const ClientIps::Connection& c) {
    cluster.publish("client_ip", {{"u", user_id}, {"d", c.device_id}, {"ip", c.ip}, {"ua", c.user_agent},
                                  {"ts", c.last_seen_ms}});
  });
  // Typing state is small: after a gap, the main process sends all of it again.
  cluster.on_gap([&cluster] { cluster.publish("resync", {}); });
}

}  // namespace trestle::service
