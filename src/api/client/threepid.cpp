// Email 3PIDs and identity servers (spec: administrative_contact.yaml, the requestToken endpoints
// of registration.yaml and password_management.yaml), the validation link the mails carry, and
// the identity server's onbind callback for third-party invites (server-server third_party_invite).
#include "api/appservice/offload.hpp"
#include "api/handler_util.hpp"
#include "api/routes.hpp"

namespace trestle::api {

using boost::json::array;
using boost::json::object;
using http::Auth;
using service::ThreepidService;

namespace {

// send_attempt: a JSON integer (some clients send a numeric string).
int64_t send_attempt_of(const object& body) {
  const auto* v = body.if_contains("send_attempt");
  if (!v) throw MatrixError::missing_param("Missing 'send_attempt'");
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<int64_t>(v->as_uint64());
  if (v->is_string()) {
    try {
      return std::stoll(std::string(v->as_string()));
    } catch (...) {
    }
  }
  throw MatrixError::invalid_param("send_attempt must be an integer");
}

http::Response html(int status, const std::string& text) {
  http::Response r;
  r.status = status;
  r.content_type = "text/html; charset=utf-8";
  r.body = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + text + "</title></head><body><p>" + text +
           "</p></body></html>\n";
  return r;
}

std::string threepid_address(const object& body, std::string& medium) {
  medium = required_string(body, "medium");
  std::string address = required_string(body, "address");
  return medium == "email" ? ThreepidService::canonical_email(address) : address;
}

}  // namespace

void add_threepid_routes(http::Router& r, service::Homeserver& hs) {
  auto& threepids = hs.threepids;

  auto request_token = [&hs, &threepids](ThreepidService::Purpose purpose) {
    return [&hs, &threepids, purpose](http::Request& req, const service::Requester&) {
      auto body = req.json_object();
      // Each request may mail an address: limited per client address like registrations.
      hs.accounts.registration_limiter().take(req.remote_address);
      std::string client_secret = required_string(body, "client_secret");
      std::string email = required_string(body, "email");
      int64_t attempt = send_attempt_of(body);
      ThreepidService::check_client_secret(client_secret);
      // Sending the mail waits on the SMTP server: off the workers.
      return offload_if(true, [&threepids, purpose, client_secret, email, attempt] {
        return ok(object{{"sid", threepids.request_email_token(purpose, client_secret, email, attempt)}});
      });
    };
  };
  r.client("POST", "/register/email/requestToken", Auth::none, request_token(ThreepidService::Purpose::registration));
  r.client("POST", "/account/3pid/email/requestToken", Auth::optional,
           request_token(ThreepidService::Purpose::add_threepid));
  r.client("POST", "/account/password/email/requestToken", Auth::none,
           request_token(ThreepidService::Purpose::password_reset));
  auto no_sms = [](http::Request&, const service::Requester&) -> http::Reply {
    throw MatrixError(400, "M_THREEPID_MEDIUM_NOT_SUPPORTED", "Phone numbers are not supported on this server");
  };
  for (const char* p : {"/register/msisdn/requestToken", "/account/3pid/msisdn/requestToken",
                        "/account/password/msisdn/requestToken"}) {
    r.client("POST", p, Auth::none, no_sms);
  }

  // The link in the validation mail (a browser follows it), and the JSON form of the same.
  auto submit_get = [&threepids](http::Request& req, const service::Requester&) -> http::Reply {
    auto sid = req.query_param("sid");
    auto secret = req.query_param("client_secret");
    auto token = req.query_param("token");
    if (!sid || !secret || !token) return html(400, "This link is incomplete.");
    try {
      threepids.submit_token(*sid, *secret, *token);
    } catch (const MatrixError&) {
      return html(400, "This validation link is invalid or has expired.");
    }
    return html(200, "Your email address has been validated. You may now return to your client.");
  };
  auto submit_post = [&threepids](http::Request& req, const service::Requester&) -> http::Reply {
    auto body = req.json_object();
    threepids.submit_token(required_string(body, "sid"), required_string(body, "client_secret"),
                           required_string(body, "token"));
    return ok(object{{"success", true}});
  };
  for (const char* p : {"/_matrix/client/unstable/registration/email/submit_token",
                        "/_matrix/client/unstable/add_threepid/email/submit_token",
                        "/_synapse/client/password_reset/email/submit_token"}) {
    r.add("GET", p, Auth::none, submit_get);
    r.add("POST", p, Auth::none, submit_post);
  }

  r.client("GET", "/account/3pid", Auth::required, [&threepids](http::Request&, const service::Requester& who) {
    return ok(object{{"threepids", threepids.threepids(who.user_id)}});
  });

  // Deprecated: adds a validated address (three_pid_creds), and binds it when `bind` asks.
  r.client("POST", "/account/3pid", Auth::required, [&threepids](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    const auto* creds = body.if_contains("three_pid_creds");
    if (!creds) creds = body.if_contains("threePidCreds");
    if (!creds) throw MatrixError::missing_param("Missing 'three_pid_creds'");
    if (!creds->is_object()) throw MatrixError::bad_json("three_pid_creds must be an object");
    std::string sid = required_string(creds->as_object(), "sid");
    std::string secret = required_string(creds->as_object(), "client_secret");
    auto id_server = optional_string(creds->as_object(), "id_server");
    auto id_token = optional_string(creds->as_object(), "id_access_token");
    bool bind = optional_bool(body, "bind").value_or(false);
    auto [medium, address] = threepids.validated_session(sid, secret);
    threepids.add_threepid(who.user_id, medium, address);
    if (!bind || !id_server || !id_token) return ok();
    return offload_if(true, [&threepids, user = who.user_id, id_server, id_token, sid, secret] {
      threepids.bind(user, *id_server, *id_token, sid, secret);
      return ok();
    });
  });

  r.client("POST", "/account/3pid/add", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    hs.accounts.require_password_uia(who, body, "POST /account/3pid/add");
    auto [medium, address] =
        hs.threepids.validated_session(required_string(body, "sid"), required_string(body, "client_secret"));
    hs.threepids.add_threepid(who.user_id, medium, address);
    return ok();
  });

  auto bind = [&threepids](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    std::string id_server = required_string(body, "id_server");
    std::string id_token = required_string(body, "id_access_token");
    std::string sid = required_string(body, "sid");
    std::string secret = required_string(body, "client_secret");
    ThreepidService::check_id_server(id_server);
    ThreepidService::check_client_secret(secret);
    return offload_if(true, [&threepids, user = who.user_id, id_server, id_token, sid, secret] {
      threepids.bind(user, id_server, id_token, sid, secret);
      return ok();
    });
  };
  r.client("POST", "/account/3pid/bind", Auth::required, bind);
  r.add("POST", "/_matrix/client/unstable/account/3pid/bind", Auth::required, bind);

  auto unbind_or_delete = [&threepids](bool remove) {
    return [&threepids, remove](http::Request& req, const service::Requester& who) {
      auto body = req.json_object();
      std::string medium;
      std::string address = threepid_address(body, medium);
      auto id_server = optional_string(body, "id_server");
      if (id_server) ThreepidService::check_id_server(*id_server);
      return offload_if(true, [&threepids, remove, user = who.user_id, medium, address, id_server] {
        std::string result = remove ? threepids.delete_threepid(user, medium, address, id_server)
                                    : threepids.unbind(user, medium, address, id_server);
        return ok(object{{"id_server_unbind_result", result}});
      });
    };
  };
  r.client("POST", "/account/3pid/delete", Auth::required, unbind_or_delete(true));
  r.add("POST", "/_matrix/client/unstable/account/3pid/delete", Auth::required, unbind_or_delete(true));
  r.client("POST", "/account/3pid/unbind", Auth::required, unbind_or_delete(false));
  r.add("POST", "/_matrix/client/unstable/account/3pid/unbind", Auth::required, unbind_or_delete(false));

  // The identity server tells us an address with pending third-party invites was bound. No
  // authentication: each invite's signature is checked against the keys the room recorded.
  r.add("POST", "/_matrix/federation/v1/3pid/onbind", Auth::none, [&hs](http::Request& req, const service::Requester&) {
    hs.third_party_invites.on_bind(req.json_object());
    return ok();
  });
}

}  // namespace trestle::api
