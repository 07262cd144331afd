#include "api/schema/request_schemas.hpp"

#include "api/schema/validator.hpp"
#include "core/error.hpp"
#include "core/json_depth.hpp"

#include <boost/json/parse.hpp>

#include <vector>

namespace trestle::api::schema {

namespace json = boost::json;

namespace {

std::vector<std::string_view> segments(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    if (path.front() == '/') path.remove_prefix(1);
    size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    path = slash == std::string_view::npos ? std::string_view{} : path.substr(slash);
  }
  return out;
}

struct Entry {
  std::string method;
  std::string path;
  const json::object* schema;
};

struct Table {
  json::value root;
  std::vector<Entry> entries;
};

const Table& table() {
  static const Table t = [] {
    Table t;
    t.root = json::parse(request_schemas_json());
    for (const auto& e : t.root.as_array()) {
      const auto& o = e.as_object();
      t.entries.push_back(
          {std::string(o.at("method").as_string()), std::string(o.at("path").as_string()), &o.at("schema").as_object()});
    }
    return t;
  }();
  return t;
}

}  // namespace

const json::object* request_schema(std::string_view method, std::string_view path_template) {
  // The router serves the legacy r0 prefix with the same handlers as v3.
  std::string path(path_template);
  const std::string r0 = "/_matrix/client/r0/";
  if (path.starts_with(r0)) path = "/_matrix/client/v3/" + path.substr(r0.size());
  auto want = segments(path);
  const json::object* best = nullptr;
  int best_score = -1;
  for (const auto& e : table().entries) {
    if (e.method != method) continue;
    auto have = segments(e.path);
    if (have.size() != want.size()) continue;
    int score = 0;
    bool ok = true;
    for (size_t i = 0; i < have.size() && ok; ++i) {
      // Equal segments count, "{}" for "{}" too: a route's own template beats an entry whose
      // literal its "{}" happens to match (PUT /profile/{}/{} is not /profile/{}/avatar_url).
      if (have[i] == want[i]) score += 1;
      else ok = have[i] == "{}" || want[i] == "{}";
    }
    if (ok && score > best_score) {
      best = e.schema;
      best_score = score;
    }
  }
  return best;
}

http::BodyCheck body_check_for(const std::string& method, const std::string& path_template) {
  const json::object* schema = request_schema(method, path_template);
  if (!schema) return nullptr;
  return [schema](const http::Request& req) {
    if (req.body.empty()) return;
    boost::system::error_code ec;
    auto body = json::parse(req.body, ec, {}, core::json_parse_options());
    if (ec || !body.is_object()) return;  // the handler answers M_NOT_JSON / M_BAD_JSON
    if (auto v = validate(body, *schema)) throw MatrixError(400, v->errcode, v->message);
  };
}

}  // namespace trestle::api::schema
