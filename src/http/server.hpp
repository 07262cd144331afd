#pragma once
// The HTTP transport. Only server.cpp includes Asio/Beast; this header stays free of them.
#include "http/router.hpp"
#include "service/notifier.hpp"

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace trestle::http {

struct Endpoint {
  std::string address;
  unsigned short port;
  // metrics: a `type: metrics` listener, answering only GET /metrics and /_synapse/metrics (no
  // access log). client: the router, plus /_synapse/metrics when `serve_metrics` (the `metrics`
  // resource with enable_metrics).
  enum class Kind { client, metrics } kind = Kind::client;
  bool serve_metrics = false;
  // Behind a reverse proxy (Synapse's x_forwarded): a request's client address is the last entry
  // of X-Forwarded-For, the one the proxy appended; connections are not capped per address
  // (every one comes from the proxy, which holds the clients' own).
  bool x_forwarded = false;
};

struct ServerLimits {
  size_t max_body_bytes = 50 * 1024 * 1024;
  size_t max_header_bytes = 16 * 1024;
  // Media uploads (POST/PUT /_matrix/media/v3/upload...) are streamed into a file in
  // `upload_dir` (Request::body_file) with this limit instead; empty dir: read like any body.
  size_t max_upload_bytes = 50 * 1024 * 1024;
  std::string upload_dir;
  // Slow clients: time from a request's first byte to the end of its header; whole-body deadline
  // of an ordinary request; uploads get body_timeout + 1 s per upload_min_rate bytes received.
  int64_t idle_timeout_ms = 120'000;  // a kept-alive connection waiting for its next request
  int64_t header_timeout_ms = 30'000;
  int64_t body_timeout_ms = 60'000;
  uint64_t upload_min_rate = 1024;
  size_t max_connections_per_address = 64;  // 0: no cap
  size_t max_long_polls_per_user = 100;     // per LongPoll::owner; 0: no cap
  int io_threads = 0;      // 0: one per core
  // Blocking handler work: database and password hashing (bounded by the password hasher's
  // queue). Calls to appservices never run here: handlers return an http::Offload for them, which
  // runs on the transport's own small outbound pool (see server.cpp, run_offload).
  int worker_threads = 16;
};

class Server {
public:
  Server(const Router& router, service::Notifier& notifier, ServerLimits limits);
  ~Server();
  // Binds every endpoint (throws std::runtime_error naming the one that failed).
  void listen(const std::vector<Endpoint>& endpoints);
  // Runs until SIGINT/SIGTERM or stop(). `on_ready` runs once all listeners are bound.
  void run();
  void stop();

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace trestle::http
