#include "service/sso.hpp"

#include "core/clock.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/url_encode.hpp"

#include <spdlog/spdlog.h>

namespace trestle::service {

namespace {

std::string html_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += ch;
    }
  }
  return out;
}

std::string xml_unescape(std::string s) {
  static const std::pair<const char*, const char*> kEntities[] = {
      {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&apos;", "'"}, {"&amp;", "&"}};
  for (auto [from, to] : kEntities) {
    for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += std::string_view(to).size()) {
      s.replace(pos, std::string_view(from).size(), to);
    }
  }
  return s;
}

// The text of the first <cas:NAME>...</cas:NAME> within `xml` (no nesting), trimmed.
std::optional<std::string> cas_element(std::string_view xml, const std::string& name) {
  std::string open = "<cas:" + name, close = "</cas:" + name + ">";
  size_t start = xml.find(open);
  while (start != std::string_view::npos) {
    char next = start + open.size() < xml.size() ? xml[start + open.size()] : '\0';
    if (next == '>' || next == ' ' || next == '/') break;
    start = xml.find(open, start + 1);
  }
  if (start == std::string_view::npos) return std::nullopt;
  size_t body = xml.find('>', start);
  if (body == std::string_view::npos) return std::nullopt;
  if (xml[body - 1] == '/') return std::string();  // <cas:x/>
  size_t end = xml.find(close, body);
  if (end == std::string_view::npos) return std::nullopt;
  std::string text(xml.substr(body + 1, end - body - 1));
  auto first = text.find_first_not_of(" \t\r\n");
  auto last = text.find_last_not_of(" \t\r\n");
  return first == std::string::npos ? std::string() : xml_unescape(text.substr(first, last - first + 1));
}

}  // namespace

std::string SsoService::map_username_to_localpart(const std::string& name) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char ch : name) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<unsigned char>(ch - 'A' + 'a');
    bool allowed = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.' || ch == '/';
    if (allowed) {
      out += static_cast<char>(ch);
    } else {
      out += '=';
      out += kHex[ch >> 4];
      out += kHex[ch & 15];
    }
  }
  if (!out.empty() && out[0] == '_') out = "=5f" + out.substr(1);
  return out;
}

std::string SsoService::service_url(const std::optional<std::string>& client_redirect,
                                    const std::optional<std::string>& uia_session) const {
  std::string base = cfg_.public_baseurl;
  while (!base.empty() && base.back() == '/') base.pop_back();
  // r0, as Synapse (and SyTest, which checks the exact `service` value) has it.
  std::string url = base + "/_matrix/client/r0/login/cas/ticket";
  if (uia_session) return url + "?session=" + core::percent_encode(*uia_session);
  return url + "?redirectUrl=" + core::percent_encode(client_redirect.value_or(""));
}

std::string SsoService::cas_login_url(const std::optional<std::string>& client_redirect,
                                      const std::optional<std::string>& uia_session) const {
  std::string server = cfg_.cas.server_url;
  while (!server.empty() && server.back() == '/') server.pop_back();
  return server + "/login?service=" + core::percent_encode(service_url(client_redirect, uia_session));
}

std::string SsoService::handle_cas_ticket(const std::string& ticket, const std::optional<std::string>& client_redirect,
                                          const std::optional<std::string>& uia_session) {
  if (!cas_enabled()) throw MatrixError(404, "M_UNRECOGNIZED", "CAS login is not enabled");
  std::string path = "/proxyValidate?ticket=" + core::percent_encode(ticket) +
                     "&service=" + core::percent_encode(service_url(client_redirect, uia_session));
  auto r = http_("GET", cfg_.cas.server_url, path, {}, "", 10'000);
  if (r.status != 200) {
    spdlog::warn("CAS ticket validation failed: status {} {}", r.status, r.error);
    throw MatrixError(502, "M_UNKNOWN", "Could not validate the CAS ticket");
  }
  std::string_view xml = r.body;
  auto success_at = xml.find("<cas:authenticationSuccess");
  if (success_at == std::string_view::npos) throw MatrixError(401, "M_UNAUTHORIZED", "CAS refused the ticket");
  auto user = cas_element(xml.substr(success_at), "user");
  if (!user || user->empty()) throw MatrixError(401, "M_UNAUTHORIZED", "CAS answer names no user");
  for (const auto& [name, value] : cfg_.cas.required_attributes) {
    auto got = cas_element(xml.substr(success_at), name);
    if (!got || (!value.empty() && *got != value)) {
      throw MatrixError(401, "M_UNAUTHORIZED", "You are not authorised to log in here");
    }
  }
  std::string localpart = map_username_to_localpart(*user);
  std::string user_id = "@" + localpart + ":" + cfg_.server_name;

  if (uia_session) {
    if (!accounts_.complete_sso_uia(*uia_session, user_id)) throw MatrixError(400, "M_UNKNOWN", "Unknown session ID");
    return "<!DOCTYPE html><html><head><title>Authentication successful</title></head><body>"
           "<p>Thank you. You may now close this window and return to the application.</p></body></html>";
  }
  if (!client_redirect || client_redirect->empty()) throw MatrixError::missing_param("Missing redirectUrl");
  auto existing = accounts_.get_user(user_id);
  if (existing && existing->deactivated) throw MatrixError::forbidden("This account has been deactivated");
  if (!existing) {
    accounts_.register_user(localpart, std::nullopt, std::nullopt, std::nullopt, true);
    if (!cfg_.cas.displayname_attribute.empty()) {
      if (auto name = cas_element(xml.substr(success_at), cfg_.cas.displayname_attribute); name && !name->empty()) {
        accounts_.set_profile_field(user_id, "displayname", *name);
      }
    }
  }
  accounts_.link_external_id("cas", *user, user_id);
  std::string token = issue_login_token(user_id, core::steady_ms());
  std::string target = *client_redirect + (client_redirect->find('?') == std::string::npos ? "?" : "&") +
                       "loginToken=" + core::percent_encode(token);
  return "<!DOCTYPE html><html><head><title>Continue to your application</title></head><body>"
         "<p>Continue to your application to finish logging in as " + html_escape(user_id) + ":</p>"
         "<p><a href=\"" + html_escape(target) + "\">Continue</a></p></body></html>";
}

std::string SsoService::issue_login_token(const std::string& user_id, int64_t now_ms, int64_t lifetime_ms) {
  std::string token = core::random_string(32);
  std::lock_guard lock(mu_);
  std::erase_if(login_tokens_, [&](const auto& kv) { return kv.second.expires_ms <= now_ms; });
  login_tokens_[token] = LoginToken{user_id, now_ms + lifetime_ms};
  return token;
}

std::optional<std::string> SsoService::consume_login_token(const std::string& token, int64_t now_ms) {
  std::lock_guard lock(mu_);
  auto it = login_tokens_.find(token);
  if (it == login_tokens_.end()) return std::nullopt;
  auto entry = it->second;
  login_tokens_.erase(it);
  if (entry.expires_ms <= now_ms) return std::nullopt;
  return entry.user_id;
}

}  // namespace trestle::service
