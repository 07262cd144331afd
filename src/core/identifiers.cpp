#include "core/identifiers.hpp"
#include "core/utf8.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstdint>

namespace trestle::core {
namespace {

constexpr size_t kMaxIdentifierBytes = 255;

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_hex_digit(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

bool all_digits(std::string_view s) { return std::all_of(s.begin(), s.end(), is_digit); }


// The spec's opaque localparts (historical user IDs, room aliases, room IDs): any valid UTF-8
// except ':' (the separator) and NUL.
bool is_opaque_localpart(std::string_view s) {
  return s.find(':') == std::string_view::npos && s.find('\0') == std::string_view::npos && is_valid_utf8(s);
}

bool is_valid_port(std::string_view port) { return !port.empty() && port.size() <= 5 && all_digits(port); }

// Matches the grammar's IPv4address shape, "1*3DIGIT" four times separated by '.', and returns
// the four numbers; range checking is left to the caller.
std::optional<std::array<int, 4>> dotted_quad(std::string_view host) {
  std::array<int, 4> numbers{};
  size_t count = 0;
  size_t start = 0;
  while (true) {
    const size_t dot = host.find('.', start);
    const std::string_view part = host.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (count == numbers.size() || part.empty() || part.size() > 3 || !all_digits(part)) return std::nullopt;
    int value = 0;
    for (char c : part) value = value * 10 + (c - '0');
    numbers[count++] = value;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (count != numbers.size()) return std::nullopt;
  return numbers;
}

bool is_valid_ipv6(std::string_view address) {
  if (address.size() < 2 || address.size() > 45) return false;
  if (!std::all_of(address.begin(), address.end(),
                   [](char c) { return is_hex_digit(c) || c == ':' || c == '.'; }))
    return false;
  // The character grammar admits nonsense like "::::"; RFC 3513 section 2.2 is what inet_pton parses.
  const std::string terminated(address);
  in6_addr parsed{};
  return inet_pton(AF_INET6, terminated.c_str(), &parsed) == 1;
}

// dns-name = 1*255dns-char; we also insist on the conventional non-empty dot-separated labels
// (no leading, trailing or doubled dots), which the spec asks DNS names to follow.
bool is_valid_dns_name(std::string_view host) {
  if (host.empty() || host.size() > 255) return false;
  if (!std::all_of(host.begin(), host.end(), [](char c) { return is_digit(c) || is_alpha(c) || c == '-' || c == '.'; }))
    return false;
  return host.front() != '.' && host.back() != '.' && host.find("..") == std::string_view::npos;
}

// Splits "<sigil><localpart>:<server_name>" at the first ':' (localparts cannot contain one).
struct SigilParts {
  std::string_view localpart;
  std::string_view server_name;
};
std::optional<SigilParts> split_sigil_id(std::string_view s, char sigil) {
  if (s.size() > kMaxIdentifierBytes || s.empty() || s.front() != sigil) return std::nullopt;
  const size_t colon = s.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  SigilParts parts{s.substr(1, colon - 1), s.substr(colon + 1)};
  if (!is_valid_server_name(parts.server_name)) return std::nullopt;
  return parts;
}

}  // namespace

bool is_valid_server_name(std::string_view s) {
  std::string_view host = s;
  std::string_view port;
  bool has_port = false;
  if (!s.empty() && s.front() == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos) return false;
    const std::string_view rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      has_port = true;
      port = rest.substr(1);
    }
    if (has_port && !is_valid_port(port)) return false;
    return is_valid_ipv6(s.substr(1, close - 1));
  }
  const size_t colon = s.find(':');
  if (colon != std::string_view::npos) {
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (!is_valid_port(port)) return false;
  }
  // An all-numeric dotted quad is an IPv4 literal and must be in range; "999.1.1.1" is not a
  // DNS name either, since no real host name looks like an out-of-range address.
  if (auto numbers = dotted_quad(host))
    return std::all_of(numbers->begin(), numbers->end(), [](int n) { return n <= 255; });
  return is_valid_dns_name(host);
}

std::optional<UserId> parse_user_id(std::string_view s) {
  auto parts = split_sigil_id(s, '@');
  // Historical localparts may be empty or contain almost anything (spec: "Historical User IDs").
  if (!parts || !is_opaque_localpart(parts->localpart)) return std::nullopt;
  return UserId{std::string(parts->localpart), std::string(parts->server_name)};
}

bool is_valid_new_localpart(std::string_view localpart) {
  return !localpart.empty() && std::all_of(localpart.begin(), localpart.end(), [](char c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || c == '.' || c == '_' || c == '=' || c == '/' || c == '+' ||
           c == '-';
  });
}

std::optional<RoomAlias> parse_room_alias(std::string_view s) {
  auto parts = split_sigil_id(s, '#');
  if (!parts || parts->localpart.empty() || !is_opaque_localpart(parts->localpart)) return std::nullopt;
  return RoomAlias{std::string(parts->localpart), std::string(parts->server_name)};
}

bool is_valid_room_id_with_domain(std::string_view s) {
  auto parts = split_sigil_id(s, '!');
  return parts && !parts->localpart.empty() && is_opaque_localpart(parts->localpart);
}

bool is_valid_event_id(std::string_view s) {
  return s.size() >= 2 && s.size() <= kMaxIdentifierBytes && s.front() == '$' &&
         s.find('\0') == std::string_view::npos && is_valid_utf8(s);
}

bool is_valid_room_id(std::string_view s) {
  if (is_valid_room_id_with_domain(s)) return true;
  // The domain-less form has no ':' (its hash is url-safe base64), so a bad domain stays bad.
  return s.size() >= 2 && s.front() == '!' && s.find(':') == std::string_view::npos &&
         is_valid_event_id("$" + std::string(s.substr(1)));
}

}  // namespace trestle::core
