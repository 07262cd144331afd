#include "storage/space_store.hpp"

namespace trestle::storage::spaces {

std::vector<events::StateEntry> current_state_of_type(Connection& c, const std::string& room_id,
                                                      const std::string& type, int64_t limit) {
  auto st = c.prepare(
      "SELECT type, state_key, event_id FROM current_state WHERE room_id = ? AND type = ? ORDER BY state_key LIMIT ?");
  st.bind(room_id, type, limit);
  std::vector<events::StateEntry> out;
  while (st.step()) out.push_back(events::StateEntry{st.text(0), st.text(1), st.text(2)});
  return out;
}

std::vector<std::string> mutual_joined_rooms(Connection& c, const std::string& a, const std::string& b,
                                             const std::string& after, int64_t limit) {
  auto st = c.prepare(
      "SELECT m1.room_id FROM room_memberships m1 JOIN room_memberships m2 ON m2.room_id = m1.room_id "
      "WHERE m1.user_id = ? AND m1.membership = 'join' AND m2.user_id = ? AND m2.membership = 'join' "
      "AND m1.room_id > ? ORDER BY m1.room_id LIMIT ?");
  st.bind(a, b, after, limit);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

int64_t mutual_joined_count(Connection& c, const std::string& a, const std::string& b) {
  auto st = c.prepare(
      "SELECT COUNT(*) FROM room_memberships m1 JOIN room_memberships m2 ON m2.room_id = m1.room_id "
      "WHERE m1.user_id = ? AND m1.membership = 'join' AND m2.user_id = ? AND m2.membership = 'join'");
  st.bind(a, b);
  return st.step() ? st.int64(0) : 0;
}

}  // namespace trestle::storage::spaces
