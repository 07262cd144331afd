#pragma once
// POST /createRoom: validates the whole request first, then sends the create event, the creator's
// join, power levels, the preset's state, initial_state, name, topic and invites in one write.
#include "config/config.hpp"
#include "service/requester.hpp"
#include "storage/database.hpp"

#include <boost/json/object.hpp>
#include <optional>
#include <string>

namespace trestle::service {

class AccountService;
class AppServiceQueries;
class EventWriter;
class MembershipService;

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

private:
  const config::Config& cfg_;
  storage::Database& db_;
  EventWriter& writer_;
  AccountService& accounts_;
  MembershipService& membership_;
  const AppServiceQueries* appservice_queries_ = nullptr;
};

}  // namespace trestle::service
