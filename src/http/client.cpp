#include "http/client.hpp"

#include "core/metrics.hpp"
#include "http/destination.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>

namespace trestle::http {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

std::atomic<bool> aborting{false};

// --- TLS settings, fixed at start-up -------------------------------------------------------------

struct TlsSettings {
  std::mutex mutex;
  std::shared_ptr<ssl::context> ctx;
  bool verify = true;
};

TlsSettings& tls_settings() {
  static TlsSettings s;
  return s;
}

std::shared_ptr<ssl::context> make_tls_context(const OutboundTlsConfig& config) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                   ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  beast::error_code ec;
  ctx->set_default_verify_paths(ec);  // the system store; a machine without one still gets the custom CAs
  for (const auto& file : config.extra_ca_files) {
    ctx->load_verify_file(file, ec);
    if (ec) throw std::runtime_error("federation_custom_ca_list: " + file + ": not readable as PEM certificates (" + ec.message() + ")");
  }
  ctx->set_verify_mode(config.verify ? ssl::verify_peer : ssl::verify_none);
  return ctx;
}

std::pair<std::shared_ptr<ssl::context>, bool> current_tls() {
  auto& s = tls_settings();
  std::lock_guard lock(s.mutex);
  if (!s.ctx) s.ctx = make_tls_context({});
  return {s.ctx, s.verify};
}

// --- connections ---------------------------------------------------------------------------------

// One connection with its own io_context: a pooled connection moves between caller threads, and
// only the thread holding it runs its io_context.
struct Connection {
  std::shared_ptr<ssl::context> ctx;  // outlives the stream using it
  asio::io_context ioc;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  Clock::time_point idle_since;

  beast::tcp_stream& tcp() { return secure ? beast::get_lowest_layer(*secure) : *plain; }
  void close() {
    beast::error_code ignored;
    tcp().socket().close(ignored);
  }
  // Nothing should arrive on an idle connection: readable means the peer closed it (EOF, TLS
  // close_notify, reset) or sent something unasked; either way it cannot carry a request.
  bool idle_and_open() {
    if (secure && SSL_pending(secure->native_handle()) > 0) return false;
    pollfd p{tcp().socket().native_handle(), POLLIN, 0};
    return ::poll(&p, 1, 0) == 0;
  }
};

template <class F>
auto with_stream(Connection& c, F&& f) {
  if (c.secure) return f(*c.secure);
  return f(*c.plain);
}

// Runs one asynchronous step on `ioc` (the connection's, or the resolver's): `start(done)` begins it
// and `done(ec)` ends it. Returns the step's error, beast::error::timeout at the deadline, or
// operation_aborted at shutdown. A step cut short is cancelled and drained before returning, so no
// handler outlives the locals it points to (a resolver stuck in getaddrinfo may stay queued: its
// io_context is destroyed without running it).
template <class Start>
beast::error_code run_step(asio::io_context& ioc, Clock::time_point deadline, Start&& start,
                           const std::function<void()>& cancel) {
  bool finished = false;
  beast::error_code result;
  start([&](beast::error_code ec) {
    result = ec;
    finished = true;
  });
  ioc.restart();
  // One handler at a time, in short slices: back as soon as the step is done, and a shutdown
  // does not wait for the deadline.
  while (!finished && !aborting.load() && Clock::now() < deadline) {
    if (ioc.stopped()) ioc.restart();
    ioc.run_one_for(50ms);
  }
  if (finished) return result;
  cancel();
  auto drain_until = Clock::now() + 2s;
  while (!finished && Clock::now() < drain_until) {
    if (ioc.stopped()) ioc.restart();
    ioc.run_one_for(20ms);
  }
  return aborting.load() ? beast::error_code(asio::error::operation_aborted) : beast::error_code(beast::error::timeout);
}

void fail(ClientResponse& out, beast::error_code ec, const std::string& what) {
  if (aborting.load()) {
    out.error = "aborted: shutting down";
  } else if (ec == beast::error::timeout) {
    out.timed_out = true;
    out.error = "timeout (" + what + ")";
  } else {
    out.error = "connection failed: " + what + ": " + ec.message();
  }
}

std::unique_ptr<Connection> connect(const Destination& d, Clock::time_point deadline, ClientResponse& out) {
  auto c = std::make_unique<Connection>();
  std::vector<asio::ip::tcp::endpoint> endpoints;
  beast::error_code ec;
  if (d.host_is_ip) {
    auto address = asio::ip::make_address(d.host, ec);
    if (!ec) {
      endpoints.emplace_back(address, static_cast<unsigned short>(std::stoi(d.port)));
    }
  } else {
    // On an io_context of its own: Asio resolves names on a thread per io_context, which a
    // pooled connection's would keep for its whole life.
    asio::io_context resolve_ioc;
    asio::ip::tcp::resolver resolver(resolve_ioc);
    ec = run_step(
        resolve_ioc, deadline,
        [&](auto done) {
          resolver.async_resolve(d.host, d.port, [&endpoints, done](beast::error_code e, auto results) {
            for (const auto& entry : results) endpoints.push_back(entry.endpoint());
            done(e);
          });
        },
        [&] { resolver.cancel(); });
  }
  if (ec) {
    fail(out, ec, "resolving " + d.host);
    return nullptr;
  }

  bool verify = false;
  if (d.tls) {
    auto [ctx, verify_peer] = current_tls();
    verify = verify_peer;
    c->ctx = ctx;
    c->secure.emplace(c->ioc, *ctx);
    SSL* s = c->secure->native_handle();
    if (!d.host_is_ip) SSL_set_tlsext_host_name(s, d.host.c_str());  // SNI is for names only
    if (verify) {
      // OpenSSL checks the name (or address) against the certificate during the handshake.
      if (d.host_is_ip) X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), d.host.c_str());
      else SSL_set1_host(s, d.host.c_str());
    }
  } else {
    c->plain.emplace(c->ioc);
  }
  c->tcp().expires_at(deadline);
  ec = run_step(
      c->ioc, deadline,
      [&](auto done) { c->tcp().async_connect(endpoints, [done](beast::error_code e, const auto&) { done(e); }); },
      [&] { c->close(); });
  if (ec) {
    fail(out, ec, "connecting to " + d.key());
    return nullptr;
  }
  // Small requests go out at once: with Nagle a kept-alive connection waits for the peer's delayed ACK.
  c->tcp().socket().set_option(asio::ip::tcp::no_delay(true), ec);
  if (d.tls) {
    ec = run_step(
        c->ioc, deadline, [&](auto done) { c->secure->async_handshake(ssl::stream_base::client, done); },
        [&] { c->close(); });
    if (ec) {
      long verdict = SSL_get_verify_result(c->secure->native_handle());
      if (verify && verdict != X509_V_OK && !aborting.load()) {
        out.error = "TLS: the certificate of " + d.key() + " is not accepted: " +
                    X509_verify_cert_error_string(verdict);
        spdlog::warn("outbound https: {} (trust its CA with federation_custom_ca_list)", out.error);
      } else {
        fail(out, ec, "TLS handshake with " + d.key());
      }
      return nullptr;
    }
  }
  return c;
}

// --- the pool ------------------------------------------------------------------------------------

class Pool {
public:
  std::unique_ptr<Connection> take(const std::string& key) {
    std::unique_ptr<Connection> found;
    std::vector<std::unique_ptr<Connection>> stale;  // closed outside the lock
    {
      std::lock_guard lock(mutex_);
      auto it = idle_.find(key);
      if (it == idle_.end()) return nullptr;
      auto& list = it->second;
      while (!list.empty() && !found) {
        auto c = std::move(list.back());  // the most recently used is the likeliest to be alive
        list.pop_back();
        if (Clock::now() - c->idle_since < std::chrono::milliseconds(kIdleTimeoutMs) && c->idle_and_open()) {
          found = std::move(c);
        } else {
          stale.push_back(std::move(c));
        }
      }
      if (list.empty()) idle_.erase(it);
    }
    return found;
  }

  void give(const std::string& key, std::unique_ptr<Connection> c) {
    c->tcp().expires_never();
    c->idle_since = Clock::now();
    std::vector<std::unique_ptr<Connection>> expired;
    std::lock_guard lock(mutex_);
    auto& list = idle_[key];
    while (!list.empty() && Clock::now() - list.front()->idle_since >= std::chrono::milliseconds(kIdleTimeoutMs)) {
      expired.push_back(std::move(list.front()));
      list.erase(list.begin());
    }
    if (list.size() < static_cast<size_t>(kMaxIdlePerDestination)) list.push_back(std::move(c));
  }

private:
  std::mutex mutex_;
  std::map<std::string, std::vector<std::unique_ptr<Connection>>> idle_;
};

Pool& pool() {
  static Pool p;
  return p;
}

DestinationBackoff& backoff() {
  static DestinationBackoff b;
  return b;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
}

struct Exchange {
  beast::error_code ec;
  bool wrote = false;       // the whole request went out
  bool got_bytes = false;   // any byte of an answer arrived
  bool keep_alive = false;  // the connection may carry another request
};

Exchange exchange(Connection& c, const bhttp::request<bhttp::string_body>& req, Clock::time_point deadline,
                  ClientResponse& out) {
  Exchange x;
  c.tcp().expires_at(deadline);
  x.ec = run_step(
      c.ioc, deadline,
      [&](auto done) {
        with_stream(c, [&](auto& s) { bhttp::async_write(s, req, [done](beast::error_code e, size_t) { done(e); }); });
      },
      [&] { c.close(); });
  if (x.ec) return x;
  x.wrote = true;
  // Acknowledge the answer's first segment at once: a peer that writes its head and body apart
  // without TCP_NODELAY (Python's http.server) otherwise waits for our delayed ACK (40 ms) on
  // every kept-alive request.
  int one = 1;
  ::setsockopt(c.tcp().socket().native_handle(), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  x.ec = run_step(
      c.ioc, deadline,
      [&](auto done) {
        with_stream(c, [&](auto& s) { bhttp::async_read(s, buffer, parser, [done](beast::error_code e, size_t) { done(e); }); });
      },
      [&] { c.close(); });
  x.got_bytes = parser.got_some() || buffer.size() > 0;
  if (x.ec) return x;
  out.status = static_cast<int>(parser.get().result_int());
  out.body = std::move(parser.get().body());
  // Bytes beyond the answer would be read as the next one's start: such a connection is not reused.
  x.keep_alive = parser.get().keep_alive() && buffer.size() == 0;
  return x;
}

// A reused connection the peer had closed: the request cannot have been processed.
bool stale(const Exchange& x) {
  if (x.ec == beast::error::timeout || x.ec == asio::error::operation_aborted) return false;
  return !x.wrote || !x.got_bytes;
}

}  // namespace

void configure_outbound_tls(const OutboundTlsConfig& config) {
  auto ctx = make_tls_context(config);
  auto& s = tls_settings();
  std::lock_guard lock(s.mutex);
  s.ctx = ctx;
  s.verify = config.verify;
}

void abort_outbound_requests() { aborting.store(true); }

namespace {
ClientResponse send_request(const std::string& method, const std::string& url, const std::string& path_and_query,
                            const std::vector<std::pair<std::string, std::string>>& headers, const std::string& body,
                            int timeout_ms, const RequestOptions& options) {
  ClientResponse out;
  std::string error;
  auto dest = parse_destination(url, error);
  if (!dest) {
    out.error = error;
    out.not_sent = true;
    return out;
  }
  if (aborting.load()) {
    out.error = "aborted: shutting down";
    out.not_sent = true;
    return out;
  }
  const std::string key = dest->key();
  if (options.use_backoff) {
    if (auto wait = backoff().remaining_ms(key, now_ms()); wait > 0) {
      out.error = "connection failed: " + key + " is not tried for " + std::to_string(wait) +
                  " ms more after connection failures";
      out.not_sent = true;
      return out;
    }
  }

  bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(method), dest->target(path_and_query), 11};
  req.set(bhttp::field::host, dest->host_header);
  req.set(bhttp::field::user_agent, "Trestle");
  for (const auto& [k, v] : headers) req.set(k, v);
  if (!body.empty() || method == "PUT" || method == "POST") {
    // JSON unless the caller named another type (a form post).
    if (req.find(bhttp::field::content_type) == req.end()) req.set(bhttp::field::content_type, "application/json");
    req.body() = body;
  }
  req.prepare_payload();

  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (int attempt = 0;; ++attempt) {
    auto conn = attempt == 0 ? pool().take(key) : nullptr;
    bool reused = conn != nullptr;
    if (!reused) {
      auto connect_deadline = std::min(deadline, Clock::now() + std::chrono::milliseconds(options.connect_timeout_ms));
      conn = connect(*dest, connect_deadline, out);
      if (options.use_backoff && !aborting.load()) {
        if (conn) backoff().success(key);
        else backoff().failure(key, now_ms());
      }
      if (!conn) return out;
    }
    auto x = exchange(*conn, req, deadline, out);
    if (!x.ec) {
      if (x.keep_alive) pool().give(key, std::move(conn));
      return out;
    }
    if (reused && attempt == 0 && stale(x)) continue;  // once, on a fresh connection
    fail(out, x.ec, std::string(x.wrote ? "reading the answer from " : "sending to ") + key);
    return out;
  }
}
}  // namespace

ClientResponse http_request(const std::string& method, const std::string& url, const std::string& path_and_query,
                            const std::vector<std::pair<std::string, std::string>>& headers, const std::string& body,
                            int timeout_ms, const RequestOptions& options) {
  auto out = send_request(method, url, path_and_query, headers, body, timeout_ms, options);
  // Synapse's names (synapse/http/client.py); "ERR" when no answer came.
  static auto& requests = metrics::registry().counter("synapse_http_client_requests", "Outbound HTTP requests sent", {"method"});
  static auto& responses = metrics::registry().counter("synapse_http_client_responses",
                                                       "Outbound HTTP requests answered, by status code", {"method", "code"});
  if (!out.not_sent) {
    requests.labels({method}).inc();
    responses.labels({method, out.status ? std::to_string(out.status) : "ERR"}).inc();
  }
  return out;
}

}  // namespace trestle::http
