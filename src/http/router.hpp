#pragma once
// Method + path template → handler. Templates are segment lists where "{}" captures one
// percent-decoded segment. Authentication runs before the handler, so handlers get a Requester.
#include "http/request.hpp"
#include "service/requester.hpp"

#include <functional>
#include <string>
#include <vector>

namespace trestle::http {

enum class Auth { none, optional, required };

using Handler = std::function<Reply(Request&, const service::Requester&)>;
using Authenticator = std::function<service::Requester(const Request&, bool required)>;

class Router {
public:
  void set_authenticator(Authenticator a) { authenticate_ = std::move(a); }

  // Adds one route for an exact template.
  void add(const std::string& method, const std::string& path_template, Auth auth, Handler h);
  // Adds a Client-Server route under /_matrix/client/v3 and the legacy /r0 prefix.
  // `tail` starts with '/', e.g. "/rooms/{}/send/{}/{}".
  void client(const std::string& method, const std::string& tail, Auth auth, Handler h);

  // Routes a request whose `target` is the raw request target ("/path?query").
  // Fills req.path/query/params. Never throws: errors become Responses.
  Reply dispatch(Request& req, const std::string& target) const;
  // Authenticates from the headers and query alone, before a large body is read (uploads), so an
  // unauthenticated client cannot make the server store anything. The error Response, if any.
  std::optional<Response> preauthenticate(const std::string& authorization, const std::string& target) const;

private:
  struct Route {
    std::string method;
    std::vector<std::string> segments;
    Auth auth;
    Handler handler;
  };
  std::vector<Route> routes_;
  Authenticator authenticate_;
};

// Runs `fn` turning MatrixError and any other exception into an error Response.
Reply guarded(const std::function<Reply()>& fn);

}  // namespace trestle::http
