#include "api/handler_util.hpp"

#include "core/json_depth.hpp"

#include <boost/json/parse.hpp>

#include <cctype>
#include <charconv>
#include <string_view>

namespace trestle::api {

std::string required_string(const boost::json::object& body, const char* key) {
  auto* v = body.if_contains(key);
  if (!v) throw MatrixError::missing_param(std::string("Missing '") + key + "'");
  if (!v->is_string()) throw MatrixError::bad_json(std::string("'") + key + "' must be a string");
  return std::string(v->as_string());
}

std::optional<std::string> optional_string(const boost::json::object& body, const char* key) {
  auto* v = body.if_contains(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_string()) throw MatrixError::bad_json(std::string("'") + key + "' must be a string");
  return std::string(v->as_string());
}

std::optional<bool> optional_bool(const boost::json::object& body, const char* key) {
  auto* v = body.if_contains(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_bool()) throw MatrixError::bad_json(std::string("'") + key + "' must be a boolean");
  return v->as_bool();
}

std::optional<int64_t> query_int(const http::Request& req, const char* key) {
  auto v = req.query_param(key);
  if (!v) return std::nullopt;
  int64_t out = 0;
  auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || ptr != v->data() + v->size()) {
    throw MatrixError::invalid_param(std::string("Query parameter '") + key + "' must be an integer");
  }
  return out;
}

std::optional<std::string> access_token(const http::Request& req) {
  const std::string& h = req.authorization;
  if (h.empty()) return req.query_param("access_token");
  // RFC 9110 11.1: the scheme name is case-insensitive ("Bearer", "bearer", "BEARER").
  static constexpr std::string_view kScheme = "bearer";
  bool bearer = h.size() > kScheme.size() && (h[kScheme.size()] == ' ' || h[kScheme.size()] == '\t');
  for (size_t i = 0; bearer && i < kScheme.size(); ++i) {
    bearer = std::tolower(static_cast<unsigned char>(h[i])) == kScheme[i];
  }
  if (bearer) {
    auto start = h.find_first_not_of(" \t", kScheme.size());
    if (start != std::string::npos) return h.substr(start);
  }
  throw MatrixError(401, "M_MISSING_TOKEN", "Unsupported Authorization scheme");
}

std::optional<bool> query_bool(const http::Request& req, const char* key) {
  auto v = req.query_param(key);
  if (!v) return std::nullopt;
  if (*v == "true") return true;
  if (*v == "false") return false;
  throw MatrixError::invalid_param(std::string("Boolean query parameter \"") + key +
                                   "\" must be one of [\"true\", \"false\"]");
}

std::optional<int64_t> query_count(const http::Request& req, const char* key) {
  auto v = query_int(req, key);
  if (v && *v < 0) throw MatrixError::invalid_param(std::string("Query parameter '") + key + "' must be a positive integer");
  return v;
}

boost::json::object query_json_object(const http::Request& req, const char* key) {
  auto f = req.query_param(key);
  if (!f || f->empty()) return {};
  boost::system::error_code ec;
  auto v = boost::json::parse(*f, ec, {}, core::json_parse_options());
  if (ec || !v.is_object()) throw MatrixError::invalid_param(std::string(key) + " must be a JSON object");
  return v.as_object();
}

}  // namespace trestle::api
