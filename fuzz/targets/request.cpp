// Fuzz target: an HTTP request as our code handles it. The input is a request head and body
// ("METHOD target HTTP/1.1\r\nName: value\r\n\r\nbody"), split the simple way (Beast's parser is
// not ours), then routed by Router::dispatch over a small route table whose handlers read the body
// with Request::json_object and the query with query_param, as real handlers do.
// Properties: dispatch never throws and never answers 500 (an exception nobody meant); every
// error is a JSON object with an errcode; a matched route's captures, percent-encoded again into
// the template, route to the same captures.
#include "core/error.hpp"
#include "fuzz_check.hpp"
#include "http/router.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

using namespace trestle;

const char* const kTemplates[] = {
    "/_matrix/client/v3/rooms/{}/send/{}/{}",
    "/_matrix/client/v3/rooms/{}/state/{}/{}",
    "/_matrix/client/v3/profile/{}/displayname",
    "/_matrix/client/v3/sync",
    "/_matrix/client/v3/login",
    "/_matrix/client/versions",
};

http::Router make_router() {
  http::Router r;
  r.set_authenticator([](const http::Request& req, bool required) {
    service::Requester who;
    std::string token = req.authorization.rfind("Bearer ", 0) == 0 ? req.authorization.substr(7)
                                                                    : req.query_param("access_token").value_or("");
    if (token == "good") who.user_id = "@fuzz:localhost";
    else if (!token.empty()) throw MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown access token");
    else if (required) throw MatrixError(401, "M_MISSING_TOKEN", "Missing access token");
    return who;
  });
  for (const char* t : kTemplates) {
    std::string tmpl = t;
    auto echo = [tmpl](http::Request& req, const service::Requester&) -> http::Reply {
      boost::json::object body = req.json_object(req.method == "GET");
      boost::json::value round = boost::json::parse(boost::json::serialize(body));
      FUZZ_CHECK(round == boost::json::value(body), "a request body does not serialise back: " + req.body);
      (void)req.query_param("since");
      return http::Response::json(boost::json::object{{"route", tmpl}});
    };
    r.add("PUT", tmpl, http::Auth::required, echo);
    r.add("GET", tmpl, http::Auth::optional, echo);
    r.add("POST", tmpl, http::Auth::none, echo);
  }
  return r;
}

const http::Router& router() {
  static const http::Router r = make_router();
  return r;
}

std::string percent_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    auto b = static_cast<unsigned char>(c);
    if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out += '%';
      out.push_back(kHex[b >> 4]);
      out.push_back(kHex[b & 15]);
    }
  }
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

struct Parsed {
  http::Request req;
  std::string target;
};

Parsed split_request(std::string_view in) {
  Parsed p;
  size_t head_end = in.find("\r\n\r\n");
  std::string_view head = in.substr(0, head_end);
  if (head_end != std::string_view::npos) p.req.body = std::string(in.substr(head_end + 4));
  size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  size_t sp1 = line.find(' ');
  p.req.method = std::string(line.substr(0, sp1));
  if (sp1 != std::string_view::npos) {
    std::string_view rest = line.substr(sp1 + 1);
    p.target = std::string(rest.substr(0, rest.find(' ')));
  }
  while (eol != std::string_view::npos) {
    size_t start = eol + 2;
    eol = head.find("\r\n", start);
    std::string_view field = head.substr(start, eol == std::string_view::npos ? std::string_view::npos : eol - start);
    size_t colon = field.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = field.substr(0, colon), value = field.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (iequals(name, "authorization")) p.req.authorization = std::string(value);
    if (iequals(name, "content-type")) p.req.content_type = std::string(value);
  }
  return p;
}

void check_reply(const http::Reply& reply, const std::string& input) {
  FUZZ_CHECK(std::holds_alternative<http::Response>(reply), "a long-poll from an echo route");
  const auto& res = std::get<http::Response>(reply);
  FUZZ_CHECK(res.status == 200 || res.status == 400 || res.status == 401 || res.status == 404 || res.status == 405,
             "status " + std::to_string(res.status) + " " + res.body + " for " + input);
  boost::system::error_code ec;
  auto v = boost::json::parse(res.body, ec);
  FUZZ_CHECK(!ec && v.is_object(), "the answer is not a JSON object: " + res.body);
  if (res.status >= 400) {
    auto* code = v.as_object().if_contains("errcode");
    FUZZ_CHECK(code && code->is_string(), "an error without errcode: " + res.body);
  }
}

}  // namespace

int trestle_fuzz_request(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  Parsed p = split_request(input);
  http::Request first = p.req;
  http::Reply reply = router().dispatch(first, p.target);
  check_reply(reply, input);
  const auto& res = std::get<http::Response>(reply);
  if (res.status != 200) return 0;

  // Encode the captures again into the route's template: the same route, the same captures.
  std::string tmpl(boost::json::parse(res.body).as_object().at("route").as_string());
  std::string target;
  size_t next = 0;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl.compare(i, 2, "{}") == 0) {
      FUZZ_CHECK(next < first.params.size(), "fewer captures than the template has");
      target += percent_encode(first.params[next++]);
      ++i;
    } else {
      target += tmpl[i];
    }
  }
  FUZZ_CHECK(next == first.params.size(), "more captures than the template has");
  if (size_t q = p.target.find('?'); q != std::string::npos) target += p.target.substr(q);
  http::Request second = p.req;
  http::Reply again = router().dispatch(second, target);
  check_reply(again, target);
  const auto& res2 = std::get<http::Response>(again);
  FUZZ_CHECK(res2.status == 200 && res2.body == res.body, "re-encoded target " + target + " answered " + res2.body);
  FUZZ_CHECK(second.params == first.params, "re-encoded target " + target + " captured other values");
  return 0;
}
