#pragma once
// Rooms, their aliases and the local room directory.
#include "storage/database.hpp"

#include <optional>
#include <string>
#include <vector>

namespace trestle::storage::rooms {

struct Room {
  std::string room_id;
  std::string room_version;
  std::string creator;
  bool is_public = false;
};

void insert_room(Connection& c, const Room& r, int64_t now_ms);
std::optional<Room> get_room(Connection& c, const std::string& room_id);
void set_public(Connection& c, const std::string& room_id, bool is_public);
std::vector<std::string> public_room_ids(Connection& c);
void set_appservice_listing(Connection& c, const std::string& appservice_id, const std::string& network_id,
                            const std::string& room_id, bool listed);
// Rooms appservices publish: of one appservice network, or of all of them.
std::vector<std::string> appservice_listed_rooms(Connection& c, const std::optional<std::string>& appservice_id,
                                                 const std::optional<std::string>& network_id);

// Returns false when the alias is taken.
bool insert_alias(Connection& c, const std::string& alias, const std::string& room_id, const std::string& creator);
struct Alias {
  std::string room_id;
  std::string creator;
};
std::optional<Alias> get_alias(Connection& c, const std::string& alias);
void delete_alias(Connection& c, const std::string& alias);
std::vector<std::string> aliases_of_room(Connection& c, const std::string& room_id);
// Points every alias of `from_room` at `to_room` (room upgrades).
void move_aliases(Connection& c, const std::string& from_room, const std::string& to_room);

}  // namespace trestle::storage::rooms
