// `trestle --config FILE`: load the configuration, open the database, serve until a signal.
#include "api/routes.hpp"
#include "cli/commands.hpp"
#include "cli/logging.hpp"
#include "config/config.hpp"
#include "core/crypto.hpp"
#include "core/version.hpp"
#include "core/metrics.hpp"
#include "http/client.hpp"
#include "http/server.hpp"
#include "http/smtp_client.hpp"
#include "service/event_forwarder.hpp"
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

// Gauges read at scrape time from the services (process metrics, notifier, appservice senders).
void register_metrics(trestle::service::Homeserver& hs) {
  namespace m = trestle::metrics;
  using S = std::vector<m::CallbackGauge::Sample>;
  m::register_process_metrics(core::kServerVersion);
  auto& r = m::registry();
  r.callback_gauge("synapse_notifier_listeners", "Long-polls waiting on the notifier", {},
                   [&hs] { return S{{{}, static_cast<double>(hs.notifier.waiter_count())}}; });
  auto per_as = [&hs](auto field) {
    return [&hs, field] {
      S out;
      for (const auto& st : hs.appservice_sender.status()) out.push_back({{st.appservice_id}, static_cast<double>(field(st))});
      return out;
    };
  };
  if (hs.cluster.enabled()) {
    // Cross-process messages (LISTEN/NOTIFY), as counters read at scrape time.
    auto cluster = [&hs](auto field) {
      return [&hs, field] { return S{{{}, static_cast<double>(field(hs.cluster.counters()))}}; };
    };
    r.callback_gauge("trestle_cluster_messages_sent_total", "Messages sent to the deployment's other processes", {},
                     cluster([](const auto& c) { return c.sent; }), m::Type::counter);
    r.callback_gauge("trestle_cluster_messages_received_total", "Messages received from the other processes", {},
                     cluster([](const auto& c) { return c.received; }), m::Type::counter);
    r.callback_gauge("trestle_cluster_gaps_total",
                     "Times the notification connection was lost and this process caught up from the database", {},
                     cluster([](const auto& c) { return c.gaps; }), m::Type::counter);
    r.callback_gauge("trestle_cluster_send_failures_total", "Batches of messages that could not be sent", {},
                     cluster([](const auto& c) { return c.send_failures; }), m::Type::counter);
  }
  r.callback_gauge("trestle_appservice_queued_transactions", "Transactions queued for an appservice, not yet accepted",
                   {"service"}, per_as([](const auto& st) { return st.queued_txns; }));
  r.callback_gauge("trestle_appservice_stream_lag", "Stream positions committed but not yet queued for an appservice",
                   {"service"}, per_as([](const auto& st) { return st.stream_lag; }));
  r.callback_gauge("trestle_appservice_backoff_seconds", "Current retry delay of an appservice's delivery (0: healthy)",
                   {"service"}, per_as([](const auto& st) { return static_cast<double>(st.backoff_ms) / 1000.0; }));
}

}  // namespace

int serve(const std::vector<std::string>& config_paths) {
  std::string config_path;  // for messages
  for (const auto& p : config_paths) config_path += (config_path.empty() ? "" : " + ") + p;
  raise_fd_limit();
  // A write past RLIMIT_FSIZE then fails with EFBIG, answered like a full disk, instead of the
  // signal killing the server.
  std::signal(SIGXFSZ, SIG_IGN);
  std::vector<std::string> warnings;
  trestle::config::Config cfg;
  try {
    cfg = trestle::config::load_config(config_paths, warnings);
  } catch (const std::exception& e) {
    std::cerr << "trestle: " << config_path << ": " << e.what() << "\n";
    return 2;
  }
  std::vector<std::string> log_warnings;
  try {
    setup_logging(cfg, log_warnings);
  } catch (const std::exception& e) {
    std::cerr << "trestle: " << config_path << ": " << e.what() << "\n";
    return 2;
  }
  for (const auto& w : warnings) spdlog::warn("{}: {}", config_path, w);
  for (const auto& w : log_warnings) spdlog::warn("{}: {}", cfg.log_config, w);
  // The default (verify against the system's CAs) is what the client sets up at its first https
  // request; loading the system store takes ~50 ms of CPU, so start-up does it only for a
  // non-default setting (whose CA files must be checked now).
  try {
    if (cfg.use_insecure_ssl_client_just_for_testing_do_not_use || !cfg.federation_custom_ca_list.empty()) {
      trestle::http::configure_outbound_tls(
          {!cfg.use_insecure_ssl_client_just_for_testing_do_not_use, cfg.federation_custom_ca_list});
    }
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
  if (cfg.shared_stream()) {
    // Several event writers: events of another writer's rooms are written there (its
    // `replication` listener, from instance_map). An unreachable writer fails fast.
    auto to_writer = [](const std::string& method, const std::string& base_url, const std::string& path,
                        const std::vector<std::pair<std::string, std::string>>& headers, const std::string& body,
                        int timeout_ms) {
      trestle::http::RequestOptions options;
      options.connect_timeout_ms = 3000;
      auto r = trestle::http::http_request(method, base_url, path, headers, body, timeout_ms, options);
      return trestle::service::OutboundResponse{r.status, std::move(r.body), std::move(r.error), r.timed_out, r.not_sent};
    };
    hs.rooms.writer.set_forwarder(std::make_unique<trestle::service::EventForwarder>(hs.config, hs.db, to_writer));
  }
  if (cfg.email.enabled) {
    hs.threepids.set_mail_sender([host = cfg.email.smtp_host, port = cfg.email.smtp_port](
                                       const std::string& from, const std::string& to, const std::string& message) {
      return trestle::http::smtp_send(host, port, from, to, message, 10000);
    });
  }
  trestle::http::Router router;
  trestle::api::add_all_routes(router, hs);
  // A worker's reads see every write acknowledged before the request arrived; so do an event
  // writer's when other writers share the stream.
  if (cfg.is_worker() || cfg.shared_stream()) router.set_preamble([&hs] { hs.cluster.catch_up(); });

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
    using Kind = trestle::http::Endpoint::Kind;
    bool metrics_listener = l.type == "metrics";
    if (metrics_listener && !cfg.enable_metrics) {
      spdlog::warn("listener on port {}: metrics listener configured, but enable_metrics is not true; not started", l.port);
      continue;
    }
    bool metrics_resource = std::find(l.resources.begin(), l.resources.end(), "metrics") != l.resources.end();
    if (metrics_resource && !metrics_listener && !cfg.enable_metrics) {
      spdlog::warn("listener on port {}: the metrics resource needs enable_metrics: true; not served", l.port);
    }
    for (const auto& a : l.bind_addresses) {
      endpoints.push_back({a, l.port, metrics_listener ? Kind::metrics : Kind::client,
                           metrics_resource && cfg.enable_metrics, l.x_forwarded && !metrics_listener});
    }
  }
  if (cfg.enable_metrics) register_metrics(hs);
  server.listen(endpoints);
  spdlog::info("trestle serving {} (database {}{})", cfg.server_name, hs.db.options().describe(),
               cfg.multi_process() ? ", instance " + cfg.instance_name : std::string());
  // Every event writer evaluates push rules for its own events in their commit; the main process
  // takes what another left (a failed evaluation) and sends what they queued at their wake-up.
  if (!cfg.is_worker() && cfg.shared_stream()) hs.cluster.on("wake", [&hs](const auto&) { hs.push.poke(); });
  hs.cluster.start();
  // Several processes: each appservice is sent to from one process at a time, the holder of its
  // lease (notify_appservices_from_worker's when it runs, another's when it is down: every process
  // runs the sender, service/appservice/sender.hpp), push notifications from the main process (its
  // writer evaluates them), periodic jobs from run_background_tasks_on.
  hs.appservice_sender.start();
  if (!cfg.is_worker()) {
    hs.push.start();
  } else if (cfg.shared_stream() && cfg.is_event_writer()) {
    hs.push.start_inline();
  }
  if (cfg.runs_media_jobs()) hs.media_retention.start();
  server.run();
  hs.media_retention.stop();
  // The gauges read hs, which is about to go.
  for (const char* name : {"synapse_notifier_listeners", "trestle_appservice_queued_transactions",
                           "trestle_appservice_stream_lag", "trestle_appservice_backoff_seconds",
                           "trestle_cluster_messages_sent_total", "trestle_cluster_messages_received_total",
                           "trestle_cluster_gaps_total", "trestle_cluster_send_failures_total"}) {
    trestle::metrics::registry().remove(name);
  }
  trestle::http::abort_outbound_requests();
  hs.appservice_sender.stop();
  hs.push.stop();
  hs.cluster.stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace trestle::cli
