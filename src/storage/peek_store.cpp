#include "storage/peek_store.hpp"

namespace trestle::storage::peeks {

void put_peek(Connection& c, const std::string& user_id, const std::string& device_id, const std::string& room_id,
              int64_t stream_id) {
  c.prepare("INSERT INTO room_peeks (user_id, device_id, room_id, stream_id) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (user_id, device_id, room_id) DO UPDATE SET stream_id = excluded.stream_id")
      .bind(user_id, device_id, room_id, stream_id)
      .run();
}

void delete_peek(Connection& c, const std::string& user_id, const std::string& device_id, const std::string& room_id) {
  c.prepare("DELETE FROM room_peeks WHERE user_id = ? AND device_id = ? AND room_id = ?")
      .bind(user_id, device_id, room_id)
      .run();
}

std::vector<Peek> peeks_of(Connection& c, const std::string& user_id, const std::string& device_id) {
  auto st = c.prepare("SELECT room_id, stream_id FROM room_peeks WHERE user_id = ? AND device_id = ? ORDER BY room_id");
  st.bind(user_id, device_id);
  std::vector<Peek> out;
  while (st.step()) out.push_back({st.text(0), st.int64(1)});
  return out;
}

}  // namespace trestle::storage::peeks
