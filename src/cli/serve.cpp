// `trestle --config FILE`: load the configuration, open the database, serve until a signal.
#include "api/routes.hpp"
#include "cli/commands.hpp"
#include "config/config.hpp"
#include "core/crypto.hpp"
#include "http/client.hpp"
#include "http/server.hpp"
#include "http/smtp_client.hpp"
#include "service/homeserver.hpp"

#include <spdlog/spdlog.h>

#include <sys/resource.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

namespace trestle::cli {

namespace {


trestle::core::SigningKey load_or_create_signing_key(const std::string& path) {
  namespace fs = std::filesystem;
  if (fs::exists(path)) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      return trestle::core::SigningKey::parse(ss.str());
    } catch (const std::exception& e) {
      throw std::runtime_error("signing key file '" + path + "': " + e.what());
    }
  }
  auto key = trestle::core::SigningKey::generate("a_" + trestle::core::random_string(4));
  if (auto dir = fs::path(path).parent_path(); !dir.empty()) fs::create_directories(dir);
  // Written to a temporary file and renamed, so a crash never leaves half a key behind.
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << key.serialize();
    out.close();  // a full disk shows up only when the buffer is flushed
    if (!out) {
      std::string cause = errno ? std::strerror(errno) : "write failed";
      std::error_code ec;
      fs::remove(tmp, ec);
      throw std::runtime_error("cannot write signing key to '" + path + "': " + cause);
    }
  }
  fs::permissions(tmp, fs::perms::owner_read | fs::perms::owner_write);
  fs::rename(tmp, path);
  spdlog::info("generated a new signing key {} at {}", key.key_id(), path);
  return key;
}

// Each open connection (an idle /sync long-poll included) is a file descriptor: lift the soft
// limit to the hard one so thousands of waiting clients fit.
void raise_fd_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

}  // namespace

int serve(const std::string& config_path) {
  raise_fd_limit();
  // A write past RLIMIT_FSIZE then fails with EFBIG, answered like a full disk, instead of the
  // signal killing the server.
  std::signal(SIGXFSZ, SIG_IGN);
  std::vector<std::string> warnings;
  trestle::config::Config cfg;
  try {
    cfg = trestle::config::load_config(config_path, warnings);
  } catch (const std::exception& e) {
    std::cerr << "trestle: " << config_path << ": " << e.what() << "\n";
    return 2;
  }
  std::string level = cfg.log_level == "warning" ? "warn" : cfg.log_level;
  spdlog::set_level(spdlog::level::from_str(level));
  for (const auto& w : warnings) spdlog::warn("{}: {}", config_path, w);
  try {
    trestle::http::configure_outbound_tls(
        {!cfg.use_insecure_ssl_client_just_for_testing_do_not_use, cfg.federation_custom_ca_list});
  } catch (const std::exception& e) {
    std::cerr << "trestle: " << config_path << ": " << e.what() << "\n";
    return 2;
  }
  if (cfg.use_insecure_ssl_client_just_for_testing_do_not_use) {
    spdlog::warn("use_insecure_ssl_client_just_for_testing_do_not_use: outbound https certificates are NOT verified");
  }

  if (auto dir = std::filesystem::path(cfg.database_path).parent_path(); !dir.empty()) {
    std::filesystem::create_directories(dir);
  }
  auto key = load_or_create_signing_key(cfg.signing_key_path);
  auto outbound = [](const std::string& method, const std::string& base_url, const std::string& path,
                     const std::vector<std::pair<std::string, std::string>>& headers, const std::string& body,
                     int timeout_ms) {
    auto r = trestle::http::http_request(method, base_url, path, headers, body, timeout_ms);
    return trestle::service::OutboundResponse{r.status, std::move(r.body), std::move(r.error), r.timed_out, r.not_sent};
  };
  trestle::service::Homeserver hs(cfg, std::move(key), outbound);
  if (cfg.email.enabled) {
    hs.threepids.set_mail_sender([host = cfg.email.smtp_host, port = cfg.email.smtp_port](
                                       const std::string& from, const std::string& to, const std::string& message) {
      return trestle::http::smtp_send(host, port, from, to, message, 10000);
    });
  }
  trestle::http::Router router;
  trestle::api::add_all_routes(router, hs);

  trestle::http::ServerLimits limits;
  limits.max_body_bytes = cfg.max_request_body_size;
  limits.max_upload_bytes = cfg.max_upload_size;
  limits.upload_dir = hs.media.temp_dir();
  limits.header_timeout_ms = cfg.http_limits.header_timeout_ms;
  limits.body_timeout_ms = cfg.http_limits.body_timeout_ms;
  limits.upload_min_rate = cfg.http_limits.upload_min_rate;
  limits.max_connections_per_address = cfg.http_limits.max_connections_per_address;
  limits.max_long_polls_per_user = cfg.http_limits.max_long_polls_per_user;
  trestle::http::Server server(router, hs.notifier, limits);
  std::vector<trestle::http::Endpoint> endpoints;
  for (const auto& l : cfg.listeners) {
    for (const auto& a : l.bind_addresses) endpoints.push_back({a, l.port});
  }
  server.listen(endpoints);
  spdlog::info("trestle serving {} (database {})", cfg.server_name, cfg.database_path);
  hs.appservice_sender.start();
  hs.push.start();
  hs.media_retention.start();
  server.run();
  hs.media_retention.stop();
  trestle::http::abort_outbound_requests();
  hs.appservice_sender.stop();
  hs.push.stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace trestle::cli
