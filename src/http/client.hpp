#pragma once
// A small blocking HTTP/1.1 client for calls the homeserver makes (appservice transactions,
// queries, ping; later federation, push gateways, identity servers). Blocking on purpose: each
// caller owns a thread and a hard timeout bounds every call. http and https (OpenSSL through Asio):
// the system CA store plus `federation_custom_ca_list`, SNI and host-name verification, unless
// `use_insecure_ssl_client_just_for_testing_do_not_use`.
//
// Connections are kept alive and pooled per destination (scheme, host, port): at most
// kMaxIdlePerDestination idle ones each, closed after kIdleTimeoutMs unused. A pooled connection
// the peer has closed meanwhile is replaced by a fresh one, once, when the request cannot have
// been processed (the write failed, or the connection ended before any byte of the answer).
#include <string>
#include <utility>
#include <vector>

namespace trestle::http {

struct ClientResponse {
  int status = 0;  // 0 when no HTTP response arrived
  std::string body;
  std::string error;  // set when status == 0: "connection failed: ...", "TLS ...", "timeout"
  bool timed_out = false;
  bool not_sent = false;  // refused before connecting (destination backing off, bad URL)
};

struct RequestOptions {
  int connect_timeout_ms = 10'000;  // TCP connect + TLS handshake (also bounded by the call's timeout)
  // Fail at once (not_sent) while the destination is backing off after connection failures (1 s
  // doubling to 60 s), and count this call's connection failures. For callers without a retry
  // policy of their own (federation); appservice delivery and queries have theirs.
  bool use_backoff = false;
};

struct OutboundTlsConfig {
  bool verify = true;                    // false: use_insecure_ssl_client_just_for_testing_do_not_use
  std::vector<std::string> extra_ca_files;  // federation_custom_ca_list: PEM files, trusted as well
};

constexpr int kMaxIdlePerDestination = 8;
constexpr int kIdleTimeoutMs = 30'000;

// Once at start-up, before the first request (the default is verify with the system CAs). Throws
// std::runtime_error naming a CA file that cannot be read as PEM certificates.
void configure_outbound_tls(const OutboundTlsConfig& config);

// Ends every outbound request in flight, and fails new ones at once (shutdown: a hung appservice
// must not hold the process for a whole request timeout).
void abort_outbound_requests();

// `url` is "http(s)://host[:port]/base" and `path_and_query` is appended to it (the base's
// trailing slash is folded). Never throws.
ClientResponse http_request(const std::string& method, const std::string& url, const std::string& path_and_query,
                            const std::vector<std::pair<std::string, std::string>>& headers, const std::string& body,
                            int timeout_ms, const RequestOptions& options = {});

}  // namespace trestle::http
