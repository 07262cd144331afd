#pragma once
// The last address and user agent each device connected with, and when (for GET
// /admin/whois). In memory: it answers "who is connecting now", and a restart starts it afresh.
#include <cstdint>
#include <functional>
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

  // Several processes: a worker's connections go to the main process too (its admin API answers
  // whois), a row when it is new and then at most every kForwardIntervalMs.
  using Forward = std::function<void(const std::string& user_id, const Connection& c)>;
  void set_forward(Forward f) { forward_ = std::move(f); }
  static constexpr int64_t kForwardIntervalMs = 10000;

private:
  Forward forward_;
  std::map<std::string, int64_t> forwarded_;  // user\0device\0ip\0agent -> when last forwarded
  std::mutex mu_;
  std::map<std::string, std::vector<Connection>> by_user_;
};

}  // namespace trestle::service
