#include "service/admin/user_admin.hpp"

#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/identifiers.hpp"
#include "storage/account_store.hpp"
#include "storage/event_store.hpp"
#include "storage/threepid_store.hpp"
#include "storage/user_data_store.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <cstdint>
#include <set>

namespace trestle::service::admin {

namespace ua = storage::user_admin;
using boost::json::array;
using boost::json::object;
using boost::json::value;

namespace {

constexpr size_t kMaxPasswordBytes = 512;  // Synapse's admin API limit
constexpr size_t kMaxDisplayNameBytes = 256;

value opt(const std::optional<std::string>& s) { return s ? value(*s) : value(nullptr); }

const value* field(const object& body, const char* key) { return body.if_contains(key); }

std::optional<bool> bool_field(const object& body, const char* key, const char* errcode = "M_INVALID_PARAM") {
  auto* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_bool()) throw MatrixError(400, errcode, std::string("'") + key + "' parameter is not of type boolean");
  return v->as_bool();
}

// [{key_a: ..., key_b: ...}] as pairs of strings: 400 M_MISSING_PARAM when one lacks a key.
std::optional<std::vector<std::pair<std::string, std::string>>> pairs_field(const object& body, const char* key,
                                                                             const char* a, const char* b) {
  auto* v = field(body, key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_array()) throw MatrixError::bad_json(std::string("'") + key + "' must be a list");
  if (v->as_array().size() > 100) throw MatrixError::invalid_param(std::string("Too many ") + key);
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& item : v->as_array()) {
    if (!item.is_object()) throw MatrixError::bad_json(std::string("'") + key + "' items must be objects");
    const auto& o = item.as_object();
    auto* x = o.if_contains(a);
    auto* y = o.if_contains(b);
    if (!x || !y) throw MatrixError::missing_param(std::string("Missing params: [") + a + ", " + b + "]");
    if (!x->is_string() || !y->is_string() || x->as_string().empty() || y->as_string().empty()) {
      throw MatrixError::invalid_param(std::string(a) + " and " + b + " must be non-empty strings");
    }
    out.emplace_back(std::string(x->as_string()), std::string(y->as_string()));
  }
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return s;
}

object row_json(const ua::UserRow& u) {
  return object{{"name", u.name},
                {"is_guest", u.is_guest},
                {"admin", u.admin},
                {"user_type", opt(u.user_type)},
                {"deactivated", u.deactivated},
                {"erased", u.erased},
                {"shadow_banned", u.shadow_banned},
                {"displayname", opt(u.displayname)},
                {"avatar_url", opt(u.avatar_url)},
                {"creation_ts", u.creation_ts_ms},
                {"last_seen_ts", u.last_seen_ts ? value(*u.last_seen_ts) : value(nullptr)},
                {"locked", u.locked},
                {"approved", true}};
}

}  // namespace

object whois(Homeserver& hs, const std::string& user_id) {
  if (!hs.accounts.user_exists(user_id)) throw MatrixError::not_found("Unknown user");
  object devices;
  for (const auto& d : hs.accounts.list_devices(user_id)) {
    devices[d.device_id] = object{{"sessions", array{object{{"connections", array{}}}}}};
  }
  for (const auto& c : hs.client_ips.connections(user_id)) {
    auto* dev = devices.if_contains(c.device_id);
    if (!dev) continue;  // a device deleted since
    auto& connections = dev->as_object()["sessions"].as_array()[0].as_object()["connections"].as_array();
    connections.push_back(object{{"ip", c.ip}, {"last_seen", c.last_seen_ms}, {"user_agent", c.user_agent}});
  }
  return object{{"user_id", user_id}, {"devices", std::move(devices)}};
}

void deactivate_account(Homeserver& hs, const std::string& user_id, bool erase) {
  Requester self;
  self.user_id = user_id;
  // Leave every room (and reject invites, rescind knocks), so the account lingers nowhere.
  for (const char* membership : {"join", "invite", "knock"}) {
    auto rooms = hs.db.read([&](storage::Connection& c) { return storage::events::rooms_for_user(c, user_id, membership); });
    for (const auto& room : rooms) {
      try {
        hs.rooms.membership.leave(self, room, std::nullopt);
      } catch (const MatrixError&) {
      }
    }
  }
  hs.accounts.deactivate(user_id, erase);
  hs.push.password_changed(user_id, std::nullopt);  // every pusher goes
}

UserAdmin::UserAdmin(Homeserver& hs) : hs_(hs) {
  for (const auto& [user_id, o] : hs_.db.read([](storage::Connection& c) { return ua::all_ratelimits(c); })) {
    hs_.rooms.sending.message_limiter().set_override(
        user_id, config::RateLimit{static_cast<double>(o.messages_per_second), static_cast<double>(o.burst_count)});
  }
}

void UserAdmin::require_local(const std::string& user_id, const std::string& what) {
  auto id = core::parse_user_id(user_id);
  if (!id) throw MatrixError::invalid_param("Invalid user ID '" + user_id + "'");
  if (id->server_name != hs_.config.server_name) throw MatrixError::invalid_param(what);
}

void UserAdmin::require_existing(const std::string& user_id, const std::string& what) {
  require_local(user_id, what);
  if (!hs_.accounts.user_exists(user_id)) throw MatrixError::not_found("User not found");
}

object UserAdmin::list(const ua::ListQuery& q) {
  auto [rows, total] = hs_.db.read([&](storage::Connection& c) { return ua::list_users(c, q); });
  array users;
  for (const auto& u : rows) users.push_back(row_json(u));
  object out{{"users", std::move(users)}, {"total", total}};
  if (q.from + q.limit < total) out["next_token"] = std::to_string(q.from + static_cast<int64_t>(rows.size()));
  return out;
}

object UserAdmin::details(const std::string& user_id) {
  require_local(user_id, "Can only look up local users");
  auto u = hs_.db.read([&](storage::Connection& c) { return ua::get_user(c, user_id); });
  if (!u) throw MatrixError::not_found("User not found");
  object o = row_json(*u);
  o.erase("approved");
  o["creation_ts"] = u->creation_ts_ms / 1000;  // seconds here, as Synapse (the list has ms)
  o["appservice_id"] = opt(u->appservice_id);
  o["suspended"] = u->suspended;
  o["consent_server_notice_sent"] = nullptr;
  o["consent_version"] = nullptr;
  o["consent_ts"] = nullptr;
  array threepids;
  array external;
  hs_.db.read([&](storage::Connection& c) {
    for (const auto& t : storage::threepids::user_threepids(c, user_id)) {
      threepids.push_back(object{{"medium", t.medium},
                                 {"address", t.address},
                                 {"added_at", t.added_at},
                                 {"validated_at", t.validated_at}});
    }
    for (const auto& [provider, id] : ua::external_ids(c, user_id)) {
      external.push_back(object{{"auth_provider", provider}, {"external_id", id}});
    }
    return 0;
  });
  o["threepids"] = std::move(threepids);
  o["external_ids"] = std::move(external);
  return o;
}

std::pair<int, object> UserAdmin::put_user(const Requester& admin, const std::string& user_id, const object& body) {
  require_local(user_id, "This endpoint can only be used with local users");
  // Validate everything before changing anything.
  auto threepids = pairs_field(body, "threepids", "medium", "address");
  auto external_ids = pairs_field(body, "external_ids", "auth_provider", "external_id");
  std::optional<std::optional<std::string>> user_type;
  if (auto* t = field(body, "user_type")) {
    if (t->is_null()) {
      user_type.emplace(std::nullopt);
    } else if (t->is_string() && (t->as_string() == "bot" || t->as_string() == "support")) {
      user_type.emplace(std::string(t->as_string()));
    } else {
      throw MatrixError::invalid_param("Invalid user type");
    }
  }
  auto admin_flag = bool_field(body, "admin", "M_BAD_JSON");
  std::optional<std::string> password;
  if (auto* p = field(body, "password"); p && !p->is_null()) {
    if (!p->is_string() || p->as_string().size() > kMaxPasswordBytes) throw MatrixError::invalid_param("Invalid password");
    password = std::string(p->as_string());
  }
  bool logout_devices = bool_field(body, "logout_devices").value_or(true);
  auto deactivate = bool_field(body, "deactivated");
  auto lock = bool_field(body, "locked");
  if (deactivate.value_or(false) && lock.value_or(false)) {
    throw MatrixError::invalid_param("An user can't be deactivated and locked");
  }
  auto text_field = [&](const char* key, size_t max) -> std::optional<std::optional<std::string>> {
    auto* v = field(body, key);
    if (!v) return std::nullopt;
    if (v->is_null()) return std::optional<std::string>{};
    if (!v->is_string()) throw MatrixError::bad_json(std::string("'") + key + "' must be a string");
    if (v->as_string().size() > max) throw MatrixError::invalid_param(std::string("'") + key + "' is too long");
    // "" removes it.
    if (v->as_string().empty()) return std::optional<std::string>{};
    return std::optional<std::string>{std::string(v->as_string())};
  };
  auto displayname = text_field("displayname", kMaxDisplayNameBytes);
  auto avatar_url = text_field("avatar_url", 1000);
  if (avatar_url && *avatar_url && avatar_url->value().rfind("mxc://", 0) != 0) {
    throw MatrixError::invalid_param("avatar_url must be an mxc:// URI");
  }
  if (threepids) {
    for (auto& [medium, address] : *threepids) {
      if (medium == "email") address = lower(address);
    }
  }

  auto existing = hs_.db.read([&](storage::Connection& c) { return ua::get_user(c, user_id); });
  bool profile_changed = false;
  if (existing) {
    if (admin_flag && *admin_flag != existing->admin) {
      if (user_id == admin.user_id && !*admin_flag) throw MatrixError::invalid_param("You may not demote yourself.");
    }
    if (deactivate && !*deactivate && existing->deactivated && !password && !existing->has_password) {
      throw MatrixError::missing_param("Must provide a password to re-activate an account.");
    }
    bool conflict = false;
    hs_.db.write([&](storage::Connection& c) {
      if (external_ids && !ua::replace_external_ids(c, user_id, *external_ids)) {
        conflict = true;
        return;
      }
      if (displayname) {
        storage::accounts::set_displayname(c, user_id, *displayname);
        profile_changed = true;
      }
      if (avatar_url) {
        storage::accounts::set_avatar_url(c, user_id, *avatar_url);
        profile_changed = true;
      }
      if (threepids) {
        // The list replaces the account's 3PIDs.
        std::set<std::pair<std::string, std::string>> wanted(threepids->begin(), threepids->end());
        for (const auto& t : storage::threepids::user_threepids(c, user_id)) {
          if (!wanted.count({t.medium, t.address})) storage::threepids::delete_threepid(c, user_id, t.medium, t.address);
        }
        int64_t now = core::now_ms();
        for (const auto& [medium, address] : wanted) {
          storage::threepids::upsert_threepid(c, {user_id, medium, address, now, now});
        }
      }
      if (admin_flag && *admin_flag != existing->admin) storage::accounts::set_admin(c, user_id, *admin_flag);
      if (user_type) ua::set_user_type(c, user_id, *user_type);
      if (lock && *lock != existing->locked) storage::accounts::set_locked(c, user_id, *lock);
    });
    if (conflict) throw MatrixError(409, "M_UNKNOWN", "External id is already in use.");
    if (lock) hs_.accounts.forget_cached_tokens();
    if (password) hs_.accounts.set_password(user_id, password, logout_devices);
    if (password && logout_devices) hs_.push.password_changed(user_id, std::nullopt);
    if (deactivate && *deactivate && !existing->deactivated) {
      deactivate_account(hs_, user_id, false);
      profile_changed = false;  // no member events are left to update
    } else if (deactivate && !*deactivate && existing->deactivated) {
      hs_.db.write([&](storage::Connection& c) { ua::set_reactivated(c, user_id); });
    }
    if (profile_changed && !(deactivate && *deactivate)) hs_.rooms.membership.update_profile_in_rooms(user_id);
    return {200, details(user_id)};
  }

  // Create: the same rules for the user ID as registration (400 M_INVALID_USERNAME, M_EXCLUSIVE).
  std::string localpart = core::parse_user_id(user_id)->localpart;
  hs_.accounts.check_new_localpart(localpart);
  hs_.accounts.register_user(localpart, password, std::nullopt, std::nullopt, /*inhibit_login=*/true, std::nullopt,
                             admin_flag.value_or(false));
  bool conflict = false;
  hs_.db.write([&](storage::Connection& c) {
    if (displayname) storage::accounts::set_displayname(c, user_id, *displayname);
    if (avatar_url) storage::accounts::set_avatar_url(c, user_id, *avatar_url);
    if (user_type) ua::set_user_type(c, user_id, *user_type);
    if (threepids) {
      int64_t now = core::now_ms();
      for (const auto& [medium, address] : *threepids) {
        storage::threepids::upsert_threepid(c, {user_id, medium, address, now, now});
      }
    }
    if (external_ids && !ua::replace_external_ids(c, user_id, *external_ids)) conflict = true;
  });
  if (conflict) throw MatrixError(409, "M_UNKNOWN", "External id is already in use.");
  return {201, details(user_id)};
}

bool UserAdmin::is_admin(const std::string& user_id) {
  require_local(user_id, "Only local users can be admins of this homeserver");
  auto u = hs_.accounts.get_user(user_id);
  if (!u) throw MatrixError::not_found("User not found");
  return u->is_admin;
}

void UserAdmin::set_admin(const Requester& admin, const std::string& user_id, bool value) {
  require_existing(user_id, "Only local users can be admins of this homeserver");
  if (user_id == admin.user_id && !value) throw MatrixError::invalid_param("You may not demote yourself.");
  hs_.db.write([&](storage::Connection& c) { storage::accounts::set_admin(c, user_id, value); });
}

void UserAdmin::check_deactivatable(const std::string& user_id) {
  require_existing(user_id, "Can only deactivate local users");
}

void UserAdmin::reset_password(const std::string& user_id, const std::string& new_password, bool logout_devices) {
  require_existing(user_id, "Can only reset the password of local users");
  if (new_password.size() > kMaxPasswordBytes) throw MatrixError::invalid_param("Password too long");
  if (new_password.empty()) throw MatrixError(400, "M_WEAK_PASSWORD", "Password must not be empty");
  hs_.accounts.set_password(user_id, new_password, logout_devices);
  if (logout_devices) hs_.push.password_changed(user_id, std::nullopt);
}

object UserAdmin::joined_rooms(const std::string& user_id) {
  if (!core::parse_user_id(user_id)) throw MatrixError::invalid_param("Invalid user ID '" + user_id + "'");
  auto rooms = hs_.rooms.history.joined_rooms(user_id);
  auto total = static_cast<int64_t>(rooms.size());
  return object{{"joined_rooms", std::move(rooms)}, {"total", total}};
}

object UserAdmin::pushers(const std::string& user_id) {
  require_existing(user_id, "Can only look up local users");
  auto list = hs_.user_data.pushers(user_id);
  auto total = static_cast<int64_t>(list.size());
  return object{{"pushers", std::move(list)}, {"total", total}};
}

object UserAdmin::account_data(const std::string& user_id) {
  require_existing(user_id, "Can only look up local users");
  auto rows = hs_.db.read(
      [&](storage::Connection& c) { return storage::user_data::account_data_since(c, user_id, 0, INT64_MAX); });
  object global;
  object rooms;
  for (const auto& a : rows) {
    boost::system::error_code ec;
    value content = boost::json::parse(a.content, ec);
    if (ec || !content.is_object()) continue;
    if (a.room_id.empty()) {
      global[a.type] = std::move(content);
    } else {
      auto& room = rooms[a.room_id];
      if (!room.is_object()) room = object{};
      room.as_object()[a.type] = std::move(content);
    }
  }
  return object{{"account_data", object{{"global", std::move(global)}, {"rooms", std::move(rooms)}}}};
}

namespace {
object device_json(const storage::accounts::Device& d, const std::vector<ClientIps::Connection>& connections) {
  object o{{"device_id", d.device_id}, {"user_id", d.user_id}, {"dehydrated", false}};
  if (d.display_name) o["display_name"] = *d.display_name;
  o["last_seen_ip"] = opt(d.last_seen_ip);
  o["last_seen_ts"] = d.last_seen_ts ? value(*d.last_seen_ts) : value(nullptr);
  const ClientIps::Connection* latest = nullptr;
  for (const auto& c : connections) {
    if (c.device_id == d.device_id && (!latest || c.last_seen_ms > latest->last_seen_ms)) latest = &c;
  }
  o["last_seen_user_agent"] = latest ? value(latest->user_agent) : value(nullptr);
  return o;
}
}  // namespace

object UserAdmin::devices(const std::string& user_id) {
  require_existing(user_id, "Can only look up local users");
  auto connections = hs_.client_ips.connections(user_id);
  array out;
  for (const auto& d : hs_.accounts.list_devices(user_id)) out.push_back(device_json(d, connections));
  auto total = static_cast<int64_t>(out.size());
  return object{{"devices", std::move(out)}, {"total", total}};
}

object UserAdmin::device(const std::string& user_id, const std::string& device_id) {
  require_existing(user_id, "Can only look up local users");
  auto d = hs_.accounts.get_device(user_id, device_id);
  if (!d) throw MatrixError::not_found("No device found");
  return device_json(*d, hs_.client_ips.connections(user_id));
}

void UserAdmin::rename_device(const std::string& user_id, const std::string& device_id,
                              const std::optional<std::string>& display_name) {
  require_existing(user_id, "Can only look up local users");
  if (display_name && display_name->size() > 100) throw MatrixError::invalid_param("Device display name is too long");
  if (!hs_.accounts.get_device(user_id, device_id)) throw MatrixError::not_found("No device found");
  if (display_name) hs_.accounts.set_device_display_name(user_id, device_id, display_name);
}

void UserAdmin::delete_devices(const std::string& user_id, const std::vector<std::string>& device_ids) {
  require_existing(user_id, "Can only look up local users");
  for (const auto& d : device_ids) {
    if (hs_.accounts.get_device(user_id, d)) hs_.accounts.delete_device(user_id, d);
  }
}

void UserAdmin::set_shadow_banned(const std::string& user_id, bool banned) {
  require_existing(user_id, "Only local users can be shadow-banned");
  hs_.db.write([&](storage::Connection& c) { ua::set_shadow_banned(c, user_id, banned); });
  hs_.accounts.forget_cached_tokens();  // cached token owners carry the flag
}

object UserAdmin::ratelimit(const std::string& user_id) {
  require_existing(user_id, "Can only look up local users");
  auto o = hs_.db.read([&](storage::Connection& c) { return ua::get_ratelimit(c, user_id); });
  if (!o) return object{};
  return object{{"messages_per_second", o->messages_per_second}, {"burst_count", o->burst_count}};
}

object UserAdmin::set_ratelimit(const std::string& user_id, int64_t messages_per_second, int64_t burst_count) {
  require_existing(user_id, "Only local users can be ratelimited");
  ua::RateLimitOverride o{messages_per_second, burst_count};
  hs_.db.write([&](storage::Connection& c) { ua::set_ratelimit(c, user_id, o); });
  hs_.rooms.sending.message_limiter().set_override(
      user_id, config::RateLimit{static_cast<double>(messages_per_second), static_cast<double>(burst_count)});
  return object{{"messages_per_second", messages_per_second}, {"burst_count", burst_count}};
}

void UserAdmin::delete_ratelimit(const std::string& user_id) {
  require_existing(user_id, "Only local users can be ratelimited");
  hs_.db.write([&](storage::Connection& c) { ua::delete_ratelimit(c, user_id); });
  hs_.rooms.sending.message_limiter().set_override(user_id, std::nullopt);
}

std::string UserAdmin::login_as(const Requester& admin, const std::string& user_id,
                                std::optional<int64_t> valid_until_ms) {
  require_existing(user_id, "Only local users can be logged in as");
  if (user_id == admin.user_id) throw MatrixError::invalid_param("Cannot use admin API to login as self");
  return hs_.accounts.issue_deviceless_token(user_id, valid_until_ms);
}

std::string UserAdmin::user_for_threepid(const std::string& medium, const std::string& address) {
  std::string a = medium == "email" ? lower(address) : address;
  auto u = hs_.db.read([&](storage::Connection& c) { return storage::threepids::user_for_threepid(c, medium, a); });
  if (!u) throw MatrixError::not_found("User not found");
  return *u;
}

std::string UserAdmin::user_for_external_id(const std::string& auth_provider, const std::string& external_id) {
  auto u = hs_.db.read(
      [&](storage::Connection& c) { return ua::user_for_external_id(c, auth_provider, external_id); });
  if (!u) throw MatrixError::not_found("User not found");
  return *u;
}

}  // namespace trestle::service::admin
