#include "service/registration.hpp"

#include "core/clock.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/url_encode.hpp"

#include <boost/json/parse.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace trestle::service {

namespace {

std::optional<std::string> string_field(const boost::json::object& o, const char* key) {
  auto* v = o.if_contains(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_string()) throw MatrixError::invalid_param(std::string("'") + key + "' must be a string");
  return std::string(v->as_string());
}

constexpr const char* kTokenStage = "m.login.registration_token";
constexpr const char* kGuestUpgrade = "POST /register (guest upgrade)";

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

const boost::json::object* RegistrationService::auth_object(const boost::json::object& body) {
  auto* auth_value = body.if_contains("auth");
  return auth_value && auth_value->is_object() ? &auth_value->as_object() : nullptr;
}

std::string RegistrationService::open_session(const boost::json::object* auth, const std::string& operation,
                                              int64_t now, UiaSessions::Session& session) {
  auto* sid_value = auth ? auth->if_contains("session") : nullptr;
  if (sid_value && sid_value->is_string() && !sid_value->as_string().empty()) {
    std::string sid(sid_value->as_string());
    auto found = sessions_.get(sid, now);
    if (!found || found->operation != operation) throw MatrixError(400, "M_UNKNOWN", "Unknown session ID");
    session = std::move(*found);
    return sid;
  }
  session.operation = operation;
  session.created_ms = now;
  return sessions_.create("", operation, now);
}

RegistrationService::RegistrationService(const config::Config& cfg, AccountService& accounts, OutboundHttp http)
    : cfg_(cfg), accounts_(accounts), http_(std::move(http)) {
  add_stage("m.login.dummy", [](const boost::json::object&, const std::string&) {});
  if (!cfg_.recaptcha_private_key.empty()) {
    add_stage("m.login.recaptcha", [this](const boost::json::object& auth, const std::string& remote_address) {
      check_recaptcha(auth, remote_address);
    }, boost::json::object{{"public_key", cfg_.recaptcha_public_key}});
  }
  // Like Synapse: the token comes first, then the captcha, then the flow's own stages.
  if (cfg_.registration_requires_token) {
    required_stages_.push_back(kTokenStage);
    // Checked in register_user by RegistrationTokenService::check_stage (it needs the session);
    // this entry makes the type known.
    add_stage(kTokenStage, [](const boost::json::object&, const std::string&) {});
  }
  if (cfg_.enable_registration_captcha) required_stages_.push_back("m.login.recaptcha");
  flows_ = {with_required_stages({"m.login.dummy"})};
}

std::vector<std::string> RegistrationService::with_required_stages(std::vector<std::string> flow) const {
  std::vector<std::string> out;
  for (const auto& s : required_stages_) {
    if (std::find(flow.begin(), flow.end(), s) == flow.end()) out.push_back(s);
  }
  out.insert(out.end(), flow.begin(), flow.end());
  return out;
}

void RegistrationService::set_flows(std::vector<std::vector<std::string>> flows) {
  flows_.clear();
  for (auto& f : flows) add_flow(std::move(f));
}

bool RegistrationService::calls_out(const boost::json::object& body) const {
  auto* auth = body.if_contains("auth");
  if (!auth || !auth->is_object()) return false;
  auto* type = auth->as_object().if_contains("type");
  return type && type->is_string() && type->as_string() == "m.login.recaptcha" && stages_.count("m.login.recaptcha");
}

// reCAPTCHA's siteverify: a form post of our private key, the client's response and its address;
// the answer's `success` decides.
void RegistrationService::check_recaptcha(const boost::json::object& auth, const std::string& remote_address) {
  auto* response = auth.if_contains("response");
  if (!response || !response->is_string() || response->as_string().empty()) {
    throw MatrixError(400, "M_CAPTCHA_NEEDED", "Captcha response is required");
  }
  std::string form = "secret=" + core::percent_encode(cfg_.recaptcha_private_key) +
                     "&response=" + core::percent_encode(std::string_view(response->as_string())) +
                     "&remoteip=" + core::percent_encode(remote_address);
  auto r = http_("POST", cfg_.recaptcha_siteverify_api, "",
                 {{"Content-Type", "application/x-www-form-urlencoded"}}, form, 10'000);
  if (r.status != 200) {
    spdlog::warn("recaptcha siteverify failed: status {} {}", r.status, r.error);
    throw MatrixError(500, "M_UNKNOWN", "Could not check the captcha");
  }
  boost::system::error_code ec;
  auto answer = boost::json::parse(r.body, ec);
  auto* success = !ec && answer.is_object() ? answer.as_object().if_contains("success") : nullptr;
  if (!success || !success->is_bool() || !success->as_bool()) {
    throw MatrixError(401, "M_UNAUTHORIZED", "Captcha authentication failed");
  }
}

void RegistrationService::add_stage(const std::string& type, StageCheck check, boost::json::object params) {
  stages_[type] = Stage{std::move(check), std::move(params)};
}

boost::json::object RegistrationService::flows_reply(const std::string& sid, const std::set<std::string>& completed) const {
  boost::json::array flows;
  boost::json::object params;
  for (const auto& flow : flows_) {
    boost::json::array stages;
    for (const auto& s : flow) {
      stages.emplace_back(s);
      if (auto it = stages_.find(s); it != stages_.end() && !it->second.params.empty()) params[s] = it->second.params;
    }
    flows.emplace_back(boost::json::object{{"stages", std::move(stages)}});
  }
  boost::json::object o{{"flows", std::move(flows)}, {"params", std::move(params)}, {"session", sid}};
  if (!completed.empty()) o["completed"] = boost::json::array(completed.begin(), completed.end());
  return o;
}

bool RegistrationService::some_flow_done(const std::set<std::string>& completed) const {
  return std::any_of(flows_.begin(), flows_.end(), [&](const auto& flow) {
    return std::all_of(flow.begin(), flow.end(), [&](const auto& s) { return completed.count(s) > 0; });
  });
}

void RegistrationService::attempt_stage(const boost::json::object* auth, const std::string& sid,
                                        UiaSessions::Session& session, int64_t now,
                                        const std::string& remote_address) {
  // The stage attempted in this request, if any.
  auto* type = auth ? auth->if_contains("type") : nullptr;
  if (type) {
    std::string t = type->is_string() ? std::string(type->as_string()) : std::string();
    auto stage = stages_.find(t);
    if (stage == stages_.end()) {
      throw MatrixError(401, "M_FORBIDDEN", "Unsupported authentication type", flows_reply(sid, session.completed));
    }
    try {
      if (t == kTokenStage) {
        if (!tokens_) throw MatrixError(500, "M_UNKNOWN", "Registration tokens are not available");
        // The token is held as long as the session lives (UiaSessions: from its creation).
        int64_t session_ends = core::now_ms() + (session.created_ms + UiaSessions::kLifetimeMs - now);
        tokens_->check_stage(*auth, sid, session_ends);
      } else {
        stage->second.check(*auth, remote_address);
      }
    } catch (const MatrixError& e) {
      if (e.status() >= 500) throw;  // our failure (the captcha service is down), not the client's
      throw MatrixError(401, e.errcode().empty() ? "M_FORBIDDEN" : e.errcode(), e.what(),
                        flows_reply(sid, session.completed));
    }
    sessions_.complete_stage(sid, t);
    session.completed.insert(t);
  }
  if (!some_flow_done(session.completed)) {
    // The first 401 carries only flows/params/session (and completed stages): an errcode would
    // mean a failed attempt, which clients show to the user as an error.
    throw MatrixError(401, "", "User-interactive authentication required", flows_reply(sid, session.completed));
  }
}

Session RegistrationService::register_user(const boost::json::object& body, const std::string& remote_address) {
  int64_t now = core::steady_ms();
  // Only the registration parameters are remembered (in memory, per session): a body may carry up
  // to max_request_body_size of other keys, and sessions are created without authentication.
  boost::json::object params;
  for (const char* key : {"username", "password", "device_id", "initial_device_display_name", "inhibit_login",
                          "refresh_token"}) {
    if (auto* v = body.if_contains(key)) params[key] = *v;
  }
  const boost::json::object* auth = auth_object(body);
  // The session: the one named in `auth`, else a new one remembering these parameters.
  UiaSessions::Session session;
  std::string sid = open_session(auth, "POST /register", now, session);
  // Synapse: parameters sent again replace the remembered ones; none sent means "as before".
  // They (the password too) stay in memory only, for the session's 30 minutes at most.
  if (params.empty()) {
    params = session.params;
  } else {
    sessions_.set_params(sid, params);
  }

  auto username = string_field(params, "username");
  if (username) username = lower(*username);  // Synapse lower-cases requested names
  auto password = string_field(params, "password");
  auto device_id = string_field(params, "device_id");
  auto display_name = string_field(params, "initial_device_display_name");
  bool inhibit_login = false;
  if (auto* v = params.if_contains("inhibit_login"); v && v->is_bool()) inhibit_login = v->as_bool();
  bool refresh_token = false;
  if (auto* v = params.if_contains("refresh_token"); v && v->is_bool()) refresh_token = v->as_bool();

  // A taken or invalid name is reported before the client is sent through auth (as Synapse),
  // unless this very session registered it.
  if (username && (session.result.empty() || session.result != "@" + *username + ":" + cfg_.server_name)) {
    accounts_.check_new_localpart(*username);
  }

  attempt_stage(auth, sid, session, now, remote_address);

  // Done before: the same user again, with a fresh device and token (Synapse).
  if (!session.result.empty()) {
    if (inhibit_login) return Session{session.result, std::nullopt, std::nullopt};
    return accounts_.issue_session(session.result, device_id, display_name, refresh_token);
  }
  accounts_.registration_limiter().take(remote_address);
  std::string localpart;
  if (username) {
    localpart = *username;
  } else {
    // No name asked for: pick a random lower-case one (valid under the strict grammar).
    localpart = lower(core::random_string(12));
  }
  auto s = accounts_.register_user(localpart, password, device_id, display_name, inhibit_login, std::nullopt, false,
                                   refresh_token);
  sessions_.set_result(sid, s.user_id);
  // The token this session held counts one completed use (Synapse: pending becomes completed).
  if (tokens_ && session.completed.count(kTokenStage)) tokens_->complete(sid);
  return s;
}

std::string RegistrationService::authenticate_guest_upgrade(const boost::json::object& body,
                                                            const std::string& remote_address) {
  int64_t now = core::steady_ms();
  const boost::json::object* auth = auth_object(body);
  UiaSessions::Session session;
  std::string sid = open_session(auth, kGuestUpgrade, now, session);
  attempt_stage(auth, sid, session, now, remote_address);
  return sid;
}

void RegistrationService::finish_guest_upgrade(const std::string& sid) {
  if (tokens_) tokens_->complete(sid);
  sessions_.remove(sid);
}

}  // namespace trestle::service
