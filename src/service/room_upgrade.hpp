#pragma once
// Room upgrades (spec: "Room Upgrades", POST /rooms/{roomId}/upgrade), done as Synapse does: a
// tombstone in the old room, a new room whose m.room.create names its predecessor, the state
// that carries over (name, topic, avatar, rules, encryption, ACLs, power levels, bans), local
// aliases and the directory listing moved, the old room's power levels restricted, and each
// local member's tags, m.direct entry and room push rules copied.
#include "config/config.hpp"
#include "service/requester.hpp"
#include "storage/database.hpp"

#include <mutex>
#include <string>
#include <vector>

namespace trestle::service {

struct Rooms;
class UserDataService;

class RoomUpgradeService {
public:
  RoomUpgradeService(const config::Config& cfg, storage::Database& db, Rooms& rooms, UserDataService& user_data)
      : cfg_(cfg), db_(db), rooms_(rooms), user_data_(user_data) {}

  // Returns the replacement room's ID. 400 M_UNSUPPORTED_ROOM_VERSION for an unknown version,
  // 404 M_NOT_FOUND for an unknown room, 403 M_FORBIDDEN when the user may not send
  // m.room.tombstone there (not joined, or too low a power level).
  // additional_creators: the new room's creators besides `r` when new_version has privileged
  // creators (v12); ignored otherwise.
  std::string upgrade(const Requester& r, const std::string& room_id, const std::string& new_version,
                      const std::vector<std::string>& additional_creators = {});

private:
  void copy_user_state(const std::string& user_id, const std::string& old_room, const std::string& new_room);

  const config::Config& cfg_;
  storage::Database& db_;
  Rooms& rooms_;
  UserDataService& user_data_;
  // Upgrades run one at a time: two concurrent upgrades of a room would tombstone it twice.
  std::mutex mu_;
};

}  // namespace trestle::service
