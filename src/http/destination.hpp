#pragma once
// Pure pieces of the outbound HTTP client (no Asio here, so gtests can reach them): where a URL
// points (the pool key), and per-destination backoff after connection failures.
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace trestle::http {

// What a base URL such as "https://bridge.example:8443/base/" names.
struct Destination {
  bool tls = false;          // https
  std::string host;          // for DNS / connect: brackets of an IPv6 literal removed
  std::string port;          // always set: the URL's, or 80 / 443
  std::string host_header;   // Host: as written, ":port" only when the URL had one
  bool host_is_ip = false;   // an IP literal: no SNI, the certificate must name the address
  std::string base_path;     // the URL's path, trailing slashes removed ("" for none)

  // The pool and backoff key: scheme, host and port ("https://bridge.example:8443").
  std::string key() const;
  // base_path + path_and_query (which starts with '/').
  std::string target(const std::string& path_and_query) const;
};

// nullopt with `error` set for a URL that is not http(s)://host[:port][/path].
std::optional<Destination> parse_destination(const std::string& url, std::string& error);

// After a connection failure a destination is not tried again for a while: `initial_ms`, doubled
// at each further failure up to `max_ms`. A success forgets it. Thread-safe.
class DestinationBackoff {
public:
  DestinationBackoff(int64_t initial_ms = 1000, int64_t max_ms = 60'000) : initial_ms_(initial_ms), max_ms_(max_ms) {}
  // Milliseconds to wait before `key` may be tried again; 0 when it may be tried now.
  int64_t remaining_ms(const std::string& key, int64_t now_ms) const;
  void failure(const std::string& key, int64_t now_ms);
  void success(const std::string& key);

private:
  struct State {
    int64_t delay_ms = 0;
    int64_t retry_at_ms = 0;
  };
  int64_t initial_ms_, max_ms_;
  mutable std::mutex mutex_;
  std::map<std::string, State> state_;
};

}  // namespace trestle::http
