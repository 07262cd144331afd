#pragma once
// MSC2753 peeks: which world_readable rooms a device watches without joining, and the stream
// position at which it started (so its next /sync sends the room in full).
#include "storage/database.hpp"

#include <string>
#include <vector>

namespace trestle::storage::peeks {

struct Peek {
  std::string room_id;
  int64_t stream_id = 0;
};

void put_peek(Connection& c, const std::string& user_id, const std::string& device_id, const std::string& room_id,
              int64_t stream_id);
void delete_peek(Connection& c, const std::string& user_id, const std::string& device_id, const std::string& room_id);
std::vector<Peek> peeks_of(Connection& c, const std::string& user_id, const std::string& device_id);

}  // namespace trestle::storage::peeks
