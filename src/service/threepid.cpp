#include "service/threepid.hpp"

#include "core/canonical_json.hpp"
#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/identifiers.hpp"
#include "room/event_crypto.hpp"
#include "storage/threepid_store.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>

namespace trestle::service {

namespace db3 = storage::threepids;
using boost::json::array;
using boost::json::object;

namespace {

MatrixError auth_failed(const std::string& why) { return MatrixError(400, "M_THREEPID_AUTH_FAILED", why); }

// Percent-encodes a query value (our tokens and secrets are [0-9a-zA-Z.=_-], '=' needs it).
std::string query_escape(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      out += static_cast<char>(ch);
    } else {
      out += '%';
      out += hex[ch >> 4];
      out += hex[ch & 15];
    }
  }
  return out;
}

// "Name <addr>" or "addr" → "addr".
std::string bare_address(const std::string& from) {
  auto lt = from.find('<');
  auto gt = from.find('>', lt == std::string::npos ? 0 : lt);
  if (lt != std::string::npos && gt != std::string::npos) return from.substr(lt + 1, gt - lt - 1);
  return from;
}

std::string rfc2822_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buf;
}

}  // namespace

ThreepidService::ThreepidService(const config::Config& cfg, storage::Database& db, OutboundHttp http,
                                 const core::SigningKey& key)
    : cfg_(cfg), db_(db), http_(std::move(http)), key_(key) {}

std::string ThreepidService::canonical_email(const std::string& email) {
  std::string e = email;
  // Surrounding blanks are a client's slip; anything else odd means it is not an address.
  while (!e.empty() && (e.back() == ' ' || e.back() == '\t')) e.pop_back();
  e.erase(0, std::min(e.find_first_not_of(" \t"), e.size()));
  auto at = e.find('@');
  bool ok = !e.empty() && e.size() <= 500 && at != std::string::npos && at > 0 && at + 1 < e.size() &&
            e.find('@', at + 1) == std::string::npos &&
            std::none_of(e.begin(), e.end(), [](unsigned char ch) {
              return ch <= ' ' || ch == '<' || ch == '>' || ch == '(' || ch == ')' || ch == ',' || ch == ';' ||
                     ch == '"' || ch == '\\' || ch == 0x7f;
            });
  if (!ok) throw MatrixError::invalid_param("Unable to parse email address");
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return e;
}

void ThreepidService::check_client_secret(const std::string& s) {
  bool ok = !s.empty() && s.size() <= 255 && std::all_of(s.begin(), s.end(), [](unsigned char ch) {
    return std::isalnum(ch) || ch == '.' || ch == '=' || ch == '_' || ch == '-';
  });
  if (!ok) throw MatrixError::invalid_param("Invalid client_secret");
}

void ThreepidService::check_id_server(const std::string& id_server) {
  if (!core::is_valid_server_name(id_server)) throw MatrixError::invalid_param("Invalid id_server");
}

std::string ThreepidService::request_email_token(Purpose p, const std::string& client_secret, const std::string& email,
                                                 int64_t send_attempt) {
  if (!cfg_.email.enabled || !mail_) {
    throw MatrixError(400, "M_THREEPID_MEDIUM_NOT_SUPPORTED", "Email is not configured on this server");
  }
  check_client_secret(client_secret);
  std::string address = canonical_email(email);
  auto owner = user_for("email", address);
  if (p == Purpose::password_reset && !owner) {
    throw MatrixError(400, "M_THREEPID_NOT_FOUND", "Email not found");
  }
  if (p != Purpose::password_reset && owner) {
    throw MatrixError(400, "M_THREEPID_IN_USE", "Email is already in use");
  }
  int64_t now = core::now_ms();
  auto existing = db_.read([&](storage::Connection& c) { return db3::find_session(c, client_secret, "email", address); });
  if (existing && existing->created_ts + cfg_.email.validation_token_lifetime_ms < now) existing.reset();
  // The same request again (a retry): the same session, and no second mail.
  if (existing && send_attempt <= existing->send_attempt) return existing->session_id;
  db3::ValidationSession s;
  if (existing) {
    s = *existing;
    s.send_attempt = send_attempt;
    db_.write([&](storage::Connection& c) { db3::set_send_attempt(c, s.session_id, send_attempt); });
  } else {
    s.session_id = core::random_string(24);
    s.medium = "email";
    s.address = address;
    s.client_secret = client_secret;
    s.token = core::random_string(32);
    s.send_attempt = send_attempt;
    s.created_ts = now;
    db_.write([&](storage::Connection& c) {
      db3::delete_sessions_before(c, now - cfg_.email.validation_token_lifetime_ms);
      db3::insert_session(c, s);
    });
  }
  auto message = validation_mail(address, validation_link(p, s.session_id, client_secret, s.token));
  if (auto err = mail_(bare_address(cfg_.email.notif_from), address, message); !err.empty()) {
    spdlog::warn("could not send a validation email: {}", err);
    throw MatrixError(500, "M_UNKNOWN", "An error was encountered when sending the email");
  }
  return s.session_id;
}

std::string ThreepidService::validation_link(Purpose p, const std::string& sid, const std::string& client_secret,
                                             const std::string& token) const {
  std::string base = cfg_.public_baseurl.empty() ? "https://" + cfg_.server_name + "/" : cfg_.public_baseurl;
  if (base.back() != '/') base += '/';
  const char* path = p == Purpose::registration   ? "_matrix/client/unstable/registration/email/submit_token"
                     : p == Purpose::add_threepid ? "_matrix/client/unstable/add_threepid/email/submit_token"
                                                  : "_synapse/client/password_reset/email/submit_token";
  return base + path + "?token=" + query_escape(token) + "&client_secret=" + query_escape(client_secret) +
         "&sid=" + query_escape(sid);
}

std::string ThreepidService::validation_mail(const std::string& to, const std::string& link) const {
  std::string from_host = cfg_.server_name.substr(0, cfg_.server_name.find(':'));
  return "From: " + cfg_.email.notif_from + "\r\nTo: " + to + "\r\nSubject: [" + cfg_.email.app_name +
         "] Validate your email\r\nDate: " + rfc2822_now() + "\r\nMessage-ID: <" + core::random_string(16) + "@" +
         from_host + ">\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
         "Content-Transfer-Encoding: 8bit\r\n\r\n"
         "A request was made to use this email address on " + cfg_.server_name +
         ".\r\nIf this was you, follow this link to confirm it:\r\n\r\n" + link +
         "\r\n\r\nIf it was not you, ignore this email.\r\n";
}

void ThreepidService::submit_token(const std::string& sid, const std::string& client_secret, const std::string& token) {
  auto s = db_.read([&](storage::Connection& c) { return db3::get_session(c, sid); });
  bool ok = s && s->client_secret == client_secret && s->token == token &&
            s->created_ts + cfg_.email.validation_token_lifetime_ms >= core::now_ms();
  if (!ok) throw auth_failed("Validation token not found or has expired");
  db_.write([&](storage::Connection& c) { db3::set_validated(c, sid, core::now_ms()); });
}

std::pair<std::string, std::string> ThreepidService::validated_session(const std::string& sid,
                                                                       const std::string& client_secret) {
  auto s = db_.read([&](storage::Connection& c) { return db3::get_session(c, sid); });
  if (!s || s->client_secret != client_secret || !s->validated_at) {
    throw auth_failed("No validated 3pid session found");
  }
  return {s->medium, s->address};
}

void ThreepidService::add_threepid(const std::string& user_id, const std::string& medium, const std::string& address) {
  int64_t now = core::now_ms();
  db_.write([&](storage::Connection& c) {
    if (auto owner = db3::user_for_threepid(c, medium, address); owner && *owner != user_id) {
      throw MatrixError(400, "M_THREEPID_IN_USE", "This address is already in use by another account");
    }
    db3::upsert_threepid(c, db3::Threepid{user_id, medium, address, now, now});
  });
}

array ThreepidService::threepids(const std::string& user_id) {
  auto rows = db_.read([&](storage::Connection& c) { return db3::user_threepids(c, user_id); });
  array out;
  for (const auto& t : rows) {
    out.push_back(object{{"medium", t.medium}, {"address", t.address}, {"validated_at", t.validated_at},
                         {"added_at", t.added_at}});
  }
  return out;
}

std::optional<std::string> ThreepidService::user_for(const std::string& medium, const std::string& address) {
  return db_.read([&](storage::Connection& c) { return db3::user_for_threepid(c, medium, address); });
}

ThreepidService::IdResponse ThreepidService::identity_call(const std::string& id_server, const std::string& method,
                                                           const std::string& path,
                                                           const std::optional<std::string>& access_token,
                                                           const object* body, bool sign_request) {
  check_id_server(id_server);
  std::vector<std::pair<std::string, std::string>> headers;
  if (access_token) headers.emplace_back("Authorization", "Bearer " + *access_token);
  std::string text = body ? boost::json::serialize(*body) : "";
  if (sign_request && body) {
    // The spec's request authentication between servers (as for federation): the identity
    // server may check that the unbind comes from the user's homeserver.
    object to_sign{{"method", method}, {"uri", path}, {"origin", cfg_.server_name}, {"destination", id_server},
                   {"content", *body}};
    room::sign_json(to_sign, cfg_.server_name, key_);
    std::string sig(to_sign["signatures"].as_object()[cfg_.server_name].as_object()[key_.key_id()].as_string());
    headers.emplace_back("Authorization", "X-Matrix origin=\"" + cfg_.server_name + "\",destination=\"" + id_server +
                                              "\",key=\"" + key_.key_id() + "\",sig=\"" + sig + "\"");
  }
  auto r = http_(method, cfg_.identity_server_scheme + "://" + id_server, path, headers, text, kIdentityTimeoutMs);
  IdResponse out;
  out.status = r.status;
  out.error = r.error;
  if (r.status != 0) {
    boost::system::error_code ec;
    auto v = boost::json::parse(r.body, ec);
    if (!ec) out.body = std::move(v);
  }
  if (r.status == 0) spdlog::warn("identity server {} unreachable: {}", id_server, r.error);
  return out;
}

namespace {
// An identity server's refusal passed on to the client (its status and errcode when it gave them).
MatrixError identity_error(int status, const boost::json::value& body, const std::string& what) {
  if (status == 0) return MatrixError(500, "M_UNKNOWN", "Failed to contact identity server");
  std::string errcode = "M_UNKNOWN";
  std::string message = what + " (identity server answered " + std::to_string(status) + ")";
  if (const auto* o = body.if_object()) {
    if (const auto* e = o->if_contains("errcode"); e && e->is_string()) errcode = std::string(e->as_string());
    if (const auto* m = o->if_contains("error"); m && m->is_string()) message = std::string(m->as_string());
  }
  return MatrixError(status >= 400 && status < 500 ? status : 502, errcode, message);
}
}  // namespace

void ThreepidService::bind(const std::string& user_id, const std::string& id_server, const std::string& id_access_token,
                           const std::string& sid, const std::string& client_secret) {
  check_client_secret(client_secret);
  object body{{"sid", sid}, {"client_secret", client_secret}, {"mxid", user_id}};
  auto r = identity_call(id_server, "POST", "/_matrix/identity/v2/3pid/bind", id_access_token, &body);
  if (r.status != 200) throw identity_error(r.status, r.body, "Could not bind the address");
  const auto* o = r.body.if_object();
  const auto* medium = o ? o->if_contains("medium") : nullptr;
  const auto* address = o ? o->if_contains("address") : nullptr;
  if (!medium || !medium->is_string() || !address || !address->is_string()) {
    throw MatrixError(502, "M_UNKNOWN", "The identity server's bind answer lacks medium or address");
  }
  db_.write([&](storage::Connection& c) {
    db3::add_id_server(c, user_id, std::string(medium->as_string()), std::string(address->as_string()), id_server);
  });
}

bool ThreepidService::unbind_at(const std::string& user_id, const std::string& medium, const std::string& address,
                                const std::string& id_server) {
  object body{{"mxid", user_id}, {"threepid", object{{"medium", medium}, {"address", address}}}};
  auto r = identity_call(id_server, "POST", "/_matrix/identity/v2/3pid/unbind", std::nullopt, &body, true);
  bool unbound = r.status == 200;
  if (!unbound && r.status != 400 && r.status != 404 && r.status != 501) {
    throw MatrixError(500, "M_UNKNOWN", "Failed to contact identity server");
  }
  // Unbound, or the identity server does not know the binding: either way it is not ours to retry.
  db_.write([&](storage::Connection& c) { db3::remove_id_server(c, user_id, medium, address, id_server); });
  return unbound;
}

std::string ThreepidService::unbind(const std::string& user_id, const std::string& medium, const std::string& address,
                                    const std::optional<std::string>& id_server) {
  std::vector<std::string> servers;
  if (id_server) {
    check_id_server(*id_server);
    servers.push_back(*id_server);
  } else {
    servers = db_.read([&](storage::Connection& c) { return db3::id_servers(c, user_id, medium, address); });
  }
  if (servers.empty()) return "no-support";
  bool all = true;
  for (const auto& s : servers) all = unbind_at(user_id, medium, address, s) && all;
  return all ? "success" : "no-support";
}

std::string ThreepidService::delete_threepid(const std::string& user_id, const std::string& medium,
                                             const std::string& address, const std::optional<std::string>& id_server) {
  std::string result = unbind(user_id, medium, address, id_server);
  db_.write([&](storage::Connection& c) { db3::delete_threepid(c, user_id, medium, address); });
  return result;
}

std::string ThreepidService::on_deactivate(const std::string& user_id, const std::optional<std::string>& id_server) {
  auto bindings = db_.read([&](storage::Connection& c) { return db3::user_bindings(c, user_id); });
  bool all = true;
  for (const auto& b : bindings) {
    try {
      all = unbind_at(user_id, b.medium, b.address, b.id_server) && all;
    } catch (const MatrixError& e) {
      spdlog::warn("deactivating {}: could not unbind a 3PID at {}: {}", user_id, b.id_server, e.what());
      all = false;
    }
  }
  if (id_server && core::is_valid_server_name(*id_server)) {
    // Addresses on the account the client says are bound at this identity server too.
    auto local = db_.read([&](storage::Connection& c) { return db3::user_threepids(c, user_id); });
    for (const auto& t : local) {
      bool done = std::any_of(bindings.begin(), bindings.end(), [&](const auto& b) {
        return b.medium == t.medium && b.address == t.address && b.id_server == *id_server;
      });
      if (done) continue;
      try {
        all = unbind_at(user_id, t.medium, t.address, *id_server) && all;
      } catch (const MatrixError&) {
        all = false;
      }
    }
  }
  db_.write([&](storage::Connection& c) { db3::delete_user_threepids(c, user_id); });
  return all ? "success" : "no-support";
}

std::optional<std::string> ThreepidService::lookup(const std::string& id_server, const std::string& id_access_token,
                                                   const std::string& medium, const std::string& address) {
  auto details = identity_call(id_server, "GET", "/_matrix/identity/v2/hash_details", id_access_token, nullptr);
  if (details.status != 200 || !details.body.is_object()) {
    throw identity_error(details.status, details.body, "Identity server lookup failed");
  }
  const auto& d = details.body.as_object();
  const auto* pepper = d.if_contains("lookup_pepper");
  const auto* algorithms = d.if_contains("algorithms");
  if (!pepper || !pepper->is_string() || !algorithms || !algorithms->is_array()) {
    throw MatrixError(502, "M_UNKNOWN", "The identity server's hash_details answer is malformed");
  }
  auto supports = [&](const char* name) {
    const auto& a = algorithms->as_array();
    return std::any_of(a.begin(), a.end(), [&](const auto& v) { return v.is_string() && v.as_string() == name; });
  };
  std::string key;
  object body{{"pepper", pepper->as_string()}};
  if (supports("sha256")) {
    // Hashed, so the identity server never learns addresses it does not know (spec: v2 lookup).
    key = core::base64url_encode(core::sha256(address + " " + medium + " " + std::string(pepper->as_string())));
    body["algorithm"] = "sha256";
  } else if (supports("none")) {
    key = address + " " + medium;
    body["algorithm"] = "none";
  } else {
    throw MatrixError(502, "M_UNKNOWN", "The identity server offers no lookup algorithm we know");
  }
  body["addresses"] = array{key};
  auto r = identity_call(id_server, "POST", "/_matrix/identity/v2/lookup", id_access_token, &body);
  if (r.status != 200 || !r.body.is_object()) throw identity_error(r.status, r.body, "Identity server lookup failed");
  const auto* mappings = r.body.as_object().if_contains("mappings");
  if (!mappings || !mappings->is_object()) return std::nullopt;
  const auto* mxid = mappings->as_object().if_contains(key);
  if (!mxid || !mxid->is_string() || !core::parse_user_id(mxid->as_string())) return std::nullopt;
  return std::string(mxid->as_string());
}

bool ThreepidService::public_key_valid(const std::string& key_validity_url, const std::string& public_key) {
  bool https = key_validity_url.rfind("https://", 0) == 0;
  bool http = cfg_.identity_server_scheme == "http" && key_validity_url.rfind("http://", 0) == 0;
  if ((!https && !http) || key_validity_url.find_first_of("?#") != std::string::npos) return false;
  auto r = http_("GET", key_validity_url, "?public_key=" + query_escape(public_key), {}, "", kIdentityTimeoutMs);
  if (r.status != 200) {
    spdlog::warn("key validity check at {} failed: {}", key_validity_url,
                 r.status ? "status " + std::to_string(r.status) : r.error);
    return false;
  }
  boost::system::error_code ec;
  auto v = boost::json::parse(r.body, ec);
  if (ec || !v.is_object()) return false;
  const auto* valid = v.as_object().if_contains("valid");
  return valid && valid->is_bool() && valid->as_bool();
}

object ThreepidService::store_invite(const std::string& id_server, const std::string& id_access_token,
                                     const object& request) {
  auto r = identity_call(id_server, "POST", "/_matrix/identity/v2/store-invite", id_access_token, &request);
  if (r.status != 200 || !r.body.is_object()) throw identity_error(r.status, r.body, "Could not store the invite");
  const auto& o = r.body.as_object();
  const auto* token = o.if_contains("token");
  if (!token || !token->is_string() || token->as_string().empty()) {
    throw MatrixError(502, "M_UNKNOWN", "The identity server's store-invite answer lacks a token");
  }
  return o;
}

}  // namespace trestle::service
