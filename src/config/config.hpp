#pragma once
// The homeserver configuration, read from YAML with Synapse's key names so operators can bring
// their homeserver.yaml over. Unknown keys are warned about; bad values stop start-up.
#include <cstdint>
#include <string>
#include <vector>

namespace trestle::config {

struct Listener {
  unsigned short port = 8008;
  std::vector<std::string> bind_addresses{"127.0.0.1"};
  std::string type = "http";
  std::vector<std::string> resources{"client"};
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

struct Config {
  std::string server_name;
  std::string public_baseurl;
  std::vector<Listener> listeners;
  std::string database_engine = "sqlite3";  // "sqlite3"; "psycopg2" reserved for PostgreSQL
  std::string database_path;                // args.database
  std::string signing_key_path;
  std::vector<std::string> app_service_config_files;
  bool enable_registration = false;
  bool enable_registration_without_verification = false;
  std::string registration_shared_secret;
  RateLimit rc_message{0.2, 10};
  RateLimit rc_registration{0.17, 3};
  RateLimit rc_login{0.17, 3};
  // PUT /sendToDevice per sending device (one action per request), and how many undelivered
  // to-device messages one device may have queued before new ones are refused (429).
  RateLimit rc_to_device{100, 200};
  uint64_t max_to_device_queue = 10'000;
  uint64_t max_upload_size = 50ull * 1024 * 1024;
  uint64_t max_request_body_size = 1ull * 1024 * 1024;  // non-media JSON bodies
  // Media files; default <directory of the database>/media.
  std::string media_store_path;
  // Synapse's key: while true, media uploaded is served only by the authenticated endpoints
  // (/_matrix/client/v1/media/...), the spec's "freeze" of the legacy /_matrix/media/v3 ones.
  bool enable_authenticated_media = true;
  // Synapse's use_presence: false turns presence off in /sync.
  bool use_presence = true;
  std::string log_level = "info";
  HttpLimits http_limits;
  std::string config_dir;  // directory of the config file: relative paths resolve against it
};

// Parses the file. Throws std::runtime_error("<key>: <why>") for bad values; returns warnings
// (unknown keys) in `warnings`.
Config load_config(const std::string& path, std::vector<std::string>& warnings);
Config parse_config(const std::string& yaml_text, const std::string& config_dir,
                    std::vector<std::string>& warnings);

// A commented configuration for `trestle generate-config`.
std::string generate_config(const std::string& server_name, const std::string& data_dir);

}  // namespace trestle::config
