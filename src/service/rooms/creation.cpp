#include "service/rooms/creation.hpp"

#include "core/clock.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/json_fields.hpp"
#include "core/identifiers.hpp"
#include "room/room_version.hpp"
#include "service/accounts.hpp"
#include "service/appservice/queries.hpp"
#include "service/event_writer.hpp"
#include "service/rooms/membership.hpp"
#include "storage/room_store.hpp"

#include <algorithm>
#include <cctype>

namespace trestle::service {

namespace ev = storage::events;
namespace rooms_db = storage::rooms;
using boost::json::array;
using boost::json::object;
using core::str_or;

std::string RoomCreation::new_room_id() const {
  // Several event writers: a room this process writes (its events are then all written here),
  // drawn again until one is; n writers take n tries on average.
  if (!cfg_.is_event_writer()) not_an_event_writer();
  for (;;) {
    std::string id = "!" + core::random_string(18) + ":" + cfg_.server_name;
    if (writer_.writes_room(id)) return id;
  }
}

void RoomCreation::not_an_event_writer() const {
  throw MatrixError::unknown("Creating a room should have gone to an event writer (stream_writers.events), not to '" +
                             cfg_.instance_name + "'");
}

std::string RoomCreation::create_room(const Requester& r, const object& body,
                                     const std::optional<std::string>& preset_room_id) {
  if (!cfg_.is_event_writer()) not_an_event_writer();  // the reverse proxy routes createRoom to writers
  accounts_.require_not_suspended(r.user_id);  // account suspension: no new rooms
  // Validate everything before writing anything.
  std::string version_id = str_or(body, "room_version", room::default_room_version().id);
  if (auto* v = body.if_contains("room_version"); v && !v->is_string()) {
    throw MatrixError::bad_json("room_version must be a string");
  }
  const room::RoomVersion* version = room::find_room_version(version_id);
  if (!version || (version_id != "10" && version_id != "11" && std::stoi(version_id) < 1)) {
    throw MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", "Room version '" + version_id + "' is not supported");
  }
  std::string visibility = str_or(body, "visibility", "private");
  if (visibility != "public" && visibility != "private") throw MatrixError::invalid_param("visibility must be public or private");
  std::string preset = str_or(body, "preset", visibility == "public" ? "public_chat" : "private_chat");
  if (preset != "public_chat" && preset != "private_chat" && preset != "trusted_private_chat") {
    throw MatrixError::invalid_param("Unknown preset '" + preset + "'");
  }
  std::optional<std::string> alias;
  if (auto* an = body.if_contains("room_alias_name")) {
    if (!an->is_string()) throw MatrixError::bad_json("room_alias_name must be a string");
    std::string name(an->as_string());
    if (name.empty() || name.find(':') != std::string::npos ||
        std::any_of(name.begin(), name.end(), [](unsigned char ch) { return std::isspace(ch); })) {
      throw MatrixError(400, "M_INVALID_PARAM", "Invalid room_alias_name");
    }
    alias = "#" + name + ":" + cfg_.server_name;
    if (!core::parse_room_alias(*alias)) throw MatrixError(400, "M_INVALID_PARAM", "Invalid room_alias_name");
    if (db_.read([&](storage::Connection& c) { return rooms_db::get_alias(c, *alias).has_value(); })) {
      throw MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken");
    }
  }
  std::vector<std::string> invitees;
  if (auto* inv = body.if_contains("invite")) {
    if (!inv->is_array()) throw MatrixError::bad_json("invite must be a list of user IDs");
    for (const auto& u : inv->as_array()) {
      auto id = u.is_string() ? core::parse_user_id(u.as_string()) : std::nullopt;
      if (!id) throw MatrixError::invalid_param("Invalid user ID in invite");
      std::string user_id(u.as_string());
      // Unknown local invitees in an appservice's namespace are asked about, like /invite does.
      if (id->server_name == cfg_.server_name && !accounts_.user_exists(user_id) && appservice_queries_) {
        try {
          appservice_queries_->query_user(user_id);
        } catch (const MatrixError&) {
          // Creating the room does not depend on the bridge answering; the invite still goes out.
        }
      }
      membership_.check_invite_permission(user_id);  // 403 M_INVITE_BLOCKED before anything is created
      if (!r.shadow_banned) invitees.push_back(user_id);  // a shadow-banned creator's invites go nowhere
    }
  }
  object creation_content;
  if (auto* cc = body.if_contains("creation_content")) {
    if (!cc->is_object()) throw MatrixError::bad_json("creation_content must be an object");
    creation_content = cc->as_object();
  }
  auto* initial_state = body.if_contains("initial_state");
  if (initial_state && !initial_state->is_array()) throw MatrixError::bad_json("initial_state must be a list");
  auto* pl_override = body.if_contains("power_level_content_override");
  if (pl_override && !pl_override->is_object()) throw MatrixError::bad_json("power_level_content_override must be an object");
  for (const char* key : {"name", "topic"}) {
    if (auto* v = body.if_contains(key); v && !v->is_string()) throw MatrixError::bad_json(std::string(key) + " must be a string");
  }
  bool is_direct = false;
  if (auto* d = body.if_contains("is_direct"); d && d->is_bool()) is_direct = d->as_bool();
  // v12 (MSC4289): the creators are the sender and creation_content.additional_creators; for
  // trusted_private_chat the invitees join them (create_room.yaml), without duplicates.
  std::vector<std::string> additional_creators;
  if (version->privileged_creators) {
    if (auto* ac = creation_content.if_contains("additional_creators")) {
      if (!ac->is_array()) throw MatrixError::bad_json("creation_content.additional_creators must be a list of user IDs");
      for (const auto& u : ac->as_array()) {
        if (!u.is_string()) throw MatrixError::bad_json("creation_content.additional_creators must be a list of user IDs");
        if (!core::parse_user_id(u.as_string())) {
          throw MatrixError::invalid_param("Invalid user ID in creation_content.additional_creators");
        }
        additional_creators.emplace_back(u.as_string());
      }
    }
    if (preset == "trusted_private_chat") additional_creators.insert(additional_creators.end(), invitees.begin(), invitees.end());
    std::vector<std::string> unique;
    for (auto& u : additional_creators) {
      if (u != r.user_id && std::find(unique.begin(), unique.end(), u) == unique.end()) unique.push_back(u);
    }
    additional_creators = std::move(unique);
    if (!additional_creators.empty() || creation_content.contains("additional_creators")) {
      array list;
      for (const auto& u : additional_creators) list.emplace_back(u);
      creation_content["additional_creators"] = std::move(list);
    }
  }

  // v12 rooms are named after their create event, known only once it is built (see below).
  std::string room_id = version->room_id_is_create_event_id ? std::string()
                        : preset_room_id                     ? *preset_room_id
                                                             : new_room_id();
  auto user = accounts_.get_user(r.user_id);
  std::vector<NewEvent> events;
  auto add = [&](const std::string& type, const std::string& state_key, object content) {
    events.push_back(NewEvent{room_id, r.user_id, type, state_key, std::move(content), std::nullopt, std::nullopt,
                              std::nullopt, std::nullopt});
  };

  creation_content["room_version"] = version->id;
  if (!version->v11_redaction_and_create) creation_content["creator"] = r.user_id;
  add("m.room.create", "", creation_content);

  object join{{"membership", "join"}};
  if (user && user->displayname) join["displayname"] = *user->displayname;
  if (user && user->avatar_url) join["avatar_url"] = *user->avatar_url;
  add("m.room.member", r.user_id, join);

  // In v12 the creators have infinite power and may not be listed (auth rule 10.4).
  object users;
  if (!version->privileged_creators) {
    users[r.user_id] = 100;
    if (preset == "trusted_private_chat") {
      for (const auto& u : invitees) users[u] = 100;
    }
  }
  object pl{{"users", users},
            {"users_default", 0},
            {"events",
             object{{"m.room.name", 50},
                    {"m.room.power_levels", 100},
                    {"m.room.history_visibility", 100},
                    {"m.room.canonical_alias", 50},
                    {"m.room.avatar", 50},
                    // v12: upgrading is above state_default's reach (create_room.yaml).
                    {"m.room.tombstone", version->privileged_creators ? 150 : 100},
                    {"m.room.server_acl", 100},
                    {"m.room.encryption", 100}}},
            {"events_default", 0},
            {"state_default", 50},
            {"ban", 50},
            {"kick", 50},
            {"redact", 50},
            {"invite", preset == "public_chat" ? 50 : 0},
            {"historical", 100},
            {"notifications", object{{"room", 50}}}};
  if (pl_override) {
    for (const auto& [k, v] : pl_override->as_object()) pl[k] = v;
  }
  add("m.room.power_levels", "", pl);
  if (alias) add("m.room.canonical_alias", "", object{{"alias", *alias}});
  add("m.room.join_rules", "", object{{"join_rule", preset == "public_chat" ? "public" : "invite"}});
  add("m.room.history_visibility", "", object{{"history_visibility", "shared"}});
  add("m.room.guest_access", "", object{{"guest_access", preset == "public_chat" ? "forbidden" : "can_join"}});
  if (initial_state) {
    for (const auto& s : initial_state->as_array()) {
      if (!s.is_object()) throw MatrixError::bad_json("initial_state entries must be objects");
      const auto& so = s.as_object();
      auto* type = so.if_contains("type");
      auto* content = so.if_contains("content");
      if (!type || !type->is_string() || !content || !content->is_object()) {
        throw MatrixError::bad_json("initial_state entries need a string type and an object content");
      }
      std::string state_key = str_or(so, "state_key", "");
      // Replace an earlier preset event of the same key rather than sending both.
      std::string t(type->as_string());
      events.erase(std::remove_if(events.begin() + 2, events.end(),
                                  [&](const NewEvent& e) { return e.type == t && e.state_key == state_key; }),
                   events.end());
      add(t, state_key, content->as_object());
    }
  }
  if (auto* n = body.if_contains("name")) add("m.room.name", "", object{{"name", n->as_string()}});
  if (auto* t = body.if_contains("topic")) add("m.room.topic", "", object{{"topic", t->as_string()}});
  for (const auto& u : invitees) {
    object inv{{"membership", "invite"}};
    if (is_direct) inv["is_direct"] = true;
    if (auto invitee = accounts_.get_user(u); invitee && invitee->displayname) inv["displayname"] = *invitee->displayname;
    add("m.room.member", u, inv);
  }

  // v12: the create event names the room, so whether this process writes it is known once the
  // event is built; another writer's room is refused before it takes a stream position (the
  // write rolls back) and the create event is built again a millisecond later, with another ID.
  const bool id_from_create = version->room_id_is_create_event_id;
  if (id_from_create && cfg_.shared_stream()) events.front().origin_server_ts = core::now_ms();
  for (int attempt = 0;; ++attempt) {
    try {
      write_room(events, alias, visibility, r.user_id, pl_override != nullptr, pl, room_id);
      return room_id;
    } catch (const NotRoomWriter&) {
      if (!id_from_create || attempt >= 64) throw;
      for (size_t i = 1; i < events.size(); ++i) events[i].room_id.clear();
      *events.front().origin_server_ts += 1;
    }
  }
}

void RoomCreation::write_room(std::vector<NewEvent>& events, const std::optional<std::string>& alias,
                              const std::string& visibility, const std::string& creator, bool pl_override,
                              const object& pl, std::string& room_id) {
  writer_.write([&](EventWriter::Batch& batch) {
    storage::Connection& c = batch.connection();
    std::vector<ev::StoredEvent> out;
    for (auto& e : events) {
      if (!out.empty()) e.room_id = out.front().room_id;  // v12: the create event named the room
      try {
        out.push_back(batch.append(e));
      } catch (const MatrixError& err) {
        if (err.status() != 403) throw;
        // The request implies state the auth rules refuse: 400, not 403 (create_room.yaml). The
        // room's first power levels can only fail as malformed: from the override, bad JSON.
        bool from_override = pl_override && e.type == "m.room.power_levels" && e.content == pl;
        if (from_override) throw MatrixError::bad_json(std::string("Invalid power_level_content_override: ") + err.what());
        throw MatrixError(400, "M_INVALID_ROOM_STATE", "Invalid initial state (" + e.type + "): " + err.what());
      }
    }
    room_id = out.front().room_id;
    if (alias && !rooms_db::insert_alias(c, *alias, room_id, creator)) {
      throw MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken");
    }
    if (visibility == "public") rooms_db::set_public(c, room_id, true);
  });
}

}  // namespace trestle::service
