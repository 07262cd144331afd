#pragma once
// storage::Channel on PostgreSQL: a connection that LISTENs (and a thread reading it), and one
// that sends with pg_notify(). Both reconnect by themselves.
#include "storage/channel.hpp"

#include <atomic>
#include <mutex>
#include <thread>

struct pg_conn;

namespace trestle::storage::postgres {

class NotifyChannel final : public Channel {
public:
  NotifyChannel(std::string conninfo, std::string channel, ChannelHandlers handlers);
  ~NotifyChannel() override;

  void send(const std::vector<std::string>& payloads) override;
  void stop() override;

private:
  void listen_loop();
  bool send_once(const std::vector<std::string>& payloads, std::string& error);

  const std::string conninfo_;
  const std::string channel_;
  ChannelHandlers handlers_;
  std::atomic<bool> stopping_{false};
  std::thread listener_;
  std::mutex send_mu_;
  pg_conn* sender_ = nullptr;  // guarded by send_mu_
};

}  // namespace trestle::storage::postgres
