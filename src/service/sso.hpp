#pragma once
// Single sign-on through CAS (Synapse's cas_config): /login/sso/redirect sends the browser to the
// CAS server; CAS sends it back to /login/cas/ticket, whose ticket is validated at the CAS
// server's /proxyValidate; the user (created on first login) then gets a short-lived login token
// for m.login.token, or the m.login.sso stage of a user-interactive authentication session.
#include "config/config.hpp"
#include "service/accounts.hpp"
#include "service/appservice/sender.hpp"

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace trestle::service {

class SsoService {
public:
  static constexpr int64_t kLoginTokenLifetimeMs = 2 * 60 * 1000;

  SsoService(const config::Config& cfg, AccountService& accounts, OutboundHttp http)
      : cfg_(cfg), accounts_(accounts), http_(std::move(http)) {}

  bool cas_enabled() const { return cfg_.cas.enabled; }
  // Where to send the browser: the CAS server's /login, with our ticket URL as `service`.
  // `client_redirect` is the client's redirectUrl; `uia_session` a UIA session to complete.
  std::string cas_login_url(const std::optional<std::string>& client_redirect,
                            const std::optional<std::string>& uia_session) const;
  // /login/cas/ticket: validates `ticket` at the CAS server (blocking call out). For a login,
  // returns the HTML page sending the browser to `client_redirect` with a loginToken; for a UIA
  // session, completes its m.login.sso stage for the CAS user. Throws MatrixError.
  std::string handle_cas_ticket(const std::string& ticket, const std::optional<std::string>& client_redirect,
                                const std::optional<std::string>& uia_session);
  // m.login.token: the user of an unexpired, unused login token (each works once).
  std::optional<std::string> consume_login_token(const std::string& token, int64_t now_ms);
  std::string issue_login_token(const std::string& user_id, int64_t now_ms, int64_t lifetime_ms = kLoginTokenLifetimeMs);

  // The Matrix localpart for an SSO user name, as Synapse maps it: lower-cased, and characters
  // outside [a-z0-9._-/] written as "=" and two hex digits.
  static std::string map_username_to_localpart(const std::string& name);

private:
  // The ticket URL the CAS server sends the browser back to (its `service` parameter).
  std::string service_url(const std::optional<std::string>& client_redirect,
                          const std::optional<std::string>& uia_session) const;

  const config::Config& cfg_;
  AccountService& accounts_;
  OutboundHttp http_;
  std::mutex mu_;
  struct LoginToken {
    std::string user_id;
    int64_t expires_ms;
  };
  std::map<std::string, LoginToken> login_tokens_;
};

}  // namespace trestle::service
