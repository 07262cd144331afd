// Synapse's admin API for users (docs/admin_api/user_admin_api.md), as synadm speaks it. Thin:
// parsing here, the rules in service/admin/user_admin.
#include "api/admin/admin_routes.hpp"
#include "api/admin/admin_util.hpp"
#include "api/appservice/offload.hpp"
#include "service/admin/user_admin.hpp"

#include <algorithm>
#include <memory>

namespace trestle::api::admin {

using boost::json::object;
using service::admin::UserAdmin;

namespace {

constexpr int64_t kMaxListLimit = 1000;

// GET v2 and v3 differ in `deactivated` only: v2 includes deactivated users when true (else
// leaves them out), v3 filters by it (absent: all).
storage::user_admin::ListQuery list_query(const http::Request& req, bool v3) {
  storage::user_admin::ListQuery q;
  q.from = query_count(req, "from").value_or(0);
  q.limit = std::min(query_count(req, "limit").value_or(100), kMaxListLimit);
  q.name = req.query_param("name");
  q.user_id = req.query_param("user_id");
  if (q.name && q.name->empty()) q.name.reset();
  if (q.user_id && q.user_id->empty()) q.user_id.reset();
  q.guests = query_bool(req, "guests").value_or(true);
  auto deactivated = query_bool(req, "deactivated");
  if (v3) q.deactivated = deactivated;
  else if (!deactivated.value_or(false)) q.deactivated = false;
  q.locked = query_bool(req, "locked").value_or(false);
  q.admins = query_bool(req, "admins");
  auto range = req.query.equal_range("not_user_type");
  for (auto it = range.first; it != range.second; ++it) q.not_user_types.push_back(it->second);
  if (auto order = req.query_param("order_by")) {
    const auto& allowed = storage::user_admin::order_by_values();
    if (std::find(allowed.begin(), allowed.end(), *order) == allowed.end()) {
      std::string names;
      for (const auto& a : allowed) names += (names.empty() ? "" : ", ") + a;
      throw MatrixError::invalid_param("Query parameter 'order_by' must be one of [" + names + "]");
    }
    q.order_by = *order;
  }
  q.backwards = query_backwards(req, false);
  return q;
}

http::Reply with_status(int status, const object& o) { return http::Response::json(o, status); }

}  // namespace

void add_user_routes(http::Router& r, service::Homeserver& hs) {
  auto ua = std::make_shared<UserAdmin>(hs);

  route(r, hs, "GET", "/v2/users", [ua](http::Request& req, const service::Requester&) {
    return ok(ua->list(list_query(req, false)));
  });
  route(r, hs, "GET", "/v3/users", [ua](http::Request& req, const service::Requester&) {
    return ok(ua->list(list_query(req, true)));
  });
  route(r, hs, "GET", "/v2/users/{}", [ua](http::Request& req, const service::Requester&) {
    return ok(ua->details(req.params[0]));
  });
  route(r, hs, "PUT", "/v2/users/{}", [ua](http::Request& req, const service::Requester& who) {
    auto [status, body] = ua->put_user(who, req.params[0], req.json_object());
    return with_status(status, body);
  });

  route(r, hs, "GET", "/v1/users/{}/admin", [ua](http::Request& req, const service::Requester&) {
    return ok(object{{"admin", ua->is_admin(req.params[0])}});
  });
  route(r, hs, "PUT", "/v1/users/{}/admin", [ua](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    auto* admin = body.if_contains("admin");
    if (!admin) throw MatrixError::missing_param("Missing 'admin' flag");
    if (!admin->is_bool()) throw MatrixError::bad_json("'admin' must be a boolean");
    ua->set_admin(who, req.params[0], admin->as_bool());
    return ok();
  });

  route(r, hs, "POST", "/v1/deactivate/{}", [ua, &hs](http::Request& req, const service::Requester&) {
    std::string user_id = req.params[0];
    ua->check_deactivatable(user_id);
    auto body = req.json_object(true);
    auto* erase = body.if_contains("erase");
    if (erase && !erase->is_bool()) throw MatrixError::bad_json("Param 'erase' must be a boolean, if given");
    service::admin::deactivate_account(hs, user_id, erase && erase->as_bool());
    // Unbinding at identity servers waits on them: off the workers.
    return offload_if(true, [&hs, user_id] {
      return ok(object{{"id_server_unbind_result", hs.threepids.on_deactivate(user_id, std::nullopt)}});
    });
  });
  route(r, hs, "POST", "/v1/reset_password/{}", [ua](http::Request& req, const service::Requester&) {
    auto body = req.json_object();
    std::string password = required_string(body, "new_password");
    ua->reset_password(req.params[0], password, optional_bool(body, "logout_devices").value_or(true));
    return ok();
  });

  route(r, hs, "GET", "/v1/whois/{}", [ua, &hs](http::Request& req, const service::Requester&) {
    ua->require_local(req.params[0], "Can only whois a local user");
    return ok(service::admin::whois(hs, req.params[0]));
  });
  route(r, hs, "GET", "/v1/users/{}/joined_rooms", [ua](http::Request& req, const service::Requester&) {
    return ok(ua->joined_rooms(req.params[0]));
  });
  route(r, hs, "GET", "/v1/users/{}/pushers", [ua](http::Request& req, const service::Requester&) {
    return ok(ua->pushers(req.params[0]));
  });
  route(r, hs, "GET", "/v1/users/{}/accountdata", [ua](http::Request& req, const service::Requester&) {
    return ok(ua->account_data(req.params[0]));
  });

  route(r, hs, "GET", "/v2/users/{}/devices", [ua](http::Request& req, const service::Requester&) {
    return ok(ua->devices(req.params[0]));
  });
  route(r, hs, "GET", "/v2/users/{}/devices/{}", [ua](http::Request& req, const service::Requester&) {
    return ok(ua->device(req.params[0], req.params[1]));
  });
  route(r, hs, "PUT", "/v2/users/{}/devices/{}", [ua](http::Request& req, const service::Requester&) {
    auto body = req.json_object(true);
    auto* name = body.if_contains("display_name");
    if (name && !name->is_string()) throw MatrixError::bad_json("'display_name' must be a string");
    ua->rename_device(req.params[0], req.params[1],
                      name ? std::optional<std::string>(std::string(name->as_string())) : std::nullopt);
    return ok();
  });
  route(r, hs, "DELETE", "/v2/users/{}/devices/{}", [ua](http::Request& req, const service::Requester&) {
    ua->delete_devices(req.params[0], {req.params[1]});
    return ok();
  });
  route(r, hs, "POST", "/v2/users/{}/delete_devices", [ua](http::Request& req, const service::Requester&) {
    auto body = req.json_object();
    auto* devices = body.if_contains("devices");
    if (!devices) throw MatrixError::missing_param("Missing params: ['devices']");
    if (!devices->is_array()) throw MatrixError::bad_json("'devices' must be a list of device IDs");
    if (devices->as_array().size() > 1000) throw MatrixError::invalid_param("Too many devices at once (at most 1000)");
    std::vector<std::string> ids;
    for (const auto& d : devices->as_array()) {
      if (!d.is_string()) throw MatrixError::bad_json("'devices' must be a list of device IDs");
      ids.emplace_back(d.as_string());
    }
    ua->delete_devices(req.params[0], ids);
    return ok();
  });

  route(r, hs, "POST", "/v1/users/{}/shadow_ban", [ua](http::Request& req, const service::Requester&) {
    ua->set_shadow_banned(req.params[0], true);
    return ok();
  });
  route(r, hs, "DELETE", "/v1/users/{}/shadow_ban", [ua](http::Request& req, const service::Requester&) {
    ua->set_shadow_banned(req.params[0], false);
    return ok();
  });

  route(r, hs, "GET", "/v1/users/{}/override_ratelimit", [ua](http::Request& req, const service::Requester&) {
    return ok(ua->ratelimit(req.params[0]));
  });
  route(r, hs, "POST", "/v1/users/{}/override_ratelimit", [ua](http::Request& req, const service::Requester&) {
    auto body = req.json_object(true);
    auto count = [&](const char* key) -> int64_t {
      auto* v = body.if_contains(key);
      if (!v) return 0;
      if (!v->is_int64() || v->as_int64() < 0) {
        throw MatrixError::invalid_param(std::string("'") + key + "' parameter must be a positive int");
      }
      return v->as_int64();
    };
    return ok(ua->set_ratelimit(req.params[0], count("messages_per_second"), count("burst_count")));
  });
  route(r, hs, "DELETE", "/v1/users/{}/override_ratelimit", [ua](http::Request& req, const service::Requester&) {
    ua->delete_ratelimit(req.params[0]);
    return ok();
  });

  route(r, hs, "POST", "/v1/users/{}/login", [ua](http::Request& req, const service::Requester& who) {
    auto body = req.json_object(true);
    std::optional<int64_t> valid_until;
    if (auto* v = body.if_contains("valid_until_ms"); v && !v->is_null()) {
      if (!v->is_int64()) throw MatrixError::invalid_param("'valid_until_ms' parameter must be an int");
      valid_until = v->as_int64();
    }
    return ok(object{{"access_token", ua->login_as(who, req.params[0], valid_until)}});
  });

  route(r, hs, "GET", "/v1/threepid/{}/users/{}", [ua](http::Request& req, const service::Requester&) {
    return ok(object{{"user_id", ua->user_for_threepid(req.params[0], req.params[1])}});
  });
  route(r, hs, "GET", "/v1/auth_providers/{}/users/{}", [ua](http::Request& req, const service::Requester&) {
    return ok(object{{"user_id", ua->user_for_external_id(req.params[0], req.params[1])}});
  });
}

}  // namespace trestle::api::admin
