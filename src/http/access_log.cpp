#include "http/access_log.hpp"

#include "service/appservice/registration.hpp"

#include <cctype>
#include <cstdio>

namespace trestle::http {

namespace {

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) && std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

bool secret_name(std::string_view encoded) {
  std::string name = percent_decode(encoded);
  for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name.find("token") != std::string::npos || name.find("password") != std::string::npos ||
         name.find("secret") != std::string::npos || name == "ticket";
}

// Printable ASCII kept; quotes, backslashes and other bytes escaped, so a header cannot forge
// a line or a field.
std::string escape_field(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

}  // namespace

std::string redact_target(std::string_view target) {
  std::string_view path = target.substr(0, target.find('?'));
  std::string out;
  // /_synapse/admin/v1/registration_tokens/{token}: the token is a credential to register.
  constexpr std::string_view kRegTokens = "/_synapse/admin/v1/registration_tokens/";
  if (path.starts_with(kRegTokens) && path.size() > kRegTokens.size() && path.substr(kRegTokens.size()) != "new") {
    out = std::string(kRegTokens) + "<redacted>";
  } else {
    out = std::string(path);
  }
  if (path.size() == target.size()) return escape_field(out);
  std::string_view query = target.substr(path.size() + 1);
  out.push_back('?');
  bool first = true;
  while (true) {
    size_t amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    if (!first) out.push_back('&');
    first = false;
    size_t eq = param.find('=');
    if (eq != std::string_view::npos && secret_name(param.substr(0, eq))) {
      out += param.substr(0, eq + 1);
      out += "<redacted>";
    } else {
      out += param;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return escape_field(out);
}

std::string requester_for_log(const service::Requester& r) {
  if (!r.authenticated()) return "None";
  std::string out;
  if (r.appservice && r.appservice->sender != r.user_id) out = r.appservice->sender + "|";
  out += r.user_id;
  if (r.appservice && r.device_id) out += " (" + *r.device_id + ")";
  return escape_field(out);
}

std::string format_access_line(const AccessRecord& r) {
  char times[96];
  std::snprintf(times, sizeof times, "%.3fsec/%.3fsec", r.processing_seconds, r.send_seconds);
  std::string line;
  line.reserve(160 + r.target.size() + r.user_agent.size());
  line += r.client_ip.empty() ? "-" : r.client_ip;
  line += " - ";
  line += std::to_string(r.port);
  line += " - {";
  line += r.requester;
  line += "} Processed request: ";
  line += times;
  line += ' ';
  line += std::to_string(r.sent_bytes);
  line += "B ";
  line += r.code;
  line += " \"";
  line += escape_field(r.method);
  line += ' ';
  line += r.target;
  line += ' ';
  line += r.protocol;
  line += "\" \"";
  line += r.user_agent.empty() ? "-" : escape_field(r.user_agent);
  line += '"';
  return line;
}

}  // namespace trestle::http
