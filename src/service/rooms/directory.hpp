#pragma once
// Room aliases and the room directory: creating, resolving and deleting aliases (an appservice is
// asked about unknown ones in its namespace), /publicRooms, and a room's directory visibility.
#include "config/config.hpp"
#include "service/requester.hpp"
#include "storage/database.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <optional>
#include <string>

namespace trestle::service {

class AccountService;
class AppServiceQueries;
class EventWriter;

// Which directory /publicRooms lists: the server's own, plus all appservice networks
// (include_all_networks), or one network's ("<appservice id>|<network id>").
struct DirectoryScope {
  bool include_all_networks = false;
  std::optional<std::string> third_party_instance_id;
};

class RoomDirectory {
public:
  RoomDirectory(const config::Config& cfg, storage::Database& db, EventWriter& writer, AccountService& accounts)
      : cfg_(cfg), db_(db), writer_(writer), accounts_(accounts) {}

  void create_alias(const Requester& r, const std::string& alias, const std::string& room_id);
  boost::json::object resolve_alias(const std::string& alias);
  // A room ID as given, or the room an alias names; 400 M_INVALID_PARAM for neither.
  std::string resolve_room_id_or_alias(const std::string& room_id_or_alias);
  void delete_alias(const Requester& r, const std::string& alias);
  boost::json::array room_aliases(const Requester& r, const std::string& room_id);
  boost::json::object public_rooms(int64_t limit, const std::optional<std::string>& since,
                                   const std::optional<std::string>& search, const DirectoryScope& scope = {});
  std::string room_visibility(const std::string& room_id);
  void set_room_visibility(const Requester& r, const std::string& room_id, const std::string& visibility);
  // PUT /directory/list/appservice/{networkId}/{roomId}: the appservice publishes a bridged room.
  void set_appservice_room_visibility(const std::string& appservice_id, const std::string& network_id,
                                      const std::string& room_id, const std::string& visibility);

  // Unknown aliases in an appservice's namespace are asked about before a 404.
  void set_appservice_queries(const AppServiceQueries* q) { appservice_queries_ = q; }

private:
  void remove_from_canonical_alias(const Requester& r, const std::string& room_id, const std::string& alias);

  const config::Config& cfg_;
  storage::Database& db_;
  EventWriter& writer_;
  AccountService& accounts_;
  const AppServiceQueries* appservice_queries_ = nullptr;
};

}  // namespace trestle::service
