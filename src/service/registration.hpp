#pragma once
// POST /register for people (spec: "Account registration"; appservice registration stays in the
// handler): user-interactive authentication with pluggable stages. A registration session
// remembers the first request's parameters (a client may send only `auth` afterwards) and, once
// it registered someone, the user: repeating the completed request answers for that same user
// (with a new device), as Synapse does.
#include "config/config.hpp"
#include "service/accounts.hpp"
#include "service/appservice/sender.hpp"
#include "service/registration_tokens.hpp"
#include "service/uia_sessions.hpp"

#include <boost/json/object.hpp>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace trestle::service {

class RegistrationService {
public:
  // A stage's check: returns normally when `auth` (the request's `auth` object) completes the
  // stage, throws MatrixError (status 401 is filled in with the flows) when it does not.
  using StageCheck = std::function<void(const boost::json::object& auth, const std::string& remote_address)>;

  // Offers m.login.recaptcha (checked at recaptcha_siteverify_api through `http`) when configured.
  RegistrationService(const config::Config& cfg, AccountService& accounts, OutboundHttp http);
  // Whether checking this request's `auth` calls out of the server (handlers then offload it).
  bool calls_out(const boost::json::object& body) const;

  // A stage the server can check. `params` goes into the 401's `params` under the stage's name.
  // A stage listed in no flow may still be completed (Synapse does the same).
  void add_stage(const std::string& type, StageCheck check, boost::json::object params = {});
  // The flows offered, each a list of stage types; the default is [["m.login.dummy"]]. As in
  // Synapse, every flow starts with the stages the config requires of all registrations:
  // m.login.registration_token (registration_requires_token), then m.login.recaptcha.
  void set_flows(std::vector<std::vector<std::string>> flows);
  void add_flow(std::vector<std::string> flow) { flows_.push_back(with_required_stages(std::move(flow))); }
  // With registration_requires_token: the tokens the m.login.registration_token stage checks.
  void set_registration_tokens(RegistrationTokenService* tokens) { tokens_ = tokens; }

  // `body` is the request body. Returns the session of the registered user, or throws 401 with
  // flows/params/session (and errcode after a failed stage), or the registration's own errors.
  Session register_user(const boost::json::object& body, const std::string& remote_address);

  // A guest's upgrade (guest_access_token) with registration_requires_token: the same stages as
  // any registration, in a session of its own. Returns the session once a flow is complete (else
  // throws the 401); after the upgrade, finish_guest_upgrade counts the token's use.
  std::string authenticate_guest_upgrade(const boost::json::object& body, const std::string& remote_address);
  void finish_guest_upgrade(const std::string& sid);

private:
  static const boost::json::object* auth_object(const boost::json::object& body);  // body.auth, if an object
  // The UIA session `auth.session` names (400 "Unknown session ID" if it is not one of
  // `operation`'s), else a new one; fills `session` and returns its ID.
  std::string open_session(const boost::json::object* auth, const std::string& operation, int64_t now,
                           UiaSessions::Session& session);
  // Checks the stage `auth` attempts (if any) in `session`, then throws the 401 unless a flow is
  // complete.
  void attempt_stage(const boost::json::object* auth, const std::string& sid, UiaSessions::Session& session,
                     int64_t now, const std::string& remote_address);
  boost::json::object flows_reply(const std::string& sid, const std::set<std::string>& completed) const;
  bool some_flow_done(const std::set<std::string>& completed) const;
  std::vector<std::string> with_required_stages(std::vector<std::string> flow) const;
  void check_recaptcha(const boost::json::object& auth, const std::string& remote_address);

  const config::Config& cfg_;
  AccountService& accounts_;
  OutboundHttp http_;
  UiaSessions sessions_;
  struct Stage {
    StageCheck check;
    boost::json::object params;
  };
  std::map<std::string, Stage> stages_;
  std::vector<std::string> required_stages_;  // first in every flow
  std::vector<std::vector<std::string>> flows_;
  RegistrationTokenService* tokens_ = nullptr;
};

}  // namespace trestle::service
