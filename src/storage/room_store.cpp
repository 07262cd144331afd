#include "storage/room_store.hpp"

namespace trestle::storage::rooms {

void insert_room(Connection& c, const Room& r, int64_t now_ms) {
  c.prepare("INSERT INTO rooms (room_id, room_version, creator, is_public, created_ts) VALUES (?, ?, ?, ?, ?)")
      .bind(r.room_id, r.room_version, r.creator, r.is_public, now_ms)
      .run();
}

std::optional<Room> get_room(Connection& c, const std::string& room_id) {
  auto st = c.prepare("SELECT room_version, creator, is_public FROM rooms WHERE room_id = ?");
  st.bind(room_id);
  if (!st.step()) return std::nullopt;
  return Room{room_id, st.text(0), st.text(1), st.int64(2) != 0};
}

void set_public(Connection& c, const std::string& room_id, bool is_public) {
  c.prepare("UPDATE rooms SET is_public = ? WHERE room_id = ?").bind(is_public, room_id).run();
}

std::vector<std::string> public_room_ids(Connection& c) {
  auto st = c.prepare("SELECT room_id FROM rooms WHERE is_public = 1 ORDER BY created_ts");
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

void set_appservice_listing(Connection& c, const std::string& appservice_id, const std::string& network_id,
                            const std::string& room_id, bool listed) {
  if (listed) {
    c.prepare("INSERT INTO appservice_room_list (appservice_id, network_id, room_id) VALUES (?, ?, ?) "
              "ON CONFLICT DO NOTHING")
        .bind(appservice_id, network_id, room_id)
        .run();
  } else {
    c.prepare("DELETE FROM appservice_room_list WHERE appservice_id = ? AND network_id = ? AND room_id = ?")
        .bind(appservice_id, network_id, room_id)
        .run();
  }
}

std::vector<std::string> appservice_listed_rooms(Connection& c, const std::optional<std::string>& appservice_id,
                                                 const std::optional<std::string>& network_id) {
  auto st = c.prepare("SELECT DISTINCT room_id FROM appservice_room_list WHERE (? IS NULL OR appservice_id = ?) "
                      "AND (? IS NULL OR network_id = ?) ORDER BY room_id");
  st.bind(appservice_id, appservice_id, network_id, network_id);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

bool insert_alias(Connection& c, const std::string& alias, const std::string& room_id, const std::string& creator) {
  c.prepare("INSERT INTO room_aliases (alias, room_id, creator) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
      .bind(alias, room_id, creator)
      .run();
  return c.changes() > 0;
}

std::optional<Alias> get_alias(Connection& c, const std::string& alias) {
  auto st = c.prepare("SELECT room_id, creator FROM room_aliases WHERE alias = ?");
  st.bind(alias);
  if (!st.step()) return std::nullopt;
  return Alias{st.text(0), st.text(1)};
}

void delete_alias(Connection& c, const std::string& alias) {
  c.prepare("DELETE FROM room_aliases WHERE alias = ?").bind(alias).run();
}

std::vector<std::string> aliases_of_room(Connection& c, const std::string& room_id) {
  auto st = c.prepare("SELECT alias FROM room_aliases WHERE room_id = ? ORDER BY alias");
  st.bind(room_id);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

void move_aliases(Connection& c, const std::string& from_room, const std::string& to_room) {
  c.prepare("UPDATE room_aliases SET room_id = ? WHERE room_id = ?").bind(to_room, from_room).run();
}

}  // namespace trestle::storage::rooms
