#include "service/third_party_invites.hpp"

#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/identifiers.hpp"
#include "room/event_crypto.hpp"

#include <spdlog/spdlog.h>

namespace trestle::service {

using boost::json::array;
using boost::json::object;

namespace {

std::string string_at(const object& o, const char* key) {
  const auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

std::string content_string(const std::optional<object>& pdu, const char* key) {
  if (!pdu) return "";
  const auto* c = pdu->if_contains("content");
  return c && c->is_object() ? string_at(c->as_object(), key) : "";
}

struct InviteKey {
  std::string public_key;
  std::string key_validity_url;
};

// The key of the invite event that a signature in `signed_block` verifies with, if any.
std::optional<InviteKey> signing_key_of(const object& signed_block, const object& invite_content) {
  std::vector<InviteKey> keys;
  if (auto k = string_at(invite_content, "public_key"); !k.empty()) {
    keys.push_back({k, string_at(invite_content, "key_validity_url")});
  }
  if (const auto* list = invite_content.if_contains("public_keys"); list && list->is_array()) {
    for (const auto& entry : list->as_array()) {
      if (!entry.is_object()) continue;
      if (auto k = string_at(entry.as_object(), "public_key"); !k.empty()) {
        keys.push_back({k, string_at(entry.as_object(), "key_validity_url")});
      }
    }
  }
  const auto* sigs = signed_block.if_contains("signatures");
  if (!sigs || !sigs->is_object()) return std::nullopt;
  for (const auto& key : keys) {
    auto raw = core::base64_decode(key.public_key);
    if (!raw || raw->size() != 32) continue;
    for (const auto& [server, by_key] : sigs->as_object()) {
      if (!by_key.is_object()) continue;
      for (const auto& kv : by_key.as_object()) {
        if (room::verify_json_signature(signed_block, std::string(server), std::string(kv.key()), *raw)) return key;
      }
    }
  }
  return std::nullopt;
}

// A power level value (integers; old rooms may hold them as strings).
int64_t level_value(const boost::json::value* v, int64_t fallback) {
  if (!v) return fallback;
  if (v->is_int64()) return v->as_int64();
  if (v->is_string()) {
    try {
      return std::stoll(std::string(v->as_string()));
    } catch (...) {
    }
  }
  return fallback;
}

}  // namespace

bool ThirdPartyInviteService::may_invite(const std::string& room_id, const std::string& user_id) {
  auto pl = rooms_.history.current_state_pdu(room_id, "m.room.power_levels", "");
  const auto* content = pl ? pl->if_contains("content") : nullptr;
  if (!content || !content->is_object()) return true;  // no power levels: the auth rules decide
  const auto& c = content->as_object();
  int64_t user_level = level_value(c.if_contains("users_default"), 0);
  if (const auto* users = c.if_contains("users"); users && users->is_object()) {
    user_level = level_value(users->as_object().if_contains(user_id), user_level);
  }
  return user_level >= level_value(c.if_contains("invite"), 0);
}

void ThirdPartyInviteService::invite(const Requester& r, const std::string& room_id, const std::string& id_server,
                                     const std::string& id_access_token, const std::string& medium,
                                     const std::string& address_in) {
  if (medium != "email" && medium != "msisdn") throw MatrixError::invalid_param("Unsupported medium '" + medium + "'");
  std::string address = medium == "email" ? ThreepidService::canonical_email(address_in) : address_in;
  if (address.empty()) throw MatrixError::invalid_param("Empty address");
  ThreepidService::check_id_server(id_server);
  rooms_.history.require_joined(r, room_id);
  // Refused before the identity server stores (and mails) an invite the room would refuse.
  if (!may_invite(room_id, r.user_id)) throw MatrixError::forbidden("You do not have permission to invite");
  if (auto mxid = threepids_.lookup(id_server, id_access_token, medium, address)) {
    rooms_.membership.invite(r, room_id, *mxid, std::nullopt);
    return;
  }
  // Not bound yet: the identity server keeps the invite and mails the address.
  auto name = rooms_.history.current_state_pdu(room_id, "m.room.name", "");
  auto alias = rooms_.history.current_state_pdu(room_id, "m.room.canonical_alias", "");
  auto avatar = rooms_.history.current_state_pdu(room_id, "m.room.avatar", "");
  auto join_rules = rooms_.history.current_state_pdu(room_id, "m.room.join_rules", "");
  auto create = rooms_.history.current_state_pdu(room_id, "m.room.create", "");
  object request{{"medium", medium},
                 {"address", address},
                 {"room_id", room_id},
                 {"sender", r.user_id},
                 {"room_alias", content_string(alias, "alias")},
                 {"room_avatar_url", content_string(avatar, "url")},
                 {"room_join_rules", content_string(join_rules, "join_rule")},
                 {"room_name", content_string(name, "name")},
                 {"room_type", content_string(create, "type")}};
  if (auto inviter = accounts_.get_user(r.user_id)) {
    request["sender_display_name"] = inviter->displayname.value_or("");
    request["sender_avatar_url"] = inviter->avatar_url.value_or("");
  }
  auto stored = threepids_.store_invite(id_server, id_access_token, request);
  std::string token = string_at(stored, "token");
  std::string display_name = string_at(stored, "display_name");
  array public_keys;
  if (const auto* keys = stored.if_contains("public_keys"); keys && keys->is_array()) {
    for (const auto& k : keys->as_array()) {
      if (k.is_object() && !string_at(k.as_object(), "public_key").empty()) public_keys.push_back(k);
    }
  }
  std::string fallback_key = string_at(stored, "public_key");
  std::string fallback_url = cfg_.identity_server_scheme + "://" + id_server + "/_matrix/identity/v2/pubkey/isvalid";
  if (fallback_key.empty() && !public_keys.empty()) {
    fallback_key = string_at(public_keys.front().as_object(), "public_key");
    if (auto u = string_at(public_keys.front().as_object(), "key_validity_url"); !u.empty()) fallback_url = u;
  }
  if (fallback_key.empty()) throw MatrixError(502, "M_UNKNOWN", "The identity server gave no public key for the invite");
  if (public_keys.empty()) public_keys.push_back(object{{"public_key", fallback_key}, {"key_validity_url", fallback_url}});
  object content{{"display_name", display_name},
                 {"public_keys", public_keys},
                 {"public_key", fallback_key},
                 {"key_validity_url", fallback_url}};
  rooms_.sending.set_state(r, room_id, "m.room.third_party_invite", token, content, std::nullopt);
}

void ThirdPartyInviteService::check_invite_3pid(const boost::json::value* list) {
  if (!list) return;
  if (!list->is_array()) throw MatrixError::bad_json("invite_3pid must be a list");
  for (const auto& entry : list->as_array()) {
    if (!entry.is_object()) throw MatrixError::bad_json("invite_3pid entries must be objects");
    for (const char* key : {"id_server", "id_access_token", "medium", "address"}) {
      const auto* v = entry.as_object().if_contains(key);
      if (!v) throw MatrixError::missing_param(std::string("invite_3pid entry lacks '") + key + "'");
      if (!v->is_string()) throw MatrixError::bad_json(std::string("invite_3pid '") + key + "' must be a string");
    }
  }
}

void ThirdPartyInviteService::invite_from_create(const Requester& r, const std::string& room_id,
                                                 const boost::json::value& entry) {
  const auto& o = entry.as_object();
  invite(r, room_id, string_at(o, "id_server"), string_at(o, "id_access_token"), string_at(o, "medium"),
         string_at(o, "address"));
}

int ThirdPartyInviteService::on_bind(const object& body) {
  const auto* invites = body.if_contains("invites");
  if (!invites) return 0;
  if (!invites->is_array()) throw MatrixError::bad_json("invites must be a list");
  int sent = 0;
  std::optional<MatrixError> failure;  // like Synapse: every invite is tried, the last failure answers
  for (const auto& v : invites->as_array()) {
    try {
      if (exchange(v)) ++sent;
    } catch (const MatrixError& e) {
      spdlog::warn("3pid onbind: invite refused: {}", e.what());
      failure = e;
    }
  }
  if (failure) throw *failure;
  return sent;
}

bool ThirdPartyInviteService::exchange(const boost::json::value& v) {
  if (!v.is_object()) throw MatrixError::bad_json("invites entries must be objects");
  const auto& inv = v.as_object();
  std::string room_id = string_at(inv, "room_id");
  std::string sender = string_at(inv, "sender");
  const auto* signed_v = inv.if_contains("signed");
  if (!signed_v || !signed_v->is_object()) throw MatrixError::bad_json("invite lacks 'signed'");
  if (!core::is_valid_room_id(room_id)) throw MatrixError::invalid_param("invite has no valid room_id");
  const auto& signed_block = signed_v->as_object();
  std::string mxid = string_at(signed_block, "mxid");
  std::string token = string_at(signed_block, "token");
  auto target = core::parse_user_id(mxid);
  auto from = core::parse_user_id(sender);
  if (!target || !from || token.empty()) throw MatrixError::invalid_param("invite lacks mxid, token or sender");
  // Only rooms and users of this server: there is no federation to pass remote ones on.
  if (target->server_name != cfg_.server_name || from->server_name != cfg_.server_name) {
    throw MatrixError(400, "M_UNKNOWN", "Third-party invites for other servers are not supported");
  }
  auto invite_event = rooms_.history.current_state_pdu(room_id, "m.room.third_party_invite", token);
  const auto* invite_content = invite_event ? invite_event->if_contains("content") : nullptr;
  if (!invite_content || !invite_content->is_object()) throw MatrixError::not_found("No such third-party invite");
  // Already in (or invited by this very token): nothing to do, and no demotion of a member.
  if (auto member = rooms_.history.current_state_pdu(room_id, "m.room.member", mxid)) {
    const auto* c = member->if_contains("content");
    std::string membership = c && c->is_object() ? string_at(c->as_object(), "membership") : "";
    if (membership == "join" || membership == "ban") return false;
  }
  auto key = signing_key_of(signed_block, invite_content->as_object());
  if (!key) throw MatrixError::forbidden("The invite's signature does not match the room's third-party invite keys");
  if (!threepids_.public_key_valid(key->key_validity_url, key->public_key)) {
    throw MatrixError::forbidden("The identity server does not vouch for the invite's key");
  }
  object third_party{{"display_name", string_at(invite_content->as_object(), "display_name")}, {"signed", signed_block}};
  object content{{"membership", "invite"}, {"third_party_invite", third_party}};
  if (auto u = accounts_.get_user(mxid)) {
    if (u->displayname) content["displayname"] = *u->displayname;
    if (u->avatar_url) content["avatar_url"] = *u->avatar_url;
  }
  rooms_.writer.send(NewEvent{room_id, sender, "m.room.member", mxid, content, std::nullopt, std::nullopt, std::nullopt,
                             std::nullopt});
  return true;
}

}  // namespace trestle::service
