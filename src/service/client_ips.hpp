#pragma once
// The last address and user agent each device connected with, and when (for GET
// /admin/whois). In memory: it answers "who is connecting now", and a restart starts it afresh.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace trestle::service {

class ClientIps {
public:
  struct Connection {
    std::string device_id;
    std::string ip;
    std::string user_agent;
    int64_t last_seen_ms = 0;
  };
  static constexpr size_t kMaxPerUser = 100;  // (device, ip, user agent) rows kept per user

  void record(const std::string& user_id, const std::string& device_id, const std::string& ip,
              const std::string& user_agent, int64_t now_ms);
  std::vector<Connection> connections(const std::string& user_id);

private:
  std::mutex mu_;
  std::map<std::string, std::vector<Connection>> by_user_;
};

}  // namespace trestle::service
