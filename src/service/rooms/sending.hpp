#pragma once
// What a client sends into a room: messages (PUT /send, idempotent per transaction), state
// (PUT /state, membership through the membership rules), and redactions.
#include "config/config.hpp"
#include "service/rate_limiter.hpp"
#include "service/requester.hpp"
#include "storage/database.hpp"

#include <boost/json/object.hpp>
#include <optional>
#include <string>

namespace trestle::service {

class EventWriter;
class MembershipService;

class RoomSending {
public:
  RoomSending(const config::Config& cfg, storage::Database& db, EventWriter& writer, MembershipService& membership)
      : db_(db), writer_(writer), membership_(membership), message_limiter_(cfg.rc_message) {}

  // PUT /send/{type}/{txnId}: idempotent per (user, device, txnId).
  std::string send_message(const Requester& r, const std::string& room_id, const std::string& type,
                           const std::string& txn_id, const boost::json::object& content,
                           std::optional<int64_t> ts);
  // The same without a thread waiting for the write: `done` gets the event ID or the error.
  void send_message_async(const Requester& r, const std::string& room_id, const std::string& type,
                          const std::string& txn_id, const boost::json::object& content, std::optional<int64_t> ts,
                          std::function<void(std::string event_id, std::exception_ptr error)> done);
  std::string set_state(const Requester& r, const std::string& room_id, const std::string& type,
                        const std::string& state_key, const boost::json::object& content, std::optional<int64_t> ts);
  std::string redact(const Requester& r, const std::string& room_id, const std::string& event_id,
                     const std::string& txn_id, const std::optional<std::string>& reason);

  RateLimiter& message_limiter() { return message_limiter_; }

private:
  storage::Database& db_;
  EventWriter& writer_;
  MembershipService& membership_;
  RateLimiter message_limiter_;
};

}  // namespace trestle::service
