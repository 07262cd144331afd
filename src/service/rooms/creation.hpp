#pragma once
// POST /createRoom: validates the whole request first, then sends the create event, the creator's
// join, power levels, the preset's state, initial_state, name, topic and invites in one write.
#include "config/config.hpp"
#include "service/requester.hpp"
#include "storage/database.hpp"

#include <boost/json/object.hpp>
#include <optional>
#include <string>
#include <vector>

namespace trestle::service {

class AccountService;
class AppServiceQueries;
class EventWriter;
class MembershipService;
struct NewEvent;

class RoomCreation {
public:
  RoomCreation(const config::Config& cfg, storage::Database& db, EventWriter& writer, AccountService& accounts,
               MembershipService& membership)
      : cfg_(cfg), db_(db), writer_(writer), accounts_(accounts), membership_(membership) {}

  // Returns the room id (`room_id` when given: a room upgrade names it first).
  std::string create_room(const Requester& r, const boost::json::object& body,
                          const std::optional<std::string>& room_id = std::nullopt);

  // Unknown invitees in an appservice's namespace are asked about, like /invite does.
  void set_appservice_queries(const AppServiceQueries* q) { appservice_queries_ = q; }

  // A fresh room ID (versions before 12) whose events this process writes: with several event
  // writers, one of its own rooms (a room upgrade names the new room with it before creating it).
  // 500 M_UNKNOWN on a process that is not an event writer.
  std::string new_room_id() const;

private:
  [[noreturn]] void not_an_event_writer() const;
  // The one write of the room's events, its alias and its directory listing; sets `room_id`.
  void write_room(std::vector<NewEvent>& events, const std::optional<std::string>& alias,
                  const std::string& visibility, const std::string& creator, bool pl_override,
                  const boost::json::object& pl, std::string& room_id);
  const config::Config& cfg_;
  storage::Database& db_;
  EventWriter& writer_;
  AccountService& accounts_;
  MembershipService& membership_;
  const AppServiceQueries* appservice_queries_ = nullptr;
};

}  // namespace trestle::service
