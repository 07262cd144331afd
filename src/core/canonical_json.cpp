#include "core/canonical_json.hpp"
#include "core/utf8.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace trestle::core {
namespace {

constexpr std::int64_t kMaxSafeInteger = (std::int64_t{1} << 53) - 1;


// JSON has no separate integer type, so a double holding an exact integer (as Boost.JSON yields
// for "1e10" or "-0.0") is that integer; the spec's own example canonicalises 1e10 and -0 this
// way. Anything with a fractional part, or out of the safe range, is a float we must refuse.
std::optional<std::int64_t> integral_value(const boost::json::value& v) {
  switch (v.kind()) {
    case boost::json::kind::int64: {
      const std::int64_t n = v.get_int64();
      if (n < -kMaxSafeInteger || n > kMaxSafeInteger) return std::nullopt;
      return n;
    }
    case boost::json::kind::uint64: {
      const std::uint64_t n = v.get_uint64();
      if (n > static_cast<std::uint64_t>(kMaxSafeInteger)) return std::nullopt;
      return static_cast<std::int64_t>(n);
    }
    case boost::json::kind::double_: {
      const double d = v.get_double();
      if (!std::isfinite(d) || std::trunc(d) != d) return std::nullopt;
      if (d < -static_cast<double>(kMaxSafeInteger) || d > static_cast<double>(kMaxSafeInteger))
        return std::nullopt;
      // The integer conversion also turns -0.0 into 0; canonical JSON forbids "-0".
      return static_cast<std::int64_t>(d);
    }
    default:
      return std::nullopt;
  }
}

void append_string(std::string& out, std::string_view s) {
  if (!is_valid_utf8(s)) throw std::invalid_argument("canonical JSON: string is not valid UTF-8");
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  size_t run = 0;  // start of the bytes not yet copied (none of them needs escaping)
  for (size_t i = 0; i < s.size(); ++i) {
    const auto byte = static_cast<unsigned char>(s[i]);
    if (byte >= 0x20 && byte != '"' && byte != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (byte) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\f': out += "\\f"; break;
      case '\r': out += "\\r"; break;
      default:
        out += "\\u00";
        out.push_back(kHex[byte >> 4]);
        out.push_back(kHex[byte & 0xF]);
    }
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('"');
}

void append_value(std::string& out, const boost::json::value& v);

void append_object(std::string& out, const boost::json::object& obj, std::initializer_list<std::string_view> skip) {
  std::vector<const boost::json::key_value_pair*> members;
  members.reserve(obj.size());
  for (const auto& kv : obj) {
    if (std::find(skip.begin(), skip.end(), kv.key()) == skip.end()) members.push_back(&kv);
  }
  // UTF-8 byte order equals code point order, and string_view compares bytes as unsigned.
  std::sort(members.begin(), members.end(), [](const auto* a, const auto* b) { return a->key() < b->key(); });
  out.push_back('{');
  bool first = true;
  for (const auto* kv : members) {
    if (!first) out.push_back(',');
    first = false;
    append_string(out, kv->key());
    out.push_back(':');
    append_value(out, kv->value());
  }
  out.push_back('}');
}

void append_value(std::string& out, const boost::json::value& v) {
  switch (v.kind()) {
    case boost::json::kind::null: out += "null"; break;
    case boost::json::kind::bool_: out += v.get_bool() ? "true" : "false"; break;
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
    case boost::json::kind::double_: {
      const auto n = integral_value(v);
      if (!n) throw std::invalid_argument("canonical JSON: number is not an integer in [-(2^53)+1, (2^53)-1]");
      out += std::to_string(*n);
      break;
    }
    case boost::json::kind::string: append_string(out, v.get_string()); break;
    case boost::json::kind::array: {
      out.push_back('[');
      bool first = true;
      for (const auto& element : v.get_array()) {
        if (!first) out.push_back(',');
        first = false;
        append_value(out, element);
      }
      out.push_back(']');
      break;
    }
    case boost::json::kind::object: append_object(out, v.get_object(), {}); break;
  }
}

}  // namespace

std::string canonical_json(const boost::json::value& v) {
  std::string out;
  append_value(out, v);
  return out;
}

std::string canonical_json_without(const boost::json::object& obj, std::initializer_list<std::string_view> skip) {
  std::string out;
  append_object(out, obj, skip);
  return out;
}

bool is_canonical_compatible(const boost::json::value& v) {
  switch (v.kind()) {
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
    case boost::json::kind::double_:
      return integral_value(v).has_value();
    case boost::json::kind::string:
      return is_valid_utf8(v.get_string());
    case boost::json::kind::array:
      return std::all_of(v.get_array().begin(), v.get_array().end(),
                         [](const boost::json::value& e) { return is_canonical_compatible(e); });
    case boost::json::kind::object:
      return std::all_of(v.get_object().begin(), v.get_object().end(), [](const auto& kv) {
        return is_valid_utf8(kv.key()) && is_canonical_compatible(kv.value());
      });
    default:
      return true;
  }
}

void integralise_numbers(boost::json::value& v) {
  switch (v.kind()) {
    case boost::json::kind::double_:
      if (auto n = integral_value(v)) v = *n;
      break;
    case boost::json::kind::array:
      for (auto& e : v.get_array()) integralise_numbers(e);
      break;
    case boost::json::kind::object:
      for (auto& kv : v.get_object()) integralise_numbers(kv.value());
      break;
    default:
      break;
  }
}

bool is_event_json_compatible(const boost::json::value& v) {
  switch (v.kind()) {
    case boost::json::kind::double_:
      return false;
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
      return integral_value(v).has_value();
    case boost::json::kind::string:
      return is_valid_utf8(v.get_string());
    case boost::json::kind::array:
      return std::all_of(v.get_array().begin(), v.get_array().end(),
                         [](const boost::json::value& e) { return is_event_json_compatible(e); });
    case boost::json::kind::object:
      return std::all_of(v.get_object().begin(), v.get_object().end(), [](const auto& kv) {
        return is_valid_utf8(kv.key()) && is_event_json_compatible(kv.value());
      });
    default:
      return true;
  }
}

}  // namespace trestle::core
