#include "api/schema/validator.hpp"

#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>
#include <re2/re2.h>

#include <map>
#include <memory>
#include <mutex>

namespace trestle::api::schema {

namespace json = boost::json;

namespace {

std::string type_name(std::string_view t) {
  if (t == "object" || t == "array" || t == "integer") return "an " + std::string(t);
  if (t == "null") return "null";
  return "a " + std::string(t);
}

bool has_type(const json::value& v, std::string_view t) {
  if (t == "string") return v.is_string();
  if (t == "integer") return v.is_int64() || v.is_uint64();
  if (t == "number") return v.is_number();
  if (t == "boolean") return v.is_bool();
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "null") return v.is_null();
  return true;  // a type this validator does not know: not its business
}

double as_double(const json::value& v) {
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  return v.get_double();
}

size_t code_points(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::optional<int64_t> int_keyword(const json::object& s, std::string_view key) {
  auto* v = s.if_contains(key);
  if (!v || !v->is_number()) return std::nullopt;
  return static_cast<int64_t>(as_double(*v));
}

// patternProperties keys are regular expressions; the spec's few are compiled once each.
const RE2& pattern(std::string_view p) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<RE2>, std::less<>> cache;
  std::lock_guard lock(mu);
  auto it = cache.find(p);
  if (it == cache.end()) it = cache.emplace(std::string(p), std::make_unique<RE2>(std::string(p))).first;
  return *it->second;
}

std::string child(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

Violation bad(const std::string& path, const std::string& what) {
  return {"M_BAD_JSON", (path.empty() ? std::string("The body") : "'" + path + "'") + " " + what};
}

std::optional<Violation> check(const json::value& v, const json::object& s, const std::string& path);

std::optional<Violation> check_type(const json::value& v, const json::object& s, const std::string& path) {
  auto* t = s.if_contains("type");
  if (!t) return std::nullopt;
  if (t->is_string()) {
    if (has_type(v, t->get_string())) return std::nullopt;
    return bad(path, "must be " + type_name(t->get_string()));
  }
  if (!t->is_array()) return std::nullopt;
  std::string names;
  for (const auto& one : t->get_array()) {
    if (!one.is_string()) continue;
    if (has_type(v, one.get_string())) return std::nullopt;
    names += (names.empty() ? "" : " or ") + type_name(one.get_string());
  }
  return bad(path, "must be " + names);
}

bool is_required(const json::object& s, std::string_view key) {
  auto* req = s.if_contains("required");
  if (!req || !req->is_array()) return false;
  for (const auto& k : req->get_array()) {
    if (k.is_string() && k.get_string() == key) return true;
  }
  return false;
}

std::optional<Violation> check_object(const json::object& o, const json::object& s, const std::string& path) {
  const auto* props = s.if_contains("properties");
  const auto* patterns = s.if_contains("patternProperties");
  const auto* additional = s.if_contains("additionalProperties");
  if (auto* req = s.if_contains("required"); req && req->is_array()) {
    for (const auto& k : req->get_array()) {
      if (k.is_string() && !o.contains(k.get_string())) {
        return Violation{"M_MISSING_PARAM", "Missing '" + child(path, k.get_string()) + "'"};
      }
    }
  }
  if (auto n = int_keyword(s, "minProperties"); n && static_cast<int64_t>(o.size()) < *n) {
    return bad(path, "must have at least " + std::to_string(*n) + " keys");
  }
  if (auto n = int_keyword(s, "maxProperties"); n && static_cast<int64_t>(o.size()) > *n) {
    return bad(path, "must have at most " + std::to_string(*n) + " keys");
  }
  for (const auto& [key, value] : o) {
    std::string p = child(path, key);
    bool known = false;
    if (props && props->is_object()) {
      if (auto* ps = props->get_object().if_contains(key); ps && ps->is_object()) {
        known = true;
        // null for an optional key means "not given" (see the header).
        bool optional_null = value.is_null() && !is_required(s, key);
        if (!optional_null) {
          if (auto e = check(value, ps->get_object(), p)) return e;
        }
      }
    }
    if (patterns && patterns->is_object()) {
      for (const auto& [re, ps] : patterns->get_object()) {
        if (!ps.is_object() || !RE2::PartialMatch(std::string_view(key), pattern(re))) continue;
        known = true;
        if (auto e = check(value, ps.get_object(), p)) return e;
      }
    }
    if (known || !additional) continue;
    if (additional->is_bool() && !additional->get_bool()) return bad(p, "is not allowed here");
    if (additional->is_object()) {
      if (auto e = check(value, additional->get_object(), p)) return e;
    }
  }
  return std::nullopt;
}

std::optional<Violation> check_array(const json::array& a, const json::object& s, const std::string& path) {
  if (auto n = int_keyword(s, "minItems"); n && static_cast<int64_t>(a.size()) < *n) {
    return bad(path, "must have at least " + std::to_string(*n) + " items");
  }
  if (auto n = int_keyword(s, "maxItems"); n && static_cast<int64_t>(a.size()) > *n) {
    return bad(path, "must have at most " + std::to_string(*n) + " items");
  }
  auto* items = s.if_contains("items");
  if (!items || !items->is_object()) return std::nullopt;
  for (size_t i = 0; i < a.size(); ++i) {
    if (auto e = check(a[i], items->get_object(), path + "[" + std::to_string(i) + "]")) return e;
  }
  return std::nullopt;
}

std::optional<Violation> check(const json::value& v, const json::object& s, const std::string& path) {
  if (auto e = check_type(v, s, path)) return e;
  if (auto* en = s.if_contains("enum"); en && en->is_array()) {
    bool found = false;
    std::string allowed;
    for (const auto& option : en->get_array()) {
      found = found || option == v;
      allowed += (allowed.empty() ? "" : ", ") + json::serialize(option);
    }
    if (!found) return bad(path, "must be one of " + allowed);
  }
  if (v.is_number()) {
    if (auto* m = s.if_contains("minimum"); m && m->is_number() && as_double(v) < as_double(*m)) {
      return bad(path, "must be at least " + json::serialize(*m));
    }
    if (auto* m = s.if_contains("maximum"); m && m->is_number() && as_double(v) > as_double(*m)) {
      return bad(path, "must be at most " + json::serialize(*m));
    }
  }
  if (v.is_string()) {
    size_t n = code_points(v.get_string());
    if (auto m = int_keyword(s, "minLength"); m && static_cast<int64_t>(n) < *m) {
      return bad(path, "must be at least " + std::to_string(*m) + " characters long");
    }
    if (auto m = int_keyword(s, "maxLength"); m && static_cast<int64_t>(n) > *m) {
      return bad(path, "must be at most " + std::to_string(*m) + " characters long");
    }
  }
  if (v.is_object()) {
    if (auto e = check_object(v.get_object(), s, path)) return e;
  }
  if (v.is_array()) {
    if (auto e = check_array(v.get_array(), s, path)) return e;
  }
  if (auto* all = s.if_contains("allOf"); all && all->is_array()) {
    for (const auto& part : all->get_array()) {
      if (!part.is_object()) continue;
      if (auto e = check(v, part.get_object(), path)) return e;
    }
  }
  for (const char* kw : {"oneOf", "anyOf"}) {
    auto* alts = s.if_contains(kw);
    if (!alts || !alts->is_array()) continue;
    size_t ok = 0;
    std::optional<Violation> only_error;
    for (const auto& alt : alts->get_array()) {
      if (!alt.is_object()) continue;
      auto e = check(v, alt.get_object(), path);
      if (!e) ++ok;
      else if (alts->get_array().size() == 1) only_error = e;
    }
    if (only_error) return only_error;
    if (ok == 0) return bad(path, "does not match any of the allowed forms");
    if (ok > 1 && std::string_view(kw) == "oneOf") return bad(path, "matches more than one of the allowed forms");
  }
  return std::nullopt;
}

}  // namespace

std::optional<Violation> validate(const json::value& value, const json::object& schema) {
  return check(value, schema, "");
}

}  // namespace trestle::api::schema
