#include "http/router.hpp"

#include "core/error.hpp"
#include "http/access_log.hpp"

#include <boost/url/parse.hpp>
#include <spdlog/spdlog.h>

namespace trestle::http {

namespace {

std::vector<std::string> split_template(const std::string& t) {
  std::vector<std::string> out;
  size_t start = 1;  // skip the leading '/'
  while (true) {
    size_t slash = t.find('/', start);
    out.push_back(t.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return out;
}

bool matches(const std::vector<std::string>& tmpl, const std::vector<std::string>& segs,
             std::vector<std::string>* captures) {
  if (tmpl.size() != segs.size()) return false;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] == "{}") {
      if (captures) captures->push_back(segs[i]);
    } else if (tmpl[i] != segs[i]) {
      return false;
    }
  }
  return true;
}

}  // namespace

Reply guarded(const std::function<Reply()>& fn) {
  try {
    return fn();
  } catch (...) {
    return error_response(std::current_exception());
  }
}

Response error_response(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const MatrixError& e) {
    // No errcode: a bare reply such as the first 401 of user-interactive auth.
    if (e.errcode().empty()) return Response::json(e.extra(), e.status());
    return Response::error(e.status(), e.errcode(), e.what(), e.extra());
  } catch (const std::exception& e) {
    spdlog::error("internal error: {}", e.what());
  } catch (...) {
    spdlog::error("internal error: an exception of an unknown type");
  }
  return Response::error(500, "M_UNKNOWN", "Internal server error");
}

void Router::add(const std::string& method, const std::string& path_template, Auth auth, Handler h, Runs runs) {
  BodyCheck check = body_checks_ ? body_checks_(method, path_template) : nullptr;
  routes_.push_back(
      Route{method, split_template(path_template), auth, std::move(h), std::move(check), path_template, runs});
}

void Router::client(const std::string& method, const std::string& tail, Auth auth, Handler h, Runs runs) {
  add(method, "/_matrix/client/v3" + tail, auth, h, runs);
  add(method, "/_matrix/client/r0" + tail, auth, std::move(h), runs);
}

std::optional<Response> Router::preauthenticate(const std::string& authorization, const std::string& target) const {
  Reply reply = guarded([&]() -> Reply {
    Request req;
    req.authorization = authorization;
    auto parsed = boost::urls::parse_origin_form(target);
    if (!parsed) throw MatrixError(400, "M_UNRECOGNIZED", "Malformed request target");
    for (auto p : parsed->params()) req.query.emplace(p.key, p.has_value ? p.value : "");
    if (authenticate_) authenticate_(req, true);
    return Response{};
  });
  auto& r = std::get<Response>(reply);
  if (r.status >= 400) return r;
  return std::nullopt;
}

Reply Router::dispatch(Request& req, const std::string& target) const { return run(req, resolve(req, target)); }

Router::Resolved Router::resolve(Request& req, const std::string& target) const {
  Resolved out;
  Reply reply = guarded([&]() -> Reply {
    auto parsed = boost::urls::parse_origin_form(target);
    if (!parsed) throw MatrixError(400, "M_UNRECOGNIZED", "Malformed request target");
    std::vector<std::string> segs;
    for (auto seg : parsed->encoded_segments()) segs.push_back(seg.decode());
    if (segs.empty()) segs.push_back("");
    req.path = parsed->path();
    for (auto p : parsed->params()) req.query.emplace(p.key, p.has_value ? p.value : "");

    const Route* found = nullptr;
    bool path_known = false;
    for (const auto& r : routes_) {
      if (!matches(r.segments, segs, nullptr)) continue;
      path_known = true;
      // HEAD is served by the GET route (the transport drops the body, keeps the headers).
      if (r.method == req.method || (req.method == "HEAD" && r.method == "GET")) {
        found = &r;
        break;
      }
    }
    if (!found) {
      if (path_known) throw MatrixError(405, "M_UNRECOGNIZED", "Method not allowed for this endpoint");
      throw MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request");
    }
    matches(found->segments, segs, &req.params);
    req.route = found->path_template;
    out.route = found;
    out.runs = found->runs;
    return Response{};
  });
  if (!out.route) {
    out.error = std::get<Response>(std::move(reply));
    out.runs = Runs::on_io_thread;  // an error answer needs no worker
  }
  return out;
}

Reply Router::run(Request& req, const Resolved& resolved) const {
  if (!resolved.route) return resolved.error;
  const Route* found = resolved.route;
  return guarded([&]() -> Reply {
    service::Requester requester;
    if (preamble_) preamble_();
    if (found->auth != Auth::none && authenticate_) requester = authenticate_(req, found->auth == Auth::required);
    if (requester.authenticated()) req.log_requester = requester_for_log(requester);
    if (found->check_body) found->check_body(req);
    return found->handler(req, requester);
  });
}

}  // namespace trestle::http
