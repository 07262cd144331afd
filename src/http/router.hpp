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
// Where a route's handler runs. on_workers: the worker pool (it may block: database writes it
// waits for, password hashing, files). on_io_thread: the connection's own thread, no hand-off
// (~30 us less per request here): only handlers that never wait long, i.e. read the database at
// most briefly and answer what must wait (a write's group commit) with http::Deferred.
enum class Runs { on_workers, on_io_thread };

using Handler = std::function<Reply(Request&, const service::Requester&)>;
using Authenticator = std::function<service::Requester(const Request&, bool required)>;
// Checks a request's body before its handler runs (throws MatrixError); empty = no check.
using BodyCheck = std::function<void(const Request&)>;
// Called once for each route as it is added: the body check for that method and path template.
using BodyCheckFactory = std::function<BodyCheck(const std::string& method, const std::string& path_template)>;

class Router {
  struct Route;  // one added route (private, below)

public:
  void set_authenticator(Authenticator a) { authenticate_ = std::move(a); }
  // Runs before each request's authentication (a worker process catching up with the stream
  // writer, so a request sees every write acknowledged before it). May throw a MatrixError.
  void set_preamble(std::function<void()> f) { preamble_ = std::move(f); }
  // Applies to the routes added after this call: each request's body is checked after
  // authentication and before the handler (the spec's request schemas, see api/schema).
  void set_body_checks(BodyCheckFactory f) { body_checks_ = std::move(f); }

  // Adds one route for an exact template.
  void add(const std::string& method, const std::string& path_template, Auth auth, Handler h,
           Runs runs = Runs::on_workers);
  // Adds a Client-Server route under /_matrix/client/v3 and the legacy /r0 prefix.
  // `tail` starts with '/', e.g. "/rooms/{}/send/{}/{}".
  void client(const std::string& method, const std::string& tail, Auth auth, Handler h,
              Runs runs = Runs::on_workers);

  // Routes a request whose `target` is the raw request target ("/path?query").
  // Fills req.path/query/params. Never throws: errors become Responses.
  Reply dispatch(Request& req, const std::string& target) const;
  // dispatch() in two steps, so the transport can choose the thread: resolve() parses and matches
  // (fills req.path/query/params/route) and gives the route, or the error to answer; run()
  // authenticates, checks the body and calls the handler (never throws).
  struct Resolved {
    const Route* route = nullptr;  // null: answer `error`
    Runs runs = Runs::on_workers;
    Response error;
  };
  Resolved resolve(Request& req, const std::string& target) const;
  Reply run(Request& req, const Resolved& resolved) const;
  // Authenticates from the headers and query alone, before a large body is read (uploads), so an
  // unauthenticated client cannot make the server store anything. The error Response, if any.
  std::optional<Response> preauthenticate(const std::string& authorization, const std::string& target) const;

private:
  struct Route {
    std::string method;
    std::vector<std::string> segments;
    Auth auth;
    Handler handler;
    BodyCheck check_body;
    std::string path_template;
    Runs runs = Runs::on_workers;
  };
  std::vector<Route> routes_;
  Authenticator authenticate_;
  std::function<void()> preamble_;
  BodyCheckFactory body_checks_;
};

// Runs `fn` turning MatrixError and any other exception into an error Response.
Reply guarded(const std::function<Reply()>& fn);
// The error Response for an exception (as guarded() answers it).
Response error_response(std::exception_ptr error);

}  // namespace trestle::http
