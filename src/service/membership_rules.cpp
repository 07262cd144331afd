#include "service/membership_rules.hpp"

#include "core/error.hpp"
#include "core/identifiers.hpp"
#include "core/json_depth.hpp"
#include "room/auth_rules.hpp"
#include "service/event_format.hpp"
#include "storage/event_store.hpp"
#include "storage/room_admin_store.hpp"
#include "storage/user_data_store.hpp"

namespace trestle::service::membership_rules {

namespace ev = storage::events;
using boost::json::array;
using boost::json::object;

namespace {

std::optional<object> current_pdu(storage::Connection& c, const std::string& room_id, const std::string& type,
                                  const std::string& state_key) {
  auto id = ev::current_state_event_id(c, room_id, type, state_key);
  auto e = id ? ev::get_event(c, *id) : std::nullopt;
  if (!e) return std::nullopt;
  return std::move(e->pdu);
}

const object* content_of(const object& pdu) {
  auto* content = pdu.if_contains("content");
  return content && content->is_object() ? &content->as_object() : nullptr;
}

}  // namespace

array stripped_room_state(storage::Connection& c, const std::string& room_id) {
  array out;
  for (const char* type : {"m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.topic",
                           "m.room.canonical_alias", "m.room.encryption"}) {
    auto id = ev::current_state_event_id(c, room_id, type, "");
    if (!id) continue;
    if (auto e = ev::get_event(c, *id)) out.push_back(stripped_state_event(*e));
  }
  return out;
}

array knock_state(storage::Connection& c, const ev::StoredEvent& knock) {
  array out;
  const boost::json::value* stored = nullptr;
  if (auto* u = knock.pdu.if_contains("unsigned"); u && u->is_object()) {
    stored = u->as_object().if_contains("knock_room_state");
  }
  if (stored && stored->is_array()) {
    out = stored->as_array();
  } else {
    out = stripped_room_state(c, knock.room_id);
  }
  auto self = stripped_state_event(knock);
  self["event_id"] = knock.event_id;
  self["origin_server_ts"] = knock.origin_server_ts;
  out.push_back(std::move(self));
  return out;
}

std::optional<std::string> restricted_join_authoriser(storage::Connection& c, const room::RoomVersion& version,
                                                      const std::string& room_id, const std::string& user_id,
                                                      const std::string& server_name) {
  auto join_rules = current_pdu(c, room_id, "m.room.join_rules", "");
  const object* rules = join_rules ? content_of(*join_rules) : nullptr;
  if (!rules) return std::nullopt;
  auto* rule_value = rules->if_contains("join_rule");
  std::string rule = rule_value && rule_value->is_string() ? std::string(rule_value->as_string()) : "";
  const bool restricted = (rule == "restricted" && version.restricted_join_allowed) ||
                          (rule == "knock_restricted" && version.knock_restricted_allowed);
  if (!restricted) return std::nullopt;

  // The only condition type so far: being joined to one of the listed rooms (on this server).
  bool allowed = false;
  if (auto* allow = rules->if_contains("allow"); allow && allow->is_array()) {
    for (const auto& entry : allow->as_array()) {
      if (!entry.is_object()) continue;
      const auto& cond = entry.as_object();
      auto* type = cond.if_contains("type");
      auto* other = cond.if_contains("room_id");
      if (!type || !type->is_string() || type->as_string() != "m.room_membership") continue;
      if (!other || !other->is_string()) continue;
      auto m = ev::get_membership(c, std::string(other->as_string()), user_id);
      if (m && m->membership == "join") {
        allowed = true;
        break;
      }
    }
  }
  if (!allowed) {
    throw MatrixError::forbidden(
        "You do not belong to any of the rooms required to join this room; ask for an invite" +
        std::string(rule == "knock_restricted" ? " or knock" : ""));
  }

  // The authorising user: a local joined member with the highest power level, if that reaches
  // the invite level (Synapse's choice). Ties go to the smallest user ID, for determinism.
  room::StateMap state;
  if (auto create = current_pdu(c, room_id, "m.room.create", "")) state[{"m.room.create", ""}] = std::move(*create);
  if (auto pl = current_pdu(c, room_id, "m.room.power_levels", "")) state[{"m.room.power_levels", ""}] = std::move(*pl);
  std::optional<std::string> chosen;
  long long chosen_level = 0;
  for (const auto& m : ev::members_of_room(c, room_id)) {
    if (m.membership != "join") continue;
    auto id = core::parse_user_id(m.user_id);
    if (!id || id->server_name != server_name) continue;
    long long level = room::user_power_level(state, m.user_id, version);
    if (!chosen || level > chosen_level || (level == chosen_level && m.user_id < *chosen)) {
      chosen = m.user_id;
      chosen_level = level;
    }
  }
  if (!chosen || chosen_level < room::named_power_level(state, "invite")) {
    throw MatrixError(400, "M_UNABLE_TO_GRANT_JOIN", "No user in the room could authorise your join");
  }
  return chosen;
}

bool invites_blocked(storage::Connection& c, const std::string& user_id) {
  auto stored = storage::user_data::get_account_data(c, user_id, "", "m.invite_permission_config");
  if (!stored) return false;
  auto v = core::parse_stored_json(*stored);
  if (!v.is_object()) return false;
  auto* action = v.as_object().if_contains("default_action");
  return action && action->is_string() && action->as_string() == "block";
}

void check_room_not_blocked(storage::Connection& c, const std::string& room_id, const std::string& membership) {
  if (membership == "leave" || membership == "ban") return;
  if (storage::room_admin::blocked_by(c, room_id)) {
    throw MatrixError(403, "M_UNKNOWN", "This room has been blocked on this server");
  }
}

}  // namespace trestle::service::membership_rules
