// Single sign-on (spec: login.yaml's m.login.sso and m.login.token, sso_login_redirect.yaml) with
// a CAS server (Synapse's cas_config), and the m.login.sso stage of user-interactive auth.
#include "api/appservice/offload.hpp"
#include "api/handler_util.hpp"
#include "api/routes.hpp"

namespace trestle::api {

using http::Auth;

namespace {

http::Response redirect(const std::string& location) {
  http::Response r;
  r.status = 302;
  r.content_type = "text/plain";
  r.headers.emplace_back("Location", location);
  return r;
}

http::Response html(const std::string& body) {
  http::Response r;
  r.content_type = "text/html; charset=utf-8";
  r.body = body;
  return r;
}

}  // namespace

void add_sso_routes(http::Router& r, service::Homeserver& hs) {
  auto sso_redirect = [&hs](http::Request& req, const service::Requester&) -> http::Reply {
    // Like Synapse: without SSO configured the endpoint is unknown (404 M_UNRECOGNIZED); an idpId
    // other than the one /login lists ("cas") is 404 M_NOT_FOUND.
    if (!hs.sso.cas_enabled()) throw MatrixError(404, "M_UNRECOGNIZED", "Single sign-on is not enabled");
    if (!req.params.empty() && req.params[0] != "cas") throw MatrixError::not_found("Unknown identity provider");
    auto target = req.query_param("redirectUrl");
    if (!target || target->empty()) throw MatrixError::missing_param("Missing redirectUrl");
    return redirect(hs.sso.cas_login_url(target, std::nullopt));
  };
  r.client("GET", "/login/sso/redirect", Auth::none, sso_redirect);
  r.client("GET", "/login/sso/redirect/{}", Auth::none, sso_redirect);
  r.client("GET", "/login/cas/redirect", Auth::none, sso_redirect);

  // Where the CAS server sends the browser back: validating the ticket calls the CAS server.
  r.client("GET", "/login/cas/ticket", Auth::none, [&hs](http::Request& req, const service::Requester&) -> http::Reply {
    auto ticket = req.query_param("ticket");
    if (!ticket || ticket->empty()) throw MatrixError::missing_param("Missing ticket");
    return offload_if(true, [&hs, ticket = *ticket, target = req.query_param("redirectUrl"),
                             session = req.query_param("session")]() -> http::Reply {
      return html(hs.sso.handle_cas_ticket(ticket, target, session));
    });
  });

  // The fallback page of the m.login.sso UIA stage: straight to the CAS server for this session.
  r.client("GET", "/auth/m.login.sso/fallback/web", Auth::none, [&hs](http::Request& req, const service::Requester&) -> http::Reply {
    if (!hs.sso.cas_enabled()) throw MatrixError(404, "M_UNRECOGNIZED", "Single sign-on is not enabled");
    auto session = req.query_param("session");
    if (!session || session->empty()) throw MatrixError::missing_param("Missing session");
    return redirect(hs.sso.cas_login_url(std::nullopt, session));
  });
}

}  // namespace trestle::api
