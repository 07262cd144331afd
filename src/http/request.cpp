#include "http/request.hpp"

#include "core/error.hpp"
#include "core/json_depth.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace trestle::http {

std::optional<std::string> Request::query_param(const std::string& name) const {
  auto it = query.find(name);
  if (it == query.end()) return std::nullopt;
  return it->second;
}

boost::json::object Request::json_object(bool allow_empty) const {
  if (body.empty() && allow_empty) return {};
  boost::system::error_code ec;
  auto v = boost::json::parse(body, ec, {}, core::json_parse_options());
  if (ec) throw MatrixError::not_json("Content not JSON: " + ec.message());
  if (!v.is_object()) throw MatrixError::bad_json("Content must be a JSON object");
  return std::move(v.as_object());
}

Response Response::json(const boost::json::value& v, int status) {
  Response r;
  r.status = status;
  r.body = boost::json::serialize(v);
  return r;
}

Response Response::error(int status, const std::string& errcode, const std::string& message,
                         const boost::json::object& extra) {
  boost::json::object o = extra;
  o["errcode"] = errcode;
  o["error"] = message;
  return json(o, status);
}

}  // namespace trestle::http
