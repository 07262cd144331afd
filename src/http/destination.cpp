#include "http/destination.hpp"

#include <boost/url/parse.hpp>

#include <algorithm>

namespace trestle::http {

std::string Destination::key() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return std::string(tls ? "https" : "http") + "://" + h + ":" + port;
}

std::string Destination::target(const std::string& path_and_query) const { return base_path + path_and_query; }

std::optional<Destination> parse_destination(const std::string& url, std::string& error) {
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed) {
    error = "invalid URL '" + url + "'";
    return std::nullopt;
  }
  Destination d;
  if (parsed->scheme_id() == boost::urls::scheme::https) {
    d.tls = true;
  } else if (parsed->scheme_id() != boost::urls::scheme::http) {
    error = "unsupported URL scheme '" + std::string(parsed->scheme()) + "' (only http and https)";
    return std::nullopt;
  }
  if (parsed->has_userinfo()) {
    error = "invalid URL '" + url + "': user info is not supported";
    return std::nullopt;
  }
  switch (parsed->host_type()) {
    case boost::urls::host_type::ipv4:
      d.host = parsed->host_ipv4_address().to_string();
      d.host_is_ip = true;
      break;
    case boost::urls::host_type::ipv6:
      d.host = parsed->host_ipv6_address().to_string();
      d.host_is_ip = true;
      break;
    case boost::urls::host_type::name:
      d.host = parsed->host_name();
      break;
    default:
      d.host.clear();
  }
  if (d.host.empty()) {
    error = "invalid URL '" + url + "': no host";
    return std::nullopt;
  }
  std::string default_port = d.tls ? "443" : "80";
  d.port = parsed->has_port() && !parsed->port().empty() ? std::string(parsed->port()) : default_port;
  if (d.port.size() > 5 || !std::all_of(d.port.begin(), d.port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoi(d.port) == 0 || std::stoi(d.port) > 65535) {
    error = "invalid URL '" + url + "': bad port";
    return std::nullopt;
  }
  d.host_header = std::string(parsed->encoded_host_and_port());
  d.base_path = std::string(parsed->encoded_path());
  while (!d.base_path.empty() && d.base_path.back() == '/') d.base_path.pop_back();
  return d;
}

int64_t DestinationBackoff::remaining_ms(const std::string& key, int64_t now_ms) const {
  std::lock_guard lock(mutex_);
  auto it = state_.find(key);
  if (it == state_.end()) return 0;
  return std::max<int64_t>(0, it->second.retry_at_ms - now_ms);
}

void DestinationBackoff::failure(const std::string& key, int64_t now_ms) {
  std::lock_guard lock(mutex_);
  auto& s = state_[key];
  s.delay_ms = s.delay_ms == 0 ? initial_ms_ : std::min(max_ms_, s.delay_ms * 2);
  s.retry_at_ms = now_ms + s.delay_ms;
}

void DestinationBackoff::success(const std::string& key) {
  std::lock_guard lock(mutex_);
  state_.erase(key);
}

}  // namespace trestle::http
