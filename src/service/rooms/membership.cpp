#include "service/rooms/membership.hpp"

#include "core/error.hpp"
#include "core/json_fields.hpp"
#include "core/identifiers.hpp"
#include "room/room_version.hpp"
#include "service/accounts.hpp"
#include "service/appservice/queries.hpp"
#include "service/event_writer.hpp"
#include "service/membership_rules.hpp"
#include "service/rooms/directory.hpp"
#include "service/rooms/history.hpp"
#include "storage/event_store.hpp"
#include "storage/room_store.hpp"

#include <spdlog/spdlog.h>

namespace trestle::service {

namespace ev = storage::events;
namespace rooms_db = storage::rooms;
using boost::json::object;
using core::str_or;

void MembershipService::change_membership(const Requester& r, const std::string& room_id, const std::string& target,
                                    const std::string& membership, const std::optional<std::string>& reason,
                                    bool is_direct, const object& extra) {
  if (!core::parse_user_id(target)) throw MatrixError::invalid_param("Invalid user ID '" + target + "'");
  object content = extra;
  content.erase("third_party_signed");  // a request parameter, not member event content
  content["membership"] = membership;
  if (reason) content["reason"] = *reason;
  if (is_direct) content["is_direct"] = true;
  if (membership == "join" || membership == "invite" || membership == "knock") {
    if (auto u = accounts_.get_user(target)) {
      if (u->displayname && !content.contains("displayname")) content["displayname"] = *u->displayname;
      if (u->avatar_url && !content.contains("avatar_url")) content["avatar_url"] = *u->avatar_url;
    }
  }
  writer_.send(NewEvent{room_id, r.user_id, "m.room.member", target, content, std::nullopt, std::nullopt, std::nullopt,
                      std::nullopt});
}
std::string MembershipService::join(const Requester& r, const std::string& room_id_or_alias,
                              const std::optional<std::string>& reason, const object& extra) {
  const std::string room_id = directory_.resolve_room_id_or_alias(room_id_or_alias);
  // A blocked room refuses joins before anything else, even once it is purged (Synapse).
  db_.read([&](storage::Connection& c) { membership_rules::check_room_not_blocked(c, room_id, "join"); });
  auto known = db_.read([&](storage::Connection& c) { return rooms_db::get_room(c, room_id).has_value(); });
  if (!known) throw MatrixError::not_found("No known servers for room " + room_id);
  auto current = db_.read([&](storage::Connection& c) { return ev::get_membership(c, room_id, r.user_id); });
  if (current && current->membership == "join") return room_id;  // already in: nothing to send
  check_guest_may_join(r, room_id);
  // Only the server names who authorised a restricted join, never the client.
  object content = extra;
  content.erase("join_authorised_via_users_server");
  if (!current || current->membership != "invite") {
    auto authoriser = db_.read([&](storage::Connection& c) -> std::optional<std::string> {
      auto room_row = rooms_db::get_room(c, room_id);
      const room::RoomVersion* version = room_row ? room::find_room_version(room_row->room_version) : nullptr;
      if (!version) return std::nullopt;
      return membership_rules::restricted_join_authoriser(c, *version, room_id, r.user_id, cfg_.server_name);
    });
    if (authoriser) content["join_authorised_via_users_server"] = *authoriser;
  }
  change_membership(r, room_id, r.user_id, "join", reason, false, content);
  return room_id;
}

std::string MembershipService::knock(const Requester& r, const std::string& room_id_or_alias,
                               const std::optional<std::string>& reason) {
  const std::string room_id = directory_.resolve_room_id_or_alias(room_id_or_alias);
  auto room_row = db_.read([&](storage::Connection& c) { return rooms_db::get_room(c, room_id); });
  if (!room_row) throw MatrixError::not_found("No known servers for room " + room_id);
  const room::RoomVersion* version = room::find_room_version(room_row->room_version);
  // Like Synapse: the room is not set up for knocking (spec: 403).
  if (!version || !version->knock_allowed) {
    throw MatrixError::forbidden("Room version " + room_row->room_version + " does not support knocking");
  }
  auto current = db_.read([&](storage::Connection& c) { return ev::get_membership(c, room_id, r.user_id); });
  if (current && current->membership == "ban") throw MatrixError::forbidden("You are banned from this room");
  if (current && current->membership == "join") throw MatrixError::forbidden("You are already in this room");
  if (current && current->membership == "invite") {
    throw MatrixError::forbidden("You are already invited to this room: accept the invite instead");
  }
  if (current && current->membership == "knock") {
    // The same knock again sends nothing (Synapse: a duplicate membership change is a no-op).
    auto same = db_.read([&](storage::Connection& c) {
      auto e = ev::get_event(c, current->event_id);
      auto* content = e ? e->pdu.if_contains("content") : nullptr;
      if (!content || !content->is_object()) return false;
      auto* old_reason = content->as_object().if_contains("reason");
      std::optional<std::string> before;
      if (old_reason && old_reason->is_string()) before = std::string(old_reason->as_string());
      return before == reason;
    });
    if (same) return room_id;
  }
  change_membership(r, room_id, r.user_id, "knock", reason);
  return room_id;
}

void MembershipService::check_invite_permission(const std::string& target) {
  if (db_.read([&](storage::Connection& c) { return membership_rules::invites_blocked(c, target); })) {
    throw MatrixError(403, "M_INVITE_BLOCKED", target + " does not accept invites");
  }
}

void MembershipService::invite(const Requester& r, const std::string& room_id, const std::string& target,
                         const std::optional<std::string>& reason, bool is_direct) {
  auto t = core::parse_user_id(target);
  if (!t) throw MatrixError::invalid_param("Invalid user ID '" + target + "'");
  if (t->server_name == cfg_.server_name && !accounts_.user_exists(target)) {
    bool created = appservice_queries_ && appservice_queries_->query_user(target) && accounts_.user_exists(target);
    if (!created) throw MatrixError::not_found("Unknown user " + target);
  }
  auto current = db_.read([&](storage::Connection& c) { return ev::get_membership(c, room_id, target); });
  if (current && current->membership == "join") throw MatrixError::forbidden(target + " is already in the room");
  if (current && current->membership == "ban") throw MatrixError::forbidden(target + " is banned from the room");
  check_invite_permission(target);
  if (r.shadow_banned) return;  // seems to succeed, reaches no one (Synapse's shadow-ban)
  change_membership(r, room_id, target, "invite", reason, is_direct);
}

void MembershipService::leave(const Requester& r, const std::string& room_id, const std::optional<std::string>& reason) {
  auto current = db_.read([&](storage::Connection& c) { return ev::get_membership(c, room_id, r.user_id); });
  if (!current) throw MatrixError::forbidden("You are not in this room");
  if (current->membership == "leave" || current->membership == "ban") return;  // already out: idempotent
  change_membership(r, room_id, r.user_id, "leave", reason);
}

void MembershipService::kick(const Requester& r, const std::string& room_id, const std::string& target,
                       const std::optional<std::string>& reason) {
  auto current = db_.read([&](storage::Connection& c) { return ev::get_membership(c, room_id, target); });
  if (!current || (current->membership != "join" && current->membership != "invite" && current->membership != "knock")) {
    throw MatrixError::forbidden(target + " is not in the room");
  }
  change_membership(r, room_id, target, "leave", reason);
}

void MembershipService::ban(const Requester& r, const std::string& room_id, const std::string& target,
                      const std::optional<std::string>& reason) {
  change_membership(r, room_id, target, "ban", reason);
}

void MembershipService::unban(const Requester& r, const std::string& room_id, const std::string& target,
                        const std::optional<std::string>& reason) {
  auto current = db_.read([&](storage::Connection& c) { return ev::get_membership(c, room_id, target); });
  if (!current || current->membership != "ban") throw MatrixError::forbidden(target + " is not banned");
  change_membership(r, room_id, target, "leave", reason);
}

void MembershipService::forget(const Requester& r, const std::string& room_id) {
  db_.write([&](storage::Connection& c) {
    auto m = ev::get_membership(c, room_id, r.user_id);
    if (!m) throw MatrixError::not_found("You have never been in this room");
    if (m->membership == "join" || m->membership == "invite" || m->membership == "knock") {
      throw MatrixError(400, "M_UNKNOWN", "You must leave the room before forgetting it");
    }
    ev::set_forgotten(c, room_id, r.user_id);
  });
}

void MembershipService::update_profile_in_rooms(const std::string& user_id) {
  auto user = accounts_.get_user(user_id);
  if (!user) return;
  auto joined = db_.read([&](storage::Connection& c) { return ev::rooms_for_user(c, user_id, "join"); });
  for (const auto& room_id : joined) {
    object content{{"membership", "join"}};
    if (user->displayname) content["displayname"] = *user->displayname;
    if (user->avatar_url) content["avatar_url"] = *user->avatar_url;
    try {
      writer_.send(NewEvent{room_id, user_id, "m.room.member", user_id, content, std::nullopt, std::nullopt,
                          std::nullopt, std::nullopt});
    } catch (const MatrixError&) {
      // A room whose rules refuse the update keeps the old profile; the others still change.
    }
  }
}
void MembershipService::check_guest_may_join(const Requester& r, const std::string& room_id) {
  if (!r.is_guest) return;
  auto guest_access = history_.current_state_content(room_id, "m.room.guest_access", "");
  if (!guest_access || str_or(*guest_access, "guest_access") != "can_join") {
    throw MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is not allowed in this room");
  }
}

void MembershipService::kick_guests(const std::string& room_id) {
  auto members = db_.read([&](storage::Connection& c) { return ev::members_of_room(c, room_id); });
  for (const auto& m : members) {
    if (m.membership != "join") continue;
    auto user = accounts_.get_user(m.user_id);
    if (!user || !user->is_guest) continue;
    // Like Synapse, the guest leaves itself: no power level is needed, whoever changed the rule.
    try {
      writer_.send(NewEvent{room_id, m.user_id, "m.room.member", m.user_id,
                          object{{"membership", "leave"}, {"kind", "guest"}}, std::nullopt, std::nullopt,
                          std::nullopt, std::nullopt});
    } catch (const MatrixError& e) {
      spdlog::warn("could not remove guest {} from {}: {}", m.user_id, room_id, e.what());
    }
  }
}

}  // namespace trestle::service
