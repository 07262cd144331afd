#pragma once
// Room v12 (MSC4289): the room's creators, whose power level is infinite whatever
// m.room.power_levels says. For the services that read power levels outside the auth rules
// (push rule conditions such as sender_notification_permission).
#include "storage/database.hpp"

#include <string>
#include <vector>

namespace trestle::service {

// The create event's sender and content.additional_creators, when the room's version gives
// creators infinite power; empty for other rooms.
std::vector<std::string> privileged_creators(storage::Connection& c, const std::string& room_id);

}  // namespace trestle::service
