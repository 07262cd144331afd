#include "storage/postgres/notify_channel.hpp"

#include "storage/postgres/connection.hpp"

#include <libpq-fe.h>
#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace trestle::storage::postgres {

namespace {

constexpr int kPollMs = 200;          // how often the listener looks at stopping_
constexpr int kMaxBackoffMs = 2000;   // between reconnection attempts

pg_conn* connect(const std::string& conninfo, std::string& error) {
  pg_conn* c = connect_with_defaults(conninfo);
  if (PQstatus(c) == CONNECTION_OK) return c;
  error = PQerrorMessage(c);
  while (!error.empty() && error.back() == '\n') error.pop_back();
  PQfinish(c);
  return nullptr;
}

bool ok(PGresult* r) {
  auto s = PQresultStatus(r);
  return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

}  // namespace

NotifyChannel::NotifyChannel(std::string conninfo, std::string channel, ChannelHandlers handlers)
    : conninfo_(std::move(conninfo)), channel_(std::move(channel)), handlers_(std::move(handlers)) {
  listener_ = std::thread([this] { listen_loop(); });
}

NotifyChannel::~NotifyChannel() {
  stop();
  std::lock_guard lock(send_mu_);
  if (sender_) PQfinish(sender_);
}

void NotifyChannel::stop() {
  stopping_ = true;
  if (listener_.joinable() && listener_.get_id() != std::this_thread::get_id()) listener_.join();
}

void NotifyChannel::listen_loop() {
  int backoff_ms = 50;
  bool warned = false;
  while (!stopping_) {
    std::string error;
    pg_conn* c = connect(conninfo_, error);
    if (c) {
      char* ident = PQescapeIdentifier(c, channel_.c_str(), channel_.size());
      std::string sql = std::string("LISTEN ") + (ident ? ident : channel_);
      PQfreemem(ident);
      PGresult* r = PQexec(c, sql.c_str());
      if (!ok(r)) error = PQerrorMessage(c);
      PQclear(r);
      if (error.empty()) {
        if (warned) spdlog::info("database notifications: listening again");
        warned = false;
        backoff_ms = 50;
        if (handlers_.on_connected) handlers_.on_connected();
        while (!stopping_) {
          pollfd p{PQsocket(c), POLLIN, 0};
          int n = ::poll(&p, 1, kPollMs);
          if (n < 0) continue;  // EINTR
          if (n == 0) continue;
          if (!PQconsumeInput(c)) {
            error = PQerrorMessage(c);
            break;
          }
          while (PGnotify* note = PQnotifies(c)) {
            std::string payload = note->extra ? note->extra : "";
            PQfreemem(note);
            try {
              if (handlers_.on_message) handlers_.on_message(payload);
            } catch (const std::exception& e) {
              spdlog::error("database notifications: a message could not be applied: {}", e.what());
            }
          }
        }
      }
      PQfinish(c);
    }
    if (stopping_) break;
    while (!error.empty() && error.back() == '\n') error.pop_back();
    if (!warned) spdlog::warn("database notifications: not listening ({}); reconnecting", error);
    warned = true;
    for (int waited = 0; waited < backoff_ms && !stopping_; waited += 50) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    backoff_ms = std::min(backoff_ms * 2, kMaxBackoffMs);
  }
}

bool NotifyChannel::send_once(const std::vector<std::string>& payloads, std::string& error) {
  if (!sender_ || PQstatus(sender_) != CONNECTION_OK) {
    if (sender_) PQfinish(sender_);
    sender_ = connect(conninfo_, error);
    if (!sender_) return false;
  }
  // One statement for the lot: `SELECT pg_notify($1, $2), pg_notify($1, $3), ...` is one round
  // trip, and one transaction delivers them together and in order.
  std::string sql = "SELECT ";
  std::vector<const char*> params{channel_.c_str()};
  for (size_t i = 0; i < payloads.size(); ++i) {
    sql += (i ? ", " : "") + std::string("pg_notify($1, $") + std::to_string(i + 2) + ")";
    params.push_back(payloads[i].c_str());
  }
  PGresult* r = PQexecParams(sender_, sql.c_str(), static_cast<int>(params.size()), nullptr, params.data(), nullptr,
                             nullptr, 0);
  bool good = ok(r);
  if (!good) error = PQerrorMessage(sender_);
  PQclear(r);
  return good;
}

void NotifyChannel::send(const std::vector<std::string>& payloads) {
  if (payloads.empty()) return;
  std::lock_guard lock(send_mu_);
  std::string error;
  if (send_once(payloads, error)) return;
  // A connection that died since the last send (a restart of PostgreSQL): one new one.
  if (sender_ && PQstatus(sender_) != CONNECTION_OK && send_once(payloads, error)) return;
  while (!error.empty() && error.back() == '\n') error.pop_back();
  throw std::runtime_error("database notification not sent: " + error);
}

}  // namespace trestle::storage::postgres
