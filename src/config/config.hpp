#pragma once
// The homeserver configuration, read from YAML with Synapse's key names so operators can bring
// their homeserver.yaml over. Unknown keys are warned about; bad values stop start-up.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace trestle::config {

struct Listener {
  unsigned short port = 8008;
  std::vector<std::string> bind_addresses{"127.0.0.1"};
  std::string type = "http";  // or "metrics" (Prometheus, with enable_metrics)
  std::vector<std::string> resources{"client"};
  // Synapse's x_forwarded: the listener is behind a reverse proxy, and a request's client is the
  // address the proxy saw (X-Forwarded-For), for logs, client IPs and per-address rate limits.
  bool x_forwarded = false;
};

struct RateLimit {
  double per_second = 0;  // 0 disables
  double burst_count = 0;
};

// Trestle's own transport limits (Synapse has no equivalent keys), under `http_limits:`.
struct HttpLimits {
  int64_t header_timeout_ms = 30'000;  // from a request's first byte to the end of its header
  int64_t body_timeout_ms = 60'000;    // whole-body deadline of an ordinary request
  // Media uploads get body_timeout plus one second per this many bytes received, so a large file
  // on a slow link still arrives while a trickle of bytes cannot hold a connection for ever.
  uint64_t upload_min_rate = 1024;
  // Open connections per client address; 0: no cap. Behind a reverse proxy every client shares
  // the proxy's address: raise it (or set 0) there.
  uint64_t max_connections_per_address = 64;
  // Waiting /sync long-polls per user; over it, the oldest answers at once (empty). 0: no cap.
  uint64_t max_long_polls_per_user = 100;
};

// Synapse's `email:` section: where mail (3PID validation links) goes out. Plain SMTP only.
struct EmailConfig {
  bool enabled = false;  // the section is present with an smtp_host
  std::string smtp_host;
  int smtp_port = 25;
  std::string notif_from;  // "Name <addr>" or "addr"
  std::string app_name = "Matrix";
  int64_t validation_token_lifetime_ms = 60 * 60 * 1000;
};

// Synapse's `cas_config`: single sign-on through a CAS server (enabled when server_url is set).
struct CasConfig {
  bool enabled = false;
  std::string server_url;  // e.g. https://cas.example.com/cas: /login and /proxyValidate under it
  std::string displayname_attribute;
  // Attributes the CAS answer must carry (an empty value: any value).
  std::vector<std::pair<std::string, std::string>> required_attributes;
};

// GET /.well-known/matrix/support (MSC1929). Synapse has only `admin_contact` ("mailto:..." or
// any URI; shown as an m.role.admin contact when it is a mailto: address); `support:` with
// `support_page` and `contacts` (matrix_id, email_address, role) is Trestle's.
struct SupportContact {
  std::string matrix_id;
  std::string email_address;
  std::string role = "m.role.admin";
};
struct SupportConfig {
  std::string admin_contact;
  std::string support_page;
  std::vector<SupportContact> contacts;
};

struct Config {
  std::string server_name;
  std::string public_baseurl;
  std::vector<Listener> listeners;
  // Synapse's `database:` section. name: sqlite3 (the default) or psycopg2 (PostgreSQL).
  std::string database_engine = "sqlite3";
  std::string database_path;  // SQLite: args.database, against the config's directory; empty on PostgreSQL
  // PostgreSQL: args as a libpq connection string ("host='/run/pg' dbname='synapse' ..."): user,
  // password, database or dbname, host (a name, an address or a unix-socket directory), port, and
  // the libpq keywords psycopg2 passes on (sslmode, application_name, keepalives_idle, ...).
  std::string database_conninfo;
  int database_cp_min = 5;  // args.cp_min / cp_max: Synapse's connection pool bounds
  int database_cp_max = 10;
  bool database_allow_unsafe_locale = false;  // database.allow_unsafe_locale (a non-C collation)
  std::string signing_key_path;
  std::vector<std::string> app_service_config_files;
  bool enable_registration = false;
  bool enable_registration_without_verification = false;
  bool allow_guest_access = false;  // POST /register?kind=guest (Synapse's key and default)
  std::string registration_shared_secret;
  // Registration tokens (Synapse's key): every registration flow starts with the
  // m.login.registration_token stage; tokens are managed with the admin API.
  bool registration_requires_token = false;
  // reCAPTCHA (Synapse's keys): the m.login.recaptcha registration stage, checked at
  // recaptcha_siteverify_api with the private key; required when enable_registration_captcha.
  bool enable_registration_captcha = false;
  std::string recaptcha_public_key;
  std::string recaptcha_private_key;
  std::string recaptcha_siteverify_api = "https://www.recaptcha.net/recaptcha/api/siteverify";
  CasConfig cas;
  // Token lifetimes (Synapse's keys, durations; unset = no limit). Clients that ask for a refresh
  // token (refresh_token: true) get access tokens of refreshable_access_token_lifetime (null: no
  // refresh tokens are issued) and refresh tokens of refresh_token_lifetime; other clients'
  // access tokens last nonrefreshable_access_token_lifetime; session_lifetime bounds a login
  // however often it is refreshed.
  std::optional<int64_t> session_lifetime_ms;
  std::optional<int64_t> refreshable_access_token_lifetime_ms = 5 * 60 * 1000;
  std::optional<int64_t> refresh_token_lifetime_ms;
  std::optional<int64_t> nonrefreshable_access_token_lifetime_ms;
  // login_via_existing_session (Synapse's key): POST /_matrix/client/v1/login/get_token hands a
  // logged-in user a single-use m.login.token, after user-interactive auth when require_ui_auth.
  struct LoginViaExistingSession {
    bool enabled = false;
    bool require_ui_auth = true;
    int64_t token_timeout_ms = 5 * 60 * 1000;
  } login_via_existing_session;
  // user_directory.search_all_users: search every local user, not only those sharing a room with
  // the searcher or in a public room (Synapse's default, false).
  bool user_directory_search_all_users = false;
  // MSC2228 (Synapse's key): messages with `org.matrix.self_destruct_after` are served pruned
  // once that time has passed.
  bool enable_ephemeral_messages = false;
  RateLimit rc_message{0.2, 10};
  RateLimit rc_registration{0.17, 3};
  RateLimit rc_login{0.17, 3};
  // PUT /sendToDevice per sending device (one action per request), and how many undelivered
  // to-device messages one device may have queued before new ones are refused (429).
  RateLimit rc_to_device{100, 200};
  uint64_t max_to_device_queue = 10'000;
  // Content reports (rooms, events, users) per reporting user: Synapse's rc_reports and default.
  RateLimit rc_reports{1, 5};
  // GET /register/m.login.registration_token/validity per client address (Synapse's default).
  RateLimit rc_registration_token_validity{0.1, 5};
  SupportConfig support;
  uint64_t max_upload_size = 50ull * 1024 * 1024;
  uint64_t max_request_body_size = 1ull * 1024 * 1024;  // non-media JSON bodies
  // Media files; default <directory of the SQLite database>/media, on PostgreSQL <config's directory>/media.
  std::string media_store_path;
  // Synapse's key: while true, media uploaded is served only by the authenticated endpoints
  // (/_matrix/client/v1/media/...), the spec's "freeze" of the legacy /_matrix/media/v3 ones.
  bool enable_authenticated_media = true;
  // Synapse's media_retention: local media not downloaded (or, never downloaded, not created)
  // within local_media_lifetime is deleted by a periodic job, except profile and room avatars.
  // remote_media_lifetime is accepted (there is no remote media cache without federation yet).
  struct MediaRetention {
    std::optional<int64_t> local_media_lifetime_ms;
    std::optional<int64_t> remote_media_lifetime_ms;
    int64_t check_interval_ms = 3'600'000;  // Trestle only (for tests): how often the job runs
  } media_retention;
  // Synapse's use_presence: false turns presence off in /sync.
  bool use_presence = true;
  // Synapse's default_room_version: the version createRoom uses when none is asked for. "10", as
  // Synapse: Debian 12's nheko (0.11.3) drops a create event without `creator` (v11+), so it
  // does not see v11 spaces as spaces (scripts/nheko_check.py --room-version 11 shows it).
  std::string default_room_version = "10";
  std::string log_level = "info";
  // Synapse's log_config: a Python logging YAML file (see config/log_config.hpp); empty: log_level
  // and stderr. Resolved against config_dir.
  std::string log_config;
  // Synapse's enable_metrics: without it no metrics are served (a metrics listener is not bound).
  bool enable_metrics = false;
  HttpLimits http_limits;
  EmailConfig email;
  // How identity servers named by clients ("host:port") are reached: "https" (the spec); "http"
  // only for tests that run a plain-http fake identity server.
  std::string identity_server_scheme = "https";
  // Outbound https (appservices, later federation), with Synapse's key names: PEM files whose
  // certificates are trusted besides the system store, and a switch that turns verification off.
  std::vector<std::string> federation_custom_ca_list;
  bool use_insecure_ssl_client_just_for_testing_do_not_use = false;
  std::string config_dir;  // directory of the config file: relative paths resolve against it

  // Several processes sharing one PostgreSQL, in Synapse's worker shape (config/workers.cpp). The
  // main process runs with the shared homeserver.yaml alone; a worker with
  // `-c homeserver.yaml -c worker.yaml`, whose worker_app, worker_name and worker_listeners make
  // it one. Workers serve reads and wake through PostgreSQL's LISTEN/NOTIFY. The main process writes
  // every stream but the events of rooms: `stream_writers: {events: [...]}` shards rooms over
  // event writers (event_writer_for), which take turns on the one stream (storage/database.hpp).
  struct Instance {
    std::string name;
    std::string host;
    int port = 0;
  };
  std::string worker_app;              // "" for the main process, else synapse.app.generic_worker
  std::string instance_name = "main";  // worker_name for a worker ("master" is read as "main")
  std::vector<Instance> instance_map;  // every process of the deployment; empty: one process
  std::string notify_appservices_from_worker;  // the preferred appservice sender ("" : main)
  std::string run_background_tasks_on = "main";  // periodic jobs
  // The media repository (Synapse's keys): `enable_media_repo: false` in the shared file stops
  // main serving media (the client media endpoints and the admin media API: a media worker, or
  // an external media repository, serves them); a media worker's own file sets it true again, or
  // its worker_app is synapse.app.media_repository. media_instance_running_background_jobs:
  // where media retention runs ("": run_background_tasks_on's process).
  bool serves_media = true;
  std::string media_background_jobs_on;
  // stream_writers.events: the processes that persist rooms' events, each room by exactly one of
  // them (event_writer_for). {"main"} unless configured.
  std::vector<std::string> event_writers{"main"};
  // Synapse's key: the bearer secret of the replication endpoints (an event forwarded to its
  // room's writer). Unset: those endpoints are open on the listeners that serve `replication`.
  std::string worker_replication_secret;
  bool is_worker() const { return !worker_app.empty(); }
  // Part of a deployment of several processes: cross-process wake-ups and cache invalidation run.
  bool multi_process() const { return !instance_map.empty(); }
  const std::string& media_jobs_instance() const {
    return media_background_jobs_on.empty() ? run_background_tasks_on : media_background_jobs_on;
  }
  // Media retention runs here: the process named for media jobs, when it serves media.
  bool runs_media_jobs() const { return serves_media && instance_name == media_jobs_instance(); }
  // Several processes write the stream (event writers besides main): they take turns.
  bool shared_stream() const { return event_writers.size() != 1 || event_writers.front() != "main"; }
  bool is_event_writer() const;
  // The writer of a room's events: Synapse's choice (SHA-256 of the room ID, read as a
  // little-endian integer, modulo the number of writers), so a room has the same writer as there.
  const std::string& event_writer_for(std::string_view room_id) const;
  const Instance* instance(std::string_view name) const;
};

// Parses the file. Throws std::runtime_error("<key>: <why>") for bad values; returns warnings
// (unknown keys) in `warnings`.
Config load_config(const std::string& path, std::vector<std::string>& warnings);
// Several files, as Synapse's `-c homeserver.yaml -c worker.yaml`: a later file's top-level keys
// replace an earlier one's.
Config load_config(const std::vector<std::string>& paths, std::vector<std::string>& warnings);
Config parse_config(const std::string& yaml_text, const std::string& config_dir,
                    std::vector<std::string>& warnings);

// A commented configuration for `trestle generate-config`.
std::string generate_config(const std::string& server_name, const std::string& data_dir);

}  // namespace trestle::config
