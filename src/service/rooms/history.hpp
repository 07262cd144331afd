#pragma once
// Reading a room as a requester may see it: current state, members, single events, and history
// (/messages, /context), each within what room_read_access allows.
#include "service/requester.hpp"
#include "service/visibility.hpp"
#include "storage/database.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <optional>
#include <string>

namespace trestle::service {

class RoomHistory {
public:
  explicit RoomHistory(storage::Database& db) : db_(db) {}

  boost::json::array joined_rooms(const std::string& user_id);
  boost::json::object joined_members(const Requester& r, const std::string& room_id);
  boost::json::array members(const Requester& r, const std::string& room_id,
                             const std::optional<std::string>& membership,
                             const std::optional<std::string>& not_membership);
  boost::json::array state(const Requester& r, const std::string& room_id);
  // The content (or, with `full_event`, the whole event) of one state event: 404 M_NOT_FOUND.
  boost::json::object state_event(const Requester& r, const std::string& room_id, const std::string& type,
                                  const std::string& state_key, bool full_event);
  boost::json::object event(const Requester& r, const std::string& room_id, const std::string& event_id);
  boost::json::object messages(const Requester& r, const std::string& room_id, const std::optional<std::string>& from,
                               const std::optional<std::string>& to, const std::string& dir, int64_t limit,
                               const boost::json::object& filter);
  // The admin API's /messages: every event of the room, whoever was in it (404 for unknown rooms).
  boost::json::object admin_messages(const std::string& room_id, const std::optional<std::string>& from,
                                     const std::optional<std::string>& to, const std::string& dir, int64_t limit,
                                     const boost::json::object& filter);
  boost::json::object context(const Requester& r, const std::string& room_id, const std::string& event_id,
                              int64_t limit, const boost::json::object& filter);

  // Server-side reads, whoever asks.
  // The content of a current state event, if the room has it.
  std::optional<boost::json::object> current_state_content(const std::string& room_id, const std::string& type,
                                                           const std::string& state_key);
  // The current state event (whole PDU) of this type and key.
  std::optional<boost::json::object> current_state_pdu(const std::string& room_id, const std::string& type,
                                                       const std::string& state_key);
  // Whether `user_id` is joined to the room (used by ephemeral endpoints).
  bool is_joined(const std::string& room_id, const std::string& user_id);
  // 403 unless joined; 404 for unknown rooms is not revealed (also 403), like Synapse.
  void require_joined(const Requester& r, const std::string& room_id);

private:
  // What the requester may read of the room (room_read_access in visibility.hpp), or 403.
  RoomReadAccess read_access(storage::Connection& c, const Requester& r, const std::string& room_id);

  storage::Database& db_;
};

}  // namespace trestle::service
