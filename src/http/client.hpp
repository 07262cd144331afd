#pragma once
// A small blocking HTTP/1.1 client for calls the homeserver makes (appservice transactions,
// queries, ping). Blocking on purpose: each caller owns a thread (one sender per appservice) and a
// hard timeout bounds every call. Plain http only; https URLs fail with a clear error.
#include <string>
#include <utility>
#include <vector>

namespace trestle::http {

struct ClientResponse {
  int status = 0;  // 0 when no HTTP response arrived
  std::string body;
  std::string error;  // set when status == 0: "connection failed: ...", "timeout"
  bool timed_out = false;
};

// `url` is "http://host[:port]/base" and `path_and_query` is appended to it (the base's trailing
// slash is folded). Never throws.
// Ends every outbound request in flight, and fails new ones at once (shutdown: a hung appservice
// must not hold the process for a whole request timeout).
void abort_outbound_requests();

ClientResponse http_request(const std::string& method, const std::string& url, const std::string& path_and_query,
                            const std::vector<std::pair<std::string, std::string>>& headers, const std::string& body,
                            int timeout_ms);

}  // namespace trestle::http
