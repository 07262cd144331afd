#include "http/client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>

#include <atomic>
#include <chrono>

namespace trestle::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;

namespace {
std::atomic<bool> aborting{false};
}  // namespace

void abort_outbound_requests() { aborting.store(true); }

ClientResponse http_request(const std::string& method, const std::string& url, const std::string& path_and_query,
                            const std::vector<std::pair<std::string, std::string>>& headers, const std::string& body,
                            int timeout_ms) {
  ClientResponse out;
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed) {
    out.error = "invalid URL '" + url + "'";
    return out;
  }
  if (parsed->scheme() != "http") {
    out.error = "unsupported URL scheme '" + std::string(parsed->scheme()) + "' (only http)";
    return out;
  }
  std::string host = parsed->host();
  std::string port = parsed->has_port() ? std::string(parsed->port()) : "80";
  std::string target = std::string(parsed->encoded_path());
  while (!target.empty() && target.back() == '/') target.pop_back();
  target += path_and_query;

  asio::io_context ioc;
  asio::ip::tcp::resolver resolver(ioc);
  beast::tcp_stream stream(ioc);
  bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(method), target, 11};
  req.set(bhttp::field::host, host + (parsed->has_port() ? ":" + port : ""));
  req.set(bhttp::field::user_agent, "Trestle");
  for (const auto& [k, v] : headers) req.set(k, v);
  if (!body.empty() || method == "PUT" || method == "POST") {
    // JSON unless the caller named another type (a form post).
    if (req.find(bhttp::field::content_type) == req.end()) req.set(bhttp::field::content_type, "application/json");
    req.body() = body;
  }
  req.prepare_payload();
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  bool done = false;

  // Every step async on a private io_context, so one deadline bounds resolve, connect, write and read.
  stream.expires_after(std::chrono::milliseconds(timeout_ms));
  resolver.async_resolve(host, port, [&](beast::error_code ec, asio::ip::tcp::resolver::results_type results) {
    if (ec) {
      out.error = "connection failed: " + ec.message();
      return;
    }
    stream.async_connect(results, [&](beast::error_code ec2, const asio::ip::tcp::endpoint&) {
      if (ec2) {
        out.timed_out = ec2 == beast::error::timeout;
        out.error = out.timed_out ? "timeout" : "connection failed: " + ec2.message();
        return;
      }
      bhttp::async_write(stream, req, [&](beast::error_code ec3, size_t) {
        if (ec3) {
          out.timed_out = ec3 == beast::error::timeout;
          out.error = out.timed_out ? "timeout" : "connection failed: " + ec3.message();
          return;
        }
        bhttp::async_read(stream, buffer, parser, [&](beast::error_code ec4, size_t) {
          if (ec4) {
            out.timed_out = ec4 == beast::error::timeout;
            out.error = out.timed_out ? "timeout" : "connection failed: " + ec4.message();
            return;
          }
          out.status = static_cast<int>(parser.get().result_int());
          out.body = std::move(parser.get().body());
          done = true;
        });
      });
    });
  });
  // The resolver is not covered by the stream's timer; bound the whole run as well. Run in short
  // slices so a shutdown does not wait for the timeout.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms + 100);
  while (!ioc.stopped() && !aborting.load() && std::chrono::steady_clock::now() < deadline) {
    ioc.run_for(std::chrono::milliseconds(50));
  }
  if (!done && aborting.load()) out.error = "aborted: shutting down";
  if (!done && out.error.empty()) {
    out.timed_out = true;
    out.error = "timeout";
  }
  beast::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  return out;
}

}  // namespace trestle::http
