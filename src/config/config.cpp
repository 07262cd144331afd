#include "config/config.hpp"

#include "config/yaml_fields.hpp"
#include "core/crypto.hpp"
#include "core/identifiers.hpp"
#include "room/room_version.hpp"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

namespace trestle::config {

namespace {

using detail::bad;
using detail::get;

std::string resolve(const std::string& dir, const std::string& p) {
  if (p.empty() || std::filesystem::path(p).is_absolute() || dir.empty()) return p;
  return (std::filesystem::path(dir) / p).lexically_normal().string();
}

RateLimit parse_rate(const YAML::Node& n, const std::string& key) {
  RateLimit r;
  if (!n.IsMap()) bad(key, "expected a mapping with per_second and burst_count");
  if (n["per_second"]) r.per_second = get<double>(n["per_second"], key + ".per_second", "a number");
  if (n["burst_count"]) r.burst_count = get<double>(n["burst_count"], key + ".burst_count", "a number");
  if (r.per_second < 0 || r.burst_count < 0) bad(key, "rates must not be negative");
  return r;
}

uint64_t parse_size(const YAML::Node& n, const std::string& key) {
  // Synapse accepts "50M", "10K" and plain numbers.
  std::string s = get<std::string>(n, key, "a size like 50M");
  if (s.empty()) bad(key, "empty size");
  uint64_t mult = 1;
  char last = s.back();
  if (last == 'K' || last == 'k') mult = 1024;
  if (last == 'M' || last == 'm') mult = 1024 * 1024;
  if (last == 'G' || last == 'g') mult = 1024ull * 1024 * 1024;
  if (mult != 1) s.pop_back();
  try {
    size_t used = 0;
    unsigned long long v = std::stoull(s, &used);
    if (used != s.size()) throw std::invalid_argument(s);
    return v * mult;
  } catch (const std::exception&) {
    bad(key, "expected a size like 50M");
  }
}

// Synapse's duration format: a number is milliseconds; "500ms", "30s", "5m", "1h", "2d", "1w", "1y" carry a unit.
int64_t parse_duration_ms(const YAML::Node& n, const std::string& key) {
  std::string s = get<std::string>(n, key, "a duration like 30s");
  int64_t mult = 1;
  auto ends_with = [&](std::string_view suffix) { return s.size() > suffix.size() && s.ends_with(suffix); };
  if (ends_with("ms")) s.resize(s.size() - 2);
  else if (ends_with("s")) mult = 1000, s.pop_back();
  else if (ends_with("m")) mult = 60'000, s.pop_back();
  else if (ends_with("h")) mult = 3'600'000, s.pop_back();
  else if (ends_with("d")) mult = 86'400'000, s.pop_back();
  else if (ends_with("w")) mult = 7 * 86'400'000LL, s.pop_back();
  else if (ends_with("y")) mult = 365 * 86'400'000LL, s.pop_back();
  try {
    size_t used = 0;
    long long v = std::stoll(s, &used);
    if (used != s.size() || v <= 0 || v > INT64_MAX / mult) throw std::invalid_argument(s);
    return v * mult;
  } catch (const std::exception&) {
    bad(key, "expected a positive duration like 30s, 5m or a number of milliseconds");
  }
}

uint64_t parse_count(const YAML::Node& n, const std::string& key) {
  auto v = get<long long>(n, key, "a whole number");
  if (v < 0) bad(key, "must not be negative");
  return static_cast<uint64_t>(v);
}

HttpLimits parse_http_limits(const YAML::Node& n, std::vector<std::string>& warnings) {
  HttpLimits h;
  if (n.IsNull()) return h;
  if (!n.IsMap()) bad("http_limits", "expected a mapping");
  static const std::set<std::string> known = {"header_timeout", "body_timeout", "upload_min_rate",
                                              "max_connections_per_address", "max_long_polls_per_user"};
  for (const auto& kv : n) {
    auto key = kv.first.as<std::string>();
    if (!known.count(key)) warnings.push_back("unknown config key 'http_limits." + key + "' ignored");
  }
  if (n["header_timeout"]) h.header_timeout_ms = parse_duration_ms(n["header_timeout"], "http_limits.header_timeout");
  if (n["body_timeout"]) h.body_timeout_ms = parse_duration_ms(n["body_timeout"], "http_limits.body_timeout");
  if (n["upload_min_rate"]) {
    h.upload_min_rate = parse_size(n["upload_min_rate"], "http_limits.upload_min_rate");
    if (h.upload_min_rate == 0) bad("http_limits.upload_min_rate", "must be at least 1 byte per second");
  }
  if (n["max_connections_per_address"]) {
    h.max_connections_per_address = parse_count(n["max_connections_per_address"], "http_limits.max_connections_per_address");
  }
  if (n["max_long_polls_per_user"]) {
    h.max_long_polls_per_user = parse_count(n["max_long_polls_per_user"], "http_limits.max_long_polls_per_user");
  }
  return h;
}

// Synapse's media_retention: {local_media_lifetime, remote_media_lifetime} durations or null.
Config::MediaRetention parse_media_retention(const YAML::Node& n, std::vector<std::string>& warnings) {
  Config::MediaRetention r;
  if (n.IsNull()) return r;
  if (!n.IsMap()) bad("media_retention", "expected a mapping");
  static const std::set<std::string> known = {"local_media_lifetime", "remote_media_lifetime", "check_interval"};
  for (const auto& kv : n) {
    auto key = kv.first.as<std::string>();
    if (!known.count(key)) warnings.push_back("unknown config key 'media_retention." + key + "' ignored");
  }
  auto lifetime = [&](const char* key, std::optional<int64_t>& out) {
    if (auto v = n[key]; v && !v.IsNull()) out = parse_duration_ms(v, std::string("media_retention.") + key);
  };
  lifetime("local_media_lifetime", r.local_media_lifetime_ms);
  lifetime("remote_media_lifetime", r.remote_media_lifetime_ms);
  if (n["check_interval"]) r.check_interval_ms = parse_duration_ms(n["check_interval"], "media_retention.check_interval");
  return r;
}

EmailConfig parse_email(const YAML::Node& n, std::vector<std::string>& warnings) {
  EmailConfig e;
  if (n.IsNull()) return e;
  if (!n.IsMap()) bad("email", "expected a mapping");
  static const std::set<std::string> known = {"smtp_host", "smtp_port", "notif_from", "app_name",
                                              "require_transport_security", "enable_tls",
                                              "validation_token_lifetime", "smtp_user", "smtp_pass"};
  for (const auto& kv : n) {
    auto key = kv.first.as<std::string>();
    if (!known.count(key)) warnings.push_back("unknown config key 'email." + key + "' ignored");
  }
  if (n["smtp_host"]) e.smtp_host = get<std::string>(n["smtp_host"], "email.smtp_host", "a host name");
  if (n["smtp_port"]) {
    e.smtp_port = get<int>(n["smtp_port"], "email.smtp_port", "a port number");
    if (e.smtp_port < 1 || e.smtp_port > 65535) bad("email.smtp_port", "must be between 1 and 65535");
  }
  if (n["notif_from"]) e.notif_from = get<std::string>(n["notif_from"], "email.notif_from", "an address");
  if (n["app_name"]) e.app_name = get<std::string>(n["app_name"], "email.app_name", "a string");
  if (n["validation_token_lifetime"]) {
    e.validation_token_lifetime_ms = parse_duration_ms(n["validation_token_lifetime"], "email.validation_token_lifetime");
  }
  // Mail goes out over plain SMTP only: refuse a config that asks for more rather than send in clear.
  if (n["require_transport_security"] && get<bool>(n["require_transport_security"], "email.require_transport_security", "true or false")) {
    bad("email.require_transport_security", "is not supported (Trestle sends mail over plain SMTP)");
  }
  if (n["smtp_user"] || n["smtp_pass"]) bad("email.smtp_user", "SMTP authentication is not supported");
  e.enabled = !e.smtp_host.empty();
  if (e.enabled && e.notif_from.empty()) bad("email.notif_from", "is required with smtp_host");
  return e;
}

// admin_contact (Synapse's key) and support (support_page, contacts) for /.well-known/matrix/support.
void parse_support(const YAML::Node& root, SupportConfig& out) {
  if (auto a = root["admin_contact"]; a && !a.IsNull()) out.admin_contact = get<std::string>(a, "admin_contact", "a string");
  auto s = root["support"];
  if (!s || s.IsNull()) return;
  if (!s.IsMap()) bad("support", "expected a mapping");
  if (s["support_page"] && !s["support_page"].IsNull()) {
    out.support_page = get<std::string>(s["support_page"], "support.support_page", "a URL");
  }
  if (auto cs = s["contacts"]; cs && !cs.IsNull()) {
    if (!cs.IsSequence()) bad("support.contacts", "expected a list");
    for (size_t i = 0; i < cs.size(); ++i) {
      std::string key = "support.contacts[" + std::to_string(i) + "]";
      if (!cs[i].IsMap()) bad(key, "expected a mapping");
      SupportContact sc;
      if (cs[i]["matrix_id"]) sc.matrix_id = get<std::string>(cs[i]["matrix_id"], key + ".matrix_id", "a user ID");
      if (cs[i]["email_address"]) {
        sc.email_address = get<std::string>(cs[i]["email_address"], key + ".email_address", "an email address");
      }
      if (cs[i]["role"]) sc.role = get<std::string>(cs[i]["role"], key + ".role", "a role");
      if (sc.matrix_id.empty() && sc.email_address.empty()) bad(key, "needs matrix_id or email_address");
      if (!sc.matrix_id.empty() && sc.matrix_id[0] != '@') bad(key + ".matrix_id", "must be a user ID (@user:server)");
      if (sc.role.empty()) bad(key + ".role", "must not be empty");
      out.contacts.push_back(sc);
    }
  }
}

// A libpq connection-string value: always in single quotes, with \ and ' escaped.
std::string conninfo_quote(const std::string& value) {
  std::string out = "'";
  for (char ch : value) {
    if (ch == '\\' || ch == '\'') out += '\\';
    out += ch;
  }
  return out + "'";
}

// Synapse's `database:` section: {name: sqlite3 | psycopg2, args: {...}, allow_unsafe_locale}.
// For psycopg2, Synapse hands args (less the connection pool's cp_*) to psycopg2.connect, which
// hands them to libpq as keywords: the libpq keywords are kept in the same way, `database` being
// psycopg2's name for `dbname`; anything else an operator's config carries is warned about and
// ignored.
void parse_database(const YAML::Node& db, Config& c, std::vector<std::string>& warnings) {
  if (!db.IsMap()) bad("database", "expected a mapping with name and args");
  static const std::set<std::string> known = {"name", "args", "allow_unsafe_locale", "txn_limit"};
  for (const auto& kv : db) {
    auto key = kv.first.as<std::string>();
    if (!known.count(key)) warnings.push_back("unknown config key 'database." + key + "' ignored");
  }
  if (db["name"]) c.database_engine = get<std::string>(db["name"], "database.name", "a string");
  if (c.database_engine != "sqlite3" && c.database_engine != "psycopg2") {
    bad("database.name", "must be 'sqlite3' or 'psycopg2' (PostgreSQL)");
  }
  if (db["allow_unsafe_locale"]) {
    c.database_allow_unsafe_locale = get<bool>(db["allow_unsafe_locale"], "database.allow_unsafe_locale", "true or false");
  }
  auto args = db["args"];
  if (args && !args.IsNull() && !args.IsMap()) bad("database.args", "expected a mapping");
  if (!args || args.IsNull()) args = YAML::Node(YAML::NodeType::Map);

  // The pool: Twisted's adbapi options, whichever engine (the cp_* Synapse does not document are
  // accepted and ignored).
  for (auto [key, field] : {std::pair{"cp_min", &c.database_cp_min}, std::pair{"cp_max", &c.database_cp_max}}) {
    if (!args[key]) continue;
    auto v = parse_count(args[key], std::string("database.args.") + key);
    if (v > 1000) bad(std::string("database.args.") + key, "must be at most 1000");
    *field = static_cast<int>(v);
  }
  if (c.database_cp_max < 1) bad("database.args.cp_max", "must be at least 1");
  if (c.database_cp_min > c.database_cp_max) bad("database.args.cp_min", "must not be more than cp_max");
  auto is_pool_key = [](const std::string& key) { return key.starts_with("cp_"); };

  if (c.database_engine == "sqlite3") {
    for (const auto& kv : args) {
      auto key = kv.first.as<std::string>();
      if (key != "database" && !is_pool_key(key)) warnings.push_back("unknown config key 'database.args." + key + "' ignored");
    }
    if (args["database"]) c.database_path = get<std::string>(args["database"], "database.args.database", "a path");
    return;
  }

  // libpq's connection keywords (PostgreSQL 15) that a server's connections may carry; not
  // `replication` or `client_encoding`, which would break the server's own use of them.
  static const std::set<std::string> libpq = {
      "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "channel_binding",
      "connect_timeout", "options", "application_name", "fallback_application_name", "keepalives",
      "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout", "sslmode",
      "requiressl", "sslcompression", "sslcert", "sslkey", "sslpassword", "sslrootcert", "sslcrl",
      "sslcrldir", "sslsni", "requirepeer", "ssl_min_protocol_version", "ssl_max_protocol_version",
      "gssencmode", "krbsrvname", "gsslib", "service", "target_session_attrs"};
  if (args["database"] && args["dbname"]) bad("database.args.dbname", "give database or dbname, not both");
  if (args["port"]) {
    auto port = get<long long>(args["port"], "database.args.port", "a port number");
    if (port < 1 || port > 65535) bad("database.args.port", "must be between 1 and 65535");
  }
  if (args["sslmode"]) {
    static const std::set<std::string> modes = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"};
    if (!modes.count(get<std::string>(args["sslmode"], "database.args.sslmode", "a string"))) {
      bad("database.args.sslmode", "must be one of disable, allow, prefer, require, verify-ca, verify-full");
    }
  }
  std::string conninfo;
  for (const auto& kv : args) {
    auto key = kv.first.as<std::string>();
    if (is_pool_key(key)) continue;
    if (key == "database") key = "dbname";
    if (!libpq.count(key)) {
      warnings.push_back("unknown config key 'database.args." + kv.first.as<std::string>() + "' ignored");
      continue;
    }
    if (!kv.second.IsScalar()) bad("database.args." + kv.first.as<std::string>(), "expected a single value");
    conninfo += (conninfo.empty() ? "" : " ") + key + "=" + conninfo_quote(kv.second.as<std::string>());
  }
  c.database_conninfo = conninfo;
}

}  // namespace

namespace detail {

std::vector<Listener> parse_listeners(const YAML::Node& ls, const std::string& list_key) {
  std::vector<Listener> out;
  if (!ls.IsSequence()) bad(list_key, "expected a list");
  for (size_t i = 0; i < ls.size(); ++i) {
    auto n = ls[i];
    std::string key = list_key + "[" + std::to_string(i) + "]";
    Listener l;
    if (!n["port"]) bad(key + ".port", "is required");
    int port = get<int>(n["port"], key + ".port", "a port number");
    if (port < 0 || port > 65535) bad(key + ".port", "must be between 0 and 65535");
    l.port = static_cast<unsigned short>(port);
    if (n["bind_addresses"]) {
      l.bind_addresses = get<std::vector<std::string>>(n["bind_addresses"], key + ".bind_addresses", "a list of addresses");
    } else if (n["bind_address"]) {
      l.bind_addresses = {get<std::string>(n["bind_address"], key + ".bind_address", "an address")};
    }
    if (n["type"]) l.type = get<std::string>(n["type"], key + ".type", "a string");
    if (l.type != "http" && l.type != "metrics") bad(key + ".type", "only 'http' and 'metrics' listeners are supported");
    if (auto x = n["x_forwarded"]; x && !x.IsNull()) l.x_forwarded = get<bool>(x, key + ".x_forwarded", "true or false");
    if (auto rs = n["resources"]) {
      l.resources.clear();
      for (const auto& r : rs) {
        if (!r["names"]) continue;
        for (const auto& name : r["names"]) l.resources.push_back(name.as<std::string>());
      }
    }
    out.push_back(l);
  }
  return out;
}

}  // namespace detail

namespace {

YAML::Node load_yaml(const std::string& yaml_text) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(std::string("config is not valid YAML: ") + e.what());
  }
  if (!root.IsMap()) throw std::runtime_error("config must be a YAML mapping");
  return root;
}

Config parse_root(const YAML::Node& root, const std::string& config_dir, std::vector<std::string>& warnings);

}  // namespace

Config parse_config(const std::string& yaml_text, const std::string& config_dir,
                    std::vector<std::string>& warnings) {
  return parse_root(load_yaml(yaml_text), config_dir, warnings);
}

namespace {

Config parse_root(const YAML::Node& root, const std::string& config_dir, std::vector<std::string>& warnings) {
  Config c;
  c.config_dir = config_dir;
  // Keys Synapse configs commonly carry that we accept without acting on yet: no warning noise.
  static const std::set<std::string> tolerated = {"report_stats", "pid_file",
                                                  "macaroon_secret_key", "form_secret", "log_config",
                                                  "trusted_key_servers", "suppress_key_server_warning",
                                                  "worker_log_config", "worker_pid_file", "worker_daemonize",
                                                  "update_user_directory_from_worker", "start_pushers",
                                                  "send_federation", "federation_sender_instances"};
  static const std::set<std::string> known = {
      "server_name", "public_baseurl", "listeners", "database", "signing_key_path",
      "app_service_config_files", "enable_registration", "enable_registration_without_verification",
      "registration_shared_secret", "registration_shared_secret_path", "rc_message", "rc_registration", "rc_login", "max_upload_size",
      "max_request_body_size", "log_level", "media_store_path", "enable_authenticated_media", "media_retention",
      "http_limits", "rc_to_device", "max_to_device_queue", "allow_guest_access", "email",
      "identity_server_scheme", "enable_registration_captcha", "recaptcha_public_key",
      "recaptcha_private_key", "recaptcha_siteverify_api", "cas_config", "user_directory", "enable_ephemeral_messages",
      "federation_custom_ca_list", "use_insecure_ssl_client_just_for_testing_do_not_use", "use_presence",
      "rc_reports", "admin_contact", "support",
      "default_room_version",
      "session_lifetime", "refreshable_access_token_lifetime", "refresh_token_lifetime",
      "nonrefreshable_access_token_lifetime", "login_via_existing_session",
      "registration_requires_token", "rc_registration_token_validity", "enable_metrics",
      "worker_app", "worker_name", "worker_listeners", "instance_map", "stream_writers",
      "notify_appservices_from_worker", "run_background_tasks_on", "pusher_instances",
      "media_instance_running_background_jobs", "worker_replication_secret", "enable_media_repo"};
  for (const auto& kv : root) {
    auto key = kv.first.as<std::string>();
    if (!known.count(key) && !tolerated.count(key)) warnings.push_back("unknown config key '" + key + "' ignored");
  }

  if (!root["server_name"]) bad("server_name", "is required");
  c.server_name = get<std::string>(root["server_name"], "server_name", "a string");
  if (!core::is_valid_server_name(c.server_name)) bad("server_name", "'" + c.server_name + "' is not a valid server name");
  if (root["public_baseurl"]) c.public_baseurl = get<std::string>(root["public_baseurl"], "public_baseurl", "a URL");

  if (auto ls = root["listeners"]) c.listeners = detail::parse_listeners(ls, "listeners");
  if (c.listeners.empty()) c.listeners.push_back(Listener{});

  if (auto db = root["database"]; db && !db.IsNull()) parse_database(db, c, warnings);
  if (c.database_engine == "sqlite3") {
    if (c.database_path.empty()) c.database_path = "homeserver.db";
    c.database_path = resolve(config_dir, c.database_path);
  }

  c.signing_key_path = root["signing_key_path"]
                           ? get<std::string>(root["signing_key_path"], "signing_key_path", "a path")
                           : c.server_name + ".signing.key";
  c.signing_key_path = resolve(config_dir, c.signing_key_path);

  if (auto a = root["app_service_config_files"]) {
    if (!a.IsNull()) {
      for (auto& f : get<std::vector<std::string>>(a, "app_service_config_files", "a list of paths")) {
        c.app_service_config_files.push_back(resolve(config_dir, f));
      }
    }
  }
  if (root["enable_registration"]) c.enable_registration = get<bool>(root["enable_registration"], "enable_registration", "true or false");
  if (root["enable_registration_without_verification"]) {
    c.enable_registration_without_verification = get<bool>(
        root["enable_registration_without_verification"], "enable_registration_without_verification", "true or false");
  }
  if (root["enable_registration_captcha"]) {
    c.enable_registration_captcha =
        get<bool>(root["enable_registration_captcha"], "enable_registration_captcha", "true or false");
  }
  for (auto [key, field] : {std::pair{"recaptcha_public_key", &c.recaptcha_public_key},
                            std::pair{"recaptcha_private_key", &c.recaptcha_private_key},
                            std::pair{"recaptcha_siteverify_api", &c.recaptcha_siteverify_api}}) {
    if (root[key] && !root[key].IsNull()) *field = get<std::string>(root[key], key, "a string");
  }
  if (c.enable_registration_captcha && (c.recaptcha_public_key.empty() || c.recaptcha_private_key.empty())) {
    bad("enable_registration_captcha", "needs recaptcha_public_key and recaptcha_private_key");
  }
  if (auto cas = root["cas_config"]; cas && !cas.IsNull()) {
    if (!cas.IsMap()) bad("cas_config", "expected a mapping");
    c.cas.enabled = cas["enabled"] ? get<bool>(cas["enabled"], "cas_config.enabled", "true or false") : true;
    if (cas["server_url"]) c.cas.server_url = get<std::string>(cas["server_url"], "cas_config.server_url", "a URL");
    if (c.cas.enabled && c.cas.server_url.empty()) bad("cas_config.server_url", "is required");
    if (cas["displayname_attribute"] && !cas["displayname_attribute"].IsNull()) {
      c.cas.displayname_attribute =
          get<std::string>(cas["displayname_attribute"], "cas_config.displayname_attribute", "a string");
    }
    if (auto req = cas["required_attributes"]; req && !req.IsNull()) {
      if (!req.IsMap()) bad("cas_config.required_attributes", "expected a mapping");
      for (const auto& kv : req) {
        c.cas.required_attributes.emplace_back(kv.first.as<std::string>(),
                                               kv.second.IsNull() ? "" : kv.second.as<std::string>());
      }
    }
  }
  if (auto ud = root["user_directory"]; ud && !ud.IsNull()) {
    if (ud["search_all_users"]) {
      c.user_directory_search_all_users =
          get<bool>(ud["search_all_users"], "user_directory.search_all_users", "true or false");
    }
  }
  if (root["enable_ephemeral_messages"]) {
    c.enable_ephemeral_messages = get<bool>(root["enable_ephemeral_messages"], "enable_ephemeral_messages", "true or false");
  }
  if (root["registration_requires_token"]) {
    c.registration_requires_token =
        get<bool>(root["registration_requires_token"], "registration_requires_token", "true or false");
  }
  // Like Synapse: open registration with no verification step must be asked for explicitly.
  if (c.enable_registration && !c.enable_registration_without_verification && !c.enable_registration_captcha &&
      !c.registration_requires_token) {
    bad("enable_registration",
        "open registration without email, captcha or token verification also needs "
        "enable_registration_without_verification: true");
  }
  // Token lifetimes: a duration, or null for none (refreshable_access_token_lifetime: null turns
  // refresh tokens off, as in Synapse).
  auto lifetime = [&](const char* key, std::optional<int64_t>& out) {
    if (auto n = root[key]) out = n.IsNull() ? std::nullopt : std::optional<int64_t>(parse_duration_ms(n, key));
  };
  lifetime("session_lifetime", c.session_lifetime_ms);
  lifetime("refreshable_access_token_lifetime", c.refreshable_access_token_lifetime_ms);
  lifetime("refresh_token_lifetime", c.refresh_token_lifetime_ms);
  lifetime("nonrefreshable_access_token_lifetime", c.nonrefreshable_access_token_lifetime_ms);
  if (auto l = root["login_via_existing_session"]; l && !l.IsNull()) {
    if (!l.IsMap()) bad("login_via_existing_session", "expected a mapping");
    auto& lv = c.login_via_existing_session;
    if (l["enabled"]) lv.enabled = get<bool>(l["enabled"], "login_via_existing_session.enabled", "true or false");
    if (l["require_ui_auth"]) {
      lv.require_ui_auth = get<bool>(l["require_ui_auth"], "login_via_existing_session.require_ui_auth", "true or false");
    }
    if (l["token_timeout"]) lv.token_timeout_ms = parse_duration_ms(l["token_timeout"], "login_via_existing_session.token_timeout");
  }
  if (root["allow_guest_access"]) c.allow_guest_access = get<bool>(root["allow_guest_access"], "allow_guest_access", "true or false");
  if (root["registration_shared_secret"]) {
    c.registration_shared_secret = get<std::string>(root["registration_shared_secret"], "registration_shared_secret", "a string");
  }
  // Synapse: the secret may instead sit in a file (surrounding whitespace stripped); not both.
  if (auto p = root["registration_shared_secret_path"]; p && !p.IsNull()) {
    auto path = resolve(config_dir, get<std::string>(p, "registration_shared_secret_path", "a path"));
    if (!c.registration_shared_secret.empty()) {
      bad("registration_shared_secret_path", "registration_shared_secret and registration_shared_secret_path are mutually incompatible");
    }
    std::ifstream f(path);
    if (!f) bad("registration_shared_secret_path", "cannot read '" + path + "'");
    std::stringstream text;
    text << f.rdbuf();
    std::string secret = text.str();
    auto first = secret.find_first_not_of(" \t\r\n");
    auto last = secret.find_last_not_of(" \t\r\n");
    c.registration_shared_secret = first == std::string::npos ? "" : secret.substr(first, last - first + 1);
  }
  if (root["rc_message"]) c.rc_message = parse_rate(root["rc_message"], "rc_message");
  if (root["rc_registration"]) c.rc_registration = parse_rate(root["rc_registration"], "rc_registration");
  if (auto l = root["rc_login"]) {
    // Synapse nests rc_login by what is limited (address, account, failed_attempts); we apply
    // `address` (or a flat per_second/burst_count) per client address.
    if (l["address"]) c.rc_login = parse_rate(l["address"], "rc_login.address");
    else c.rc_login = parse_rate(l, "rc_login");
  }
  if (root["rc_to_device"]) c.rc_to_device = parse_rate(root["rc_to_device"], "rc_to_device");
  if (root["rc_reports"]) c.rc_reports = parse_rate(root["rc_reports"], "rc_reports");
  if (root["rc_registration_token_validity"]) {
    c.rc_registration_token_validity = parse_rate(root["rc_registration_token_validity"], "rc_registration_token_validity");
  }
  parse_support(root, c.support);
  if (root["max_to_device_queue"]) {
    c.max_to_device_queue = get<uint64_t>(root["max_to_device_queue"], "max_to_device_queue", "a positive integer");
    if (c.max_to_device_queue == 0) bad("max_to_device_queue", "must be at least 1");
  }
  if (root["max_upload_size"]) c.max_upload_size = parse_size(root["max_upload_size"], "max_upload_size");
  if (root["media_store_path"]) c.media_store_path = get<std::string>(root["media_store_path"], "media_store_path", "a path");
  if (c.media_store_path.empty() && c.database_engine == "psycopg2") {
    c.media_store_path = config_dir.empty() ? std::string("media") : config_dir + "/media";
  } else if (c.media_store_path.empty()) {
    auto slash = c.database_path.rfind('/');
    c.media_store_path = (slash == std::string::npos ? std::string(".") : c.database_path.substr(0, slash)) + "/media";
  }
  c.media_store_path = resolve(config_dir, c.media_store_path);
  if (root["use_presence"]) c.use_presence = get<bool>(root["use_presence"], "use_presence", "true or false");
  if (root["default_room_version"]) {  // Synapse's key; a room version we know
    c.default_room_version = get<std::string>(root["default_room_version"], "default_room_version", "a string");
    if (!room::find_room_version(c.default_room_version)) {
      bad("default_room_version", "'" + c.default_room_version + "' is not a supported room version");
    }
  }
  if (root["enable_authenticated_media"]) {
    c.enable_authenticated_media = get<bool>(root["enable_authenticated_media"], "enable_authenticated_media", "true or false");
  }
  if (auto mr = root["media_retention"]) c.media_retention = parse_media_retention(mr, warnings);
  if (root["max_request_body_size"]) c.max_request_body_size = parse_size(root["max_request_body_size"], "max_request_body_size");
  if (auto ca = root["federation_custom_ca_list"]; ca && !ca.IsNull()) {
    for (auto& f : get<std::vector<std::string>>(ca, "federation_custom_ca_list", "a list of paths")) {
      auto path = resolve(config_dir, f);
      if (!std::ifstream(path)) bad("federation_custom_ca_list", "cannot read '" + path + "'");
      c.federation_custom_ca_list.push_back(path);
    }
  }
  if (auto n = root["use_insecure_ssl_client_just_for_testing_do_not_use"]; n && !n.IsNull()) {
    c.use_insecure_ssl_client_just_for_testing_do_not_use =
        get<bool>(n, "use_insecure_ssl_client_just_for_testing_do_not_use", "true or false");
  }
  if (root["http_limits"]) c.http_limits = parse_http_limits(root["http_limits"], warnings);
  if (auto e = root["email"]) c.email = parse_email(e, warnings);
  if (root["identity_server_scheme"]) {
    c.identity_server_scheme = get<std::string>(root["identity_server_scheme"], "identity_server_scheme", "a string");
    if (c.identity_server_scheme != "https" && c.identity_server_scheme != "http") {
      bad("identity_server_scheme", "must be https or http");
    }
  }
  if (root["enable_metrics"]) c.enable_metrics = get<bool>(root["enable_metrics"], "enable_metrics", "true or false");
  if (root["log_config"]) {
    c.log_config = get<std::string>(root["log_config"], "log_config", "a file name");
    if (!c.log_config.empty() && !std::filesystem::path(c.log_config).is_absolute()) {
      c.log_config = (std::filesystem::path(config_dir) / c.log_config).string();
    }
  }
  if (root["log_level"]) {
    c.log_level = get<std::string>(root["log_level"], "log_level", "a string");
    static const std::set<std::string> levels = {"trace", "debug", "info", "warn", "warning", "error", "critical"};
    if (!levels.count(c.log_level)) bad("log_level", "must be one of trace, debug, info, warning, error, critical");
  }
  detail::parse_workers(root, c, warnings);
  return c;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read config file '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Config load_config(const std::string& path, std::vector<std::string>& warnings) {
  return load_config(std::vector<std::string>{path}, warnings);
}

Config load_config(const std::vector<std::string>& paths, std::vector<std::string>& warnings) {
  if (paths.empty()) throw std::runtime_error("no config file given");
  // As Synapse's `-c a.yaml -c b.yaml`: a later file's top-level keys replace an earlier one's.
  // Relative paths resolve against the first file's directory (the shared homeserver.yaml).
  YAML::Node merged(YAML::NodeType::Map);
  for (const auto& path : paths) {
    YAML::Node root;
    try {
      root = load_yaml(read_file(path));
    } catch (const std::exception& e) {
      throw std::runtime_error(paths.size() > 1 ? path + ": " + e.what() : std::string(e.what()));
    }
    for (const auto& kv : root) merged[kv.first.as<std::string>()] = kv.second;
  }
  return parse_root(merged, std::filesystem::absolute(paths.front()).parent_path().string(), warnings);
}

std::string generate_config(const std::string& server_name, const std::string& data_dir) {
  std::ostringstream o;
  o << "# Trestle homeserver configuration. Key names follow Synapse's homeserver.yaml.\n"
    << "# Relative paths are resolved against the directory of this file.\n\n"
    << "# The domain in your users' IDs (@user:" << server_name << "). Cannot be changed later.\n"
    << "server_name: \"" << server_name << "\"\n\n"
    << "# Where clients reach the server. Bind to loopback unless a reverse proxy is in front; behind\n"
    << "# one, x_forwarded: true takes the client's address from X-Forwarded-For (its last entry).\n"
    << "listeners:\n"
    << "  - port: 8008\n"
    << "    bind_addresses: ['127.0.0.1']\n"
    << "    type: http\n"
    << "    # x_forwarded: true\n"
    << "    resources:\n"
    << "      - names: [client]\n\n"
    << "# The database: SQLite in WAL mode, one file, nothing to set up.\n"
    << "database:\n"
    << "  name: sqlite3\n"
    << "  args:\n"
    << "    database: \"" << data_dir << "/homeserver.db\"\n"
    << "# Or PostgreSQL (Synapse's keys; args are libpq's connection keywords, as psycopg2 takes\n"
    << "# them). Create the role and an empty database first, with the C collation, e.g.\n"
    << "#   createuser --pwprompt trestle\n"
    << "#   createdb --encoding=UTF8 --locale=C --template=template0 --owner=trestle trestle\n"
    << "# host may be a unix-socket directory (/var/run/postgresql). cp_min and cp_max bound the\n"
    << "# connection pool. The server makes its tables at first start. With PostgreSQL, media go to\n"
    << "# <this file's directory>/media unless media_store_path says otherwise.\n"
    << "# database:\n"
    << "#   name: psycopg2\n"
    << "#   args:\n"
    << "#     user: trestle\n"
    << "#     password: secretpassword\n"
    << "#     database: trestle\n"
    << "#     host: localhost\n"
    << "#     port: 5432\n"
    << "#     cp_min: 5\n"
    << "#     cp_max: 10\n\n"
    << "# The server's ed25519 signing key, generated at first start if missing.\n"
    << "signing_key_path: \"" << data_dir << "/" << server_name << ".signing.key\"\n\n"
    << "# Appservice (bridge) registration files.\n"
    << "app_service_config_files: []\n\n"
    << "# Outbound https (appservices): certificates are checked against the system CAs and these\n"
    << "# PEM files, and must name the host.\n"
    << "# federation_custom_ca_list: [\"/path/to/ca.pem\"]\n\n"
    << "# Open registration. Without email/captcha verification Synapse's second key is required too.\n"
    << "enable_registration: true\n"
    << "enable_registration_without_verification: true\n\n"
    << "# Registration tokens: when true, registering needs a token an admin made\n"
    << "# (POST /_synapse/admin/v1/registration_tokens/new, or `synadm regtok new`); with it, open\n"
    << "# registration needs no enable_registration_without_verification.\n"
    << "# registration_requires_token: false\n\n"
    << "# Guest accounts (POST /register?kind=guest), which may only read and join rooms whose\n"
    << "# m.room.guest_access is can_join.\n"
    << "allow_guest_access: false\n\n"
    << "# Shared secret for registering users from the command line: `trestle register-user -c FILE`\n"
    << "# (Synapse's register_new_matrix_user speaks the same protocol), POST /_synapse/admin/v1/register.\n"
    << "# Anyone who knows it can create admins: keep this file private. Unset: disabled. Or keep it\n"
    << "# in a file with registration_shared_secret_path (not both).\n"
    << "registration_shared_secret: \"" << core::random_string(50) << "\"\n\n"
    << "# Token lifetimes (durations like 5m, 12h; unset: no limit). Clients that send\n"
    << "# refresh_token: true at login get refresh tokens and access tokens that expire after\n"
    << "# refreshable_access_token_lifetime (default 5m; null: no refresh tokens); other clients'\n"
    << "# access tokens last nonrefreshable_access_token_lifetime; refresh tokens last\n"
    << "# refresh_token_lifetime; session_lifetime ends a login however often it is refreshed.\n"
    << "# refreshable_access_token_lifetime: 5m\n"
    << "# refresh_token_lifetime: 30d\n"
    << "# nonrefreshable_access_token_lifetime: 1h\n"
    << "# session_lifetime: 90d\n\n"
    << "# POST /_matrix/client/v1/login/get_token: a logged-in client gets a single-use login token\n"
    << "# (m.login.token) to sign in another device, after re-entering the password if require_ui_auth.\n"
    << "# login_via_existing_session:\n"
    << "#   enabled: false\n"
    << "#   require_ui_auth: true\n"
    << "#   token_timeout: 5m\n\n"
    << "# Rate limits per user (messages) and per client address (registration, login).\n"
    << "rc_message:\n  per_second: 0.2\n  burst_count: 10\n"
    << "rc_registration:\n  per_second: 0.17\n  burst_count: 3\n"
    << "rc_login:\n  address:\n    per_second: 0.17\n    burst_count: 3\n"
    << "# GET /register/m.login.registration_token/validity, per client address.\n"
    << "rc_registration_token_validity:\n  per_second: 0.1\n  burst_count: 5\n\n"
    << "# Uploaded media: files under media_store_path, at most max_upload_size each.\n"
    << "media_store_path: \"" << data_dir << "/media\"\n"
    << "max_upload_size: 50M\n"
    << "# Media uploaded while this is true is served only on the authenticated endpoints\n"
    << "# (/_matrix/client/v1/media, Matrix v1.11). Clients older than v1.11 need it false.\n"
    << "enable_authenticated_media: true\n"
    << "# Synapse's media_retention: local media nobody downloaded within local_media_lifetime\n"
    << "# (never downloaded: since its upload) is deleted, checked hourly and at start; profile,\n"
    << "# per-room and room avatars are kept, and so are quarantined and protected media.\n"
    << "# remote_media_lifetime is accepted but deletes nothing yet: without federation there is\n"
    << "# no remote media cache. check_interval (Trestle only, default 1h) is for tests.\n"
    << "# media_retention:\n"
    << "#   local_media_lifetime: 90d\n"
    << "#   remote_media_lifetime: 14d\n"
    << "# Logging: a Python logging YAML file, as Synapse's (handlers: StreamHandler, FileHandler,\n"
    << "# RotatingFileHandler; `loggers: synapse.access: {level: ...}` for the access log). Without it\n"
    << "# the server logs to stderr at log_level. `generate-config -o FILE` wrote this one beside FILE.\n"
    << "# log_config: \"" << server_name << ".log.config\"\n"
    << "log_level: info\n\n"
    << "# Prometheus metrics: a `type: metrics` listener (GET /metrics), or `metrics` in an http\n"
    << "# listener's resources (/_synapse/metrics). Nothing is served unless enable_metrics is true.\n"
    << "# enable_metrics: true\n"
    << "# listeners:\n"
    << "#   - port: 9000\n"
    << "#     type: metrics\n"
    << "#     bind_addresses: ['127.0.0.1']\n\n"
    << "# Trestle's transport limits (no Synapse equivalent). max_connections_per_address does not apply\n"
    << "# on a listener with x_forwarded: true (its connections all come from the proxy).\n"
    << "# http_limits:\n"
    << "#   header_timeout: 30s              # first byte of a request to the end of its header\n"
    << "#   body_timeout: 60s                # a whole request body (media uploads: see below)\n"
    << "#   upload_min_rate: 1K              # uploads get body_timeout + 1 s per upload_min_rate bytes\n"
    << "#   max_connections_per_address: 64\n"
    << "#   max_long_polls_per_user: 100     # over it, the oldest waiting /sync answers at once\n";
  return o.str();
}

}  // namespace trestle::config
