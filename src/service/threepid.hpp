#pragma once
// Email 3PIDs (spec: "Adding Account Administrative Contact Information") and the calls to
// identity servers. The homeserver validates email addresses itself: requestToken mails a link
// with a token, and following it marks the session validated; the validated session then
// registers, adds the address to an account, or (password reset) proves ownership. Binding an
// address at an identity server, unbinding it (on request, on delete, on deactivation), looking
// addresses up and storing third-party invites are calls to the identity server the client names.
#include "config/config.hpp"
#include "core/crypto.hpp"
#include "service/appservice/sender.hpp"  // OutboundHttp
#include "storage/database.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <functional>
#include <optional>
#include <string>
#include <utility>

namespace trestle::service {

// Sends one mail; returns "" or the error. Injected by main (the SMTP client lives in src/http).
using MailSender = std::function<std::string(const std::string& from, const std::string& to, const std::string& message)>;

class ThreepidService {
public:
  static constexpr int kIdentityTimeoutMs = 10000;

  ThreepidService(const config::Config& cfg, storage::Database& db, OutboundHttp http, const core::SigningKey& key);
  void set_mail_sender(MailSender m) { mail_ = std::move(m); }

  enum class Purpose { registration, add_threepid, password_reset };

  // POST .../email/requestToken: validates the inputs, refuses an address in use (registration,
  // add: 400 M_THREEPID_IN_USE) or unknown (password reset: 400 M_THREEPID_NOT_FOUND), and mails
  // a validation link unless this client secret already asked with this send_attempt. The sid.
  std::string request_email_token(Purpose p, const std::string& client_secret, const std::string& email,
                                  int64_t send_attempt);
  // The link in the mail: marks the session validated. 400 M_THREEPID_AUTH_FAILED when the token,
  // secret or session is wrong or expired.
  void submit_token(const std::string& sid, const std::string& client_secret, const std::string& token);
  // The (medium, address) a validated session proved; 400 M_THREEPID_AUTH_FAILED otherwise.
  std::pair<std::string, std::string> validated_session(const std::string& sid, const std::string& client_secret);

  // Addresses of accounts on this server.
  void add_threepid(const std::string& user_id, const std::string& medium, const std::string& address);
  boost::json::array threepids(const std::string& user_id);
  std::optional<std::string> user_for(const std::string& medium, const std::string& address);
  // Removes the address from the account and unbinds it at the identity servers (the one given,
  // else those it was bound at through us). The spec's id_server_unbind_result.
  std::string delete_threepid(const std::string& user_id, const std::string& medium, const std::string& address,
                              const std::optional<std::string>& id_server);
  // Unbinds only (POST /account/3pid/unbind).
  std::string unbind(const std::string& user_id, const std::string& medium, const std::string& address,
                     const std::optional<std::string>& id_server);
  // POST /account/3pid/bind: asks the identity server to bind the session's address to the user.
  void bind(const std::string& user_id, const std::string& id_server, const std::string& id_access_token,
            const std::string& sid, const std::string& client_secret);
  // Deactivation: unbinds everything bound through us and forgets the account's addresses. Never
  // throws for an identity server's failure; the spec's id_server_unbind_result.
  std::string on_deactivate(const std::string& user_id, const std::optional<std::string>& id_server);

  // The Matrix ID the identity server maps the address to (v2 hashed lookup), if any.
  std::optional<std::string> lookup(const std::string& id_server, const std::string& id_access_token,
                                    const std::string& medium, const std::string& address);
  // POST /_matrix/identity/v2/store-invite with `request`; the identity server's answer (token,
  // public_keys, display_name, ...), checked for a token and a public key.
  boost::json::object store_invite(const std::string& id_server, const std::string& id_access_token,
                                   const boost::json::object& request);

  // GET {key_validity_url}?public_key=...: whether the identity server still vouches for the key
  // (third-party invite signatures). False when it says no, or cannot be asked.
  bool public_key_valid(const std::string& key_validity_url, const std::string& public_key);

  // Lower-cases and checks an email address: 400 M_INVALID_PARAM when it is not one.
  static std::string canonical_email(const std::string& email);
  // 400 M_INVALID_PARAM unless [0-9a-zA-Z.=_-]{1,255} (the spec's client_secret grammar).
  static void check_client_secret(const std::string& client_secret);
  // 400 M_INVALID_PARAM unless a server name (host[:port]): never a URL or a path.
  static void check_id_server(const std::string& id_server);

private:
  struct IdResponse {
    int status = 0;
    boost::json::value body;
    std::string error;
  };
  IdResponse identity_call(const std::string& id_server, const std::string& method, const std::string& path,
                           const std::optional<std::string>& access_token, const boost::json::object* body,
                           bool sign_request = false);
  // One unbind call: true when the identity server unbound, false when it does not support it
  // or did not know the binding (400/404/501); throws 500 when it could not be reached.
  bool unbind_at(const std::string& user_id, const std::string& medium, const std::string& address,
                 const std::string& id_server);
  std::string validation_link(Purpose p, const std::string& sid, const std::string& client_secret,
                              const std::string& token) const;
  std::string validation_mail(const std::string& to, const std::string& link) const;

  const config::Config& cfg_;
  storage::Database& db_;
  OutboundHttp http_;
  const core::SigningKey& key_;
  MailSender mail_;
};

}  // namespace trestle::service
