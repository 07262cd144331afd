#include "service/rooms/directory.hpp"

#include "core/error.hpp"
#include "core/json_fields.hpp"
#include "core/identifiers.hpp"
#include "room/auth_rules.hpp"
#include "service/accounts.hpp"
#include "service/appservice/queries.hpp"
#include "service/event_writer.hpp"
#include "service/visibility.hpp"
#include "storage/event_store.hpp"
#include "storage/room_store.hpp"

#include <algorithm>
#include <cctype>

namespace trestle::service {

namespace ev = storage::events;
namespace rooms_db = storage::rooms;
using boost::json::array;
using boost::json::object;
using core::str_or;

namespace {

// The state power-level checks read: the create event (v12 creators) and the power levels.
room::StateMap power_state(storage::Connection& c, const std::string& room_id) {
  room::StateMap m;
  for (const char* type : {"m.room.create", "m.room.power_levels"}) {
    auto id = ev::current_state_event_id(c, room_id, type, "");
    if (!id) continue;
    if (auto e = ev::get_event(c, *id)) m[{type, ""}] = std::move(e->pdu);
  }
  return m;
}
}  // namespace

std::string RoomDirectory::resolve_room_id_or_alias(const std::string& room_id_or_alias) {
  if (!room_id_or_alias.empty() && room_id_or_alias[0] == '#') {
    if (!core::parse_room_alias(room_id_or_alias)) throw MatrixError::invalid_param("Invalid room alias");
    return std::string(resolve_alias(room_id_or_alias).at("room_id").as_string());
  }
  if (!core::is_valid_room_id(room_id_or_alias)) throw MatrixError::invalid_param("Invalid room ID or alias");
  return room_id_or_alias;
}
void RoomDirectory::create_alias(const Requester& r, const std::string& alias, const std::string& room_id) {
  auto a = core::parse_room_alias(alias);
  if (!a) throw MatrixError::invalid_param("Invalid room alias");
  if (a->server_name != cfg_.server_name) throw MatrixError::invalid_param("Room alias must be on this server");
  if (!core::is_valid_room_id(room_id)) throw MatrixError::invalid_param("Invalid room ID");
  db_.write([&](storage::Connection& c) {
    if (!rooms_db::get_room(c, room_id)) throw MatrixError::not_found("Unknown room");
    if (!rooms_db::insert_alias(c, alias, room_id, r.user_id)) {
      throw MatrixError(409, "M_UNKNOWN", "Room alias " + alias + " already exists");
    }
  });
}

object RoomDirectory::resolve_alias(const std::string& alias) {
  if (!core::parse_room_alias(alias)) throw MatrixError::invalid_param("Invalid room alias");
  auto lookup = [&] { return db_.read([&](storage::Connection& c) { return rooms_db::get_alias(c, alias); }); };
  auto a = lookup();
  // An appservice may create the room on demand (GET /_matrix/app/v1/rooms/{alias}).
  if (!a && appservice_queries_ && appservice_queries_->query_alias(alias)) a = lookup();
  if (!a) throw MatrixError::not_found("Room alias " + alias + " not found");
  return object{{"room_id", a->room_id}, {"servers", array{boost::json::value(cfg_.server_name)}}};
}

void RoomDirectory::delete_alias(const Requester& r, const std::string& alias) {
  if (!core::parse_room_alias(alias)) throw MatrixError::invalid_param("Invalid room alias");
  auto room_id = db_.write([&](storage::Connection& c) {
    auto a = rooms_db::get_alias(c, alias);
    if (!a) throw MatrixError::not_found("Room alias " + alias + " not found");
    if (a->creator != r.user_id) {
      // Room moderators (enough power to set canonical_alias) may remove aliases too.
      auto st = power_state(c, a->room_id);
      auto room_row = rooms_db::get_room(c, a->room_id);
      const auto* v = room_row ? room::find_room_version(room_row->room_version) : nullptr;
      if (room::user_power_level(st, r.user_id, v ? *v : room::default_room_version()) <
          room::required_power_level(st, "m.room.canonical_alias", true)) {
        throw MatrixError::forbidden("You may not delete this alias");
      }
    }
    rooms_db::delete_alias(c, alias);
    return a->room_id;
  });
  remove_from_canonical_alias(r, room_id, alias);
}

void RoomDirectory::remove_from_canonical_alias(const Requester& r, const std::string& room_id, const std::string& alias) {
  // Like Synapse: a deleted alias leaves the room's m.room.canonical_alias too, when the deleter
  // may change it (otherwise the event keeps naming an alias that no longer resolves).
  auto current = db_.read([&](storage::Connection& c) -> std::optional<object> {
    auto id = ev::current_state_event_id(c, room_id, "m.room.canonical_alias", "");
    auto e = id ? ev::get_event(c, *id) : std::nullopt;
    if (!e || e->redacted_by) return std::nullopt;
    return e->pdu.at("content").as_object();
  });
  if (!current) return;
  object content = *current;
  bool changed = false;
  if (str_or(content, "alias") == alias) {
    content.erase("alias");
    changed = true;
  }
  if (auto* alt = content.if_contains("alt_aliases"); alt && alt->is_array()) {
    auto& list = alt->as_array();
    auto size = list.size();
    list.erase(std::remove(list.begin(), list.end(), boost::json::value(alias)), list.end());
    changed = changed || list.size() != size;
    if (list.empty()) content.erase("alt_aliases");
  }
  if (!changed) return;
  try {
    writer_.send(NewEvent{room_id, r.user_id, "m.room.canonical_alias", "", content, std::nullopt, std::nullopt,
                        std::nullopt, std::nullopt});
  } catch (const MatrixError&) {
    // The alias creator need not be allowed to change the room's state: the alias is gone anyway.
  }
}

array RoomDirectory::room_aliases(const Requester& r, const std::string& room_id) {
  // Server admins may list any room's aliases, as in Synapse (synadm's `user membership` does).
  const bool admin = !r.appservice && accounts_.is_admin(r.user_id);
  return db_.read([&](storage::Connection& c) {
    if (!admin && !room_read_access(c, r.user_id, room_id, db_.committed_position())) {
      throw MatrixError::forbidden("You are not allowed to view room " + room_id);
    }
    array out;
    for (auto& a : rooms_db::aliases_of_room(c, room_id)) out.push_back(boost::json::value(a));
    return out;
  });
}

object RoomDirectory::public_rooms(int64_t limit, const std::optional<std::string>& since,
                                 const std::optional<std::string>& search, const DirectoryScope& scope) {
  limit = std::clamp<int64_t>(limit, 1, 500);
  // Tokens are "o<offset>": never "0", which some clients (SyTest's Perl) take for "no token".
  int64_t offset = 0;
  if (since) {
    std::string digits = since->starts_with("o") ? since->substr(1) : *since;
    if (digits.empty() || digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) {
      throw MatrixError::invalid_param("Invalid since token");
    }
    offset = std::stoll(digits);
  }
  return db_.read([&](storage::Connection& c) {
    array chunk;
    std::vector<object> all;
    std::vector<std::string> room_ids;
    if (scope.third_party_instance_id) {
      const std::string& instance = *scope.third_party_instance_id;
      auto bar = instance.rfind('|');
      if (bar == std::string::npos) throw MatrixError::invalid_param("Unknown third_party_instance_id");
      room_ids = rooms_db::appservice_listed_rooms(c, instance.substr(0, bar), instance.substr(bar + 1));
    } else {
      room_ids = rooms_db::public_room_ids(c);
      if (scope.include_all_networks) {
        for (auto& id : rooms_db::appservice_listed_rooms(c, std::nullopt, std::nullopt)) {
          if (std::find(room_ids.begin(), room_ids.end(), id) == room_ids.end()) room_ids.push_back(std::move(id));
        }
      }
    }
    for (const auto& room_id : room_ids) {
      object entry{{"room_id", room_id},
                   {"num_joined_members", ev::joined_member_count(c, room_id)},
                   {"world_readable", false},
                   {"guest_can_join", false}};
      auto content_of = [&](const char* type) -> object {
        auto id = ev::current_state_event_id(c, room_id, type, "");
        if (!id) return {};
        auto e = ev::get_event(c, *id);
        if (!e || e->redacted_by) return {};
        return e->pdu.at("content").as_object();
      };
      if (auto n = str_or(content_of("m.room.name"), "name"); !n.empty()) entry["name"] = n;
      if (auto t = str_or(content_of("m.room.topic"), "topic"); !t.empty()) entry["topic"] = t;
      if (auto a = str_or(content_of("m.room.canonical_alias"), "alias"); !a.empty()) entry["canonical_alias"] = a;
      if (auto av = str_or(content_of("m.room.avatar"), "url"); !av.empty()) entry["avatar_url"] = av;
      entry["join_rule"] = str_or(content_of("m.room.join_rules"), "join_rule", "public");
      entry["world_readable"] = str_or(content_of("m.room.history_visibility"), "history_visibility") == "world_readable";
      entry["guest_can_join"] = str_or(content_of("m.room.guest_access"), "guest_access") == "can_join";
      if (auto rt = str_or(content_of("m.room.create"), "type"); !rt.empty()) entry["room_type"] = rt;
      if (search && !search->empty()) {
        std::string hay = str_or(entry, "name") + " " + str_or(entry, "topic") + " " + str_or(entry, "canonical_alias");
        std::string needle = *search;
        std::transform(hay.begin(), hay.end(), hay.begin(), ::tolower);
        std::transform(needle.begin(), needle.end(), needle.begin(), ::tolower);
        if (hay.find(needle) == std::string::npos) continue;
      }
      all.push_back(std::move(entry));
    }
    std::stable_sort(all.begin(), all.end(), [](const object& a, const object& b) {
      return a.at("num_joined_members").as_int64() > b.at("num_joined_members").as_int64();
    });
    for (int64_t i = offset; i < static_cast<int64_t>(all.size()) && i < offset + limit; ++i) chunk.push_back(all[i]);
    object out{{"chunk", std::move(chunk)}, {"total_room_count_estimate", static_cast<int64_t>(all.size())}};
    if (offset + limit < static_cast<int64_t>(all.size())) out["next_batch"] = "o" + std::to_string(offset + limit);
    if (offset > 0) out["prev_batch"] = "o" + std::to_string(std::max<int64_t>(0, offset - limit));
    return out;
  });
}

std::string RoomDirectory::room_visibility(const std::string& room_id) {
  auto room_row = db_.read([&](storage::Connection& c) { return rooms_db::get_room(c, room_id); });
  if (!room_row) throw MatrixError::not_found("Unknown room");
  return room_row->is_public ? "public" : "private";
}

void RoomDirectory::set_room_visibility(const Requester& r, const std::string& room_id, const std::string& visibility) {
  if (visibility != "public" && visibility != "private") throw MatrixError::invalid_param("visibility must be public or private");
  db_.write([&](storage::Connection& c) {
    auto room_row = rooms_db::get_room(c, room_id);
    if (!room_row) throw MatrixError::not_found("Unknown room");
    auto st = power_state(c, room_id);
    const auto* v = room::find_room_version(room_row->room_version);
    if (room::user_power_level(st, r.user_id, v ? *v : room::default_room_version()) <
        room::required_power_level(st, "m.room.canonical_alias", true)) {
      throw MatrixError::forbidden("You may not change this room's directory visibility");
    }
    rooms_db::set_public(c, room_id, visibility == "public");
  });
}

void RoomDirectory::set_appservice_room_visibility(const std::string& appservice_id, const std::string& network_id,
                                                 const std::string& room_id, const std::string& visibility) {
  if (visibility != "public" && visibility != "private") throw MatrixError::invalid_param("visibility must be public or private");
  db_.write([&](storage::Connection& c) {
    if (!rooms_db::get_room(c, room_id)) throw MatrixError::not_found("Unknown room");
    rooms_db::set_appservice_listing(c, appservice_id, network_id, room_id, visibility == "public");
  });
}

}  // namespace trestle::service
