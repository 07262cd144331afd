#pragma once
// Queries for spaces (the hierarchy walk, task "spaces") and mutual rooms: one state type of a
// room, and the rooms two users are both joined to.
#include "storage/database.hpp"
#include "storage/event_store.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace trestle::storage::spaces {

// The current state entries of one type in a room (e.g. every m.space.child), at most `limit`,
// by state_key.
std::vector<events::StateEntry> current_state_of_type(Connection& c, const std::string& room_id,
                                                      const std::string& type, int64_t limit);

// Rooms both users are joined to with room_id > `after` (all when empty), by room_id, at most
// `limit`.
std::vector<std::string> mutual_joined_rooms(Connection& c, const std::string& a, const std::string& b,
                                             const std::string& after, int64_t limit);
// How many rooms both users are joined to.
int64_t mutual_joined_count(Connection& c, const std::string& a, const std::string& b);

}  // namespace trestle::storage::spaces
