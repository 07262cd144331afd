#include "service/profile.hpp"

#include "core/error.hpp"
#include "core/identifiers.hpp"
#include "storage/profile_store.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace trestle::service {

namespace acc = storage::accounts;
namespace pf = storage::profile;

namespace {

bool is_lower_word(std::string_view w) {
  if (w.empty() || w[0] < 'a' || w[0] > 'z') return false;
  for (char ch : w) {
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')) return false;
  }
  return true;
}

// The spec's keyName grammar: [a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+
bool is_namespaced(std::string_view key) {
  size_t dots = 0;
  while (true) {
    size_t dot = key.find('.');
    if (!is_lower_word(key.substr(0, dot))) return false;
    if (dot == std::string_view::npos) return dots > 0;
    ++dots;
    key.remove_prefix(dot + 1);
  }
}

bool on_user_row(const std::string& key) { return key == "displayname" || key == "avatar_url"; }

boost::json::object whole_profile(storage::Connection& c, const acc::User& u) {
  boost::json::object o;
  if (u.displayname) o["displayname"] = *u.displayname;
  if (u.avatar_url) o["avatar_url"] = *u.avatar_url;
  for (auto& [name, json] : pf::extra_fields(c, u.user_id)) {
    boost::system::error_code ec;
    auto v = boost::json::parse(json, ec);
    if (!ec) o[name] = std::move(v);
  }
  return o;
}

}  // namespace

void ProfileService::check_key(const std::string& key) {
  if (key.size() > kMaxKeyBytes) {
    throw MatrixError(400, "M_KEY_TOO_LARGE", "Profile key longer than " + std::to_string(kMaxKeyBytes) + " bytes");
  }
  if (!on_user_row(key) && key != "m.tz" && !is_namespaced(key)) throw MatrixError::invalid_param("Invalid profile key");
}

boost::json::object ProfileService::profile(const acc::User& u) {
  return db_.read([&](storage::Connection& c) { return whole_profile(c, u); });
}

std::optional<boost::json::value> ProfileService::field(const acc::User& u, const std::string& key) {
  check_key(key);
  if (key == "displayname") return u.displayname ? std::optional<boost::json::value>(*u.displayname) : std::nullopt;
  if (key == "avatar_url") return u.avatar_url ? std::optional<boost::json::value>(*u.avatar_url) : std::nullopt;
  auto json = db_.read([&](storage::Connection& c) { return pf::extra_field(c, u.user_id, key); });
  if (!json) return std::nullopt;
  boost::system::error_code ec;
  auto v = boost::json::parse(*json, ec);
  if (ec) return std::nullopt;
  return v;
}

acc::User ProfileService::own_user(storage::Connection& c, const Requester& r, const std::string& user_id) {
  if (!core::parse_user_id(user_id)) throw MatrixError::invalid_param("Invalid user ID");
  auto u = acc::get_user(c, user_id);
  if (!u || u->deactivated) throw MatrixError::not_found("Profile not found");
  if (user_id != r.user_id) throw MatrixError::forbidden("Cannot change another user's profile");
  // Suspended users may not change their profile (spec: account suspension).
  if (u->suspended) throw MatrixError(403, "M_USER_SUSPENDED", "You cannot change your profile while suspended.");
  return *u;
}

void ProfileService::set_field(const Requester& r, const std::string& user_id, const std::string& key,
                               const boost::json::object& body) {
  check_key(key);
  auto* v = body.if_contains(key);
  if (!v) throw MatrixError::missing_param("Missing '" + key + "'");
  // displayname and avatar_url: a string, or null to clear (as before v1.16, and as Synapse).
  std::optional<std::string> row_value;
  if (on_user_row(key) && !v->is_null()) {
    if (!v->is_string()) throw MatrixError::bad_json(key + " must be a string");
    row_value = std::string(v->as_string());
    if (key == "displayname" && row_value->size() > 256) throw MatrixError::invalid_param("Display name too long");
    if (row_value->size() > 1000) throw MatrixError::invalid_param(key + " too long");
  }
  if (key == "m.tz" && !v->is_string()) throw MatrixError::bad_json("m.tz must be a string");
  db_.write([&](storage::Connection& c) {
    auto u = own_user(c, r, user_id);
    auto whole = whole_profile(c, u);
    if (on_user_row(key) && !row_value) whole.erase(key);
    else whole[key] = *v;
    if (boost::json::serialize(whole).size() >= kMaxProfileBytes) {
      throw MatrixError(400, "M_PROFILE_TOO_LARGE", "The profile would exceed 64 KiB");
    }
    if (key == "displayname") acc::set_displayname(c, user_id, row_value);
    else if (key == "avatar_url") acc::set_avatar_url(c, user_id, row_value);
    else pf::set_extra_field(c, user_id, key, boost::json::serialize(*v));
  });
  if (on_user_row(key)) member_events_changed_(user_id);
}

void ProfileService::delete_field(const Requester& r, const std::string& user_id, const std::string& key) {
  check_key(key);
  bool changed = db_.write([&](storage::Connection& c) {
    auto u = own_user(c, r, user_id);
    if (key == "displayname") {
      if (!u.displayname) return false;
      acc::set_displayname(c, user_id, std::nullopt);
      return true;
    }
    if (key == "avatar_url") {
      if (!u.avatar_url) return false;
      acc::set_avatar_url(c, user_id, std::nullopt);
      return true;
    }
    pf::delete_extra_field(c, user_id, key);
    return false;
  });
  if (changed) member_events_changed_(user_id);
}

}  // namespace trestle::service
