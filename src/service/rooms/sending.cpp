#include "service/rooms/sending.hpp"

#include "core/canonical_json.hpp"
#include "core/error.hpp"
#include "core/json_fields.hpp"
#include "core/identifiers.hpp"
#include "room/room_version.hpp"
#include "service/event_writer.hpp"
#include "service/rooms/membership.hpp"
#include "storage/event_store.hpp"
#include "storage/room_store.hpp"

namespace trestle::service {

namespace ev = storage::events;
namespace rooms_db = storage::rooms;
using boost::json::object;
using core::str_or;

namespace {
// What a shadow-banned user is told its event got (Synapse's ShadowBanError): an ID like a real
// one, for an event that was never sent.
std::string shadow_banned_event_id() { return "$" + core::random_string(43); }

}  // namespace

namespace {

// PUT /send's event and client transaction. Idempotency: a retried PUT returns the first event
// instead of sending twice.
std::pair<NewEvent, ClientTxn> message_of(const Requester& r, const std::string& room_id, const std::string& type,
                                          const std::string& txn_id, const object& content, std::optional<int64_t> ts) {
  NewEvent e{room_id, r.user_id, type, std::nullopt, content, std::nullopt, ts, txn_id, r.device_id};
  if (type == "m.room.redaction") {
    auto* redacts = content.if_contains("redacts");
    if (redacts && redacts->is_string()) e.redacts = std::string(redacts->as_string());
  }
  return {std::move(e), ClientTxn{r.user_id, r.device_id.value_or(""), txn_key({"send", room_id, type, txn_id})}};
}

}  // namespace

std::string RoomSending::send_message(const Requester& r, const std::string& room_id, const std::string& type,
                                      const std::string& txn_id, const object& content, std::optional<int64_t> ts) {
  if (r.shadow_banned) return shadow_banned_event_id();
  auto [e, txn] = message_of(r, room_id, type, txn_id, content, ts);
  return writer_.send_once(e, txn).event.event_id;
}

void RoomSending::send_message_async(const Requester& r, const std::string& room_id, const std::string& type,
                                     const std::string& txn_id, const object& content, std::optional<int64_t> ts,
                                     std::function<void(std::string, std::exception_ptr)> done) {
  if (r.shadow_banned) return done(shadow_banned_event_id(), nullptr);
  auto [e, txn] = message_of(r, room_id, type, txn_id, content, ts);
  writer_.send_once_async(std::move(e), std::move(txn), [done = std::move(done)](EventWriter::Sent sent, std::exception_ptr error) {
    done(error ? std::string() : std::move(sent.event.event_id), error);
  });
}

std::string RoomSending::set_state(const Requester& r, const std::string& room_id, const std::string& type,
                                   const std::string& state_key, const object& content, std::optional<int64_t> ts) {
  if (type == "m.room.member") {
    // Membership goes through the same path as /join, /invite...: but clients may also PUT it.
    std::string m = str_or(content, "membership");
    if (m.empty()) throw MatrixError::bad_json("m.room.member content needs 'membership'");
    if (r.is_guest) {
      // Guests only join (where guest_access allows) and leave, themselves.
      if (state_key != r.user_id || (m != "join" && m != "leave")) {
        throw MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests may only join and leave rooms");
      }
      if (m == "join") membership_.check_guest_may_join(r, room_id);
    }
    if (m == "invite") membership_.check_invite_permission(state_key);
    if (m == "invite" && r.shadow_banned) return shadow_banned_event_id();
  } else if (r.shadow_banned) {
    return shadow_banned_event_id();
  }
  if (type == "m.room.canonical_alias") {
    // The alias must point at this room (spec: 400 M_BAD_ALIAS).
    std::vector<std::string> aliases;
    if (auto a = str_or(content, "alias"); !a.empty()) aliases.push_back(a);
    if (auto* alt = content.if_contains("alt_aliases"); alt && alt->is_array()) {
      for (auto& v : alt->as_array()) {
        if (v.is_string()) aliases.emplace_back(v.as_string());
      }
    }
    for (const auto& a : aliases) {
      if (!core::parse_room_alias(a)) throw MatrixError::invalid_param("Invalid alias " + a);
      auto target = db_.read([&](storage::Connection& c) { return rooms_db::get_alias(c, a); });
      if (!target || target->room_id != room_id) throw MatrixError(400, "M_BAD_ALIAS", "Alias " + a + " does not point to this room");
    }
  }
  // Setting the state it already has (same sender, same content) sends nothing and answers with
  // the current event, as Synapse does (SyTest "Setting state twice is idempotent").
  auto current = db_.read([&](storage::Connection& c) -> std::optional<std::string> {
    auto id = ev::current_state_event_id(c, room_id, type, state_key);
    auto prev = id ? ev::get_event(c, *id) : std::nullopt;
    if (!prev || prev->sender != r.user_id || prev->redacted_by) return std::nullopt;
    auto* prev_content = prev->pdu.if_contains("content");
    if (!prev_content || !prev_content->is_object()) return std::nullopt;
    if (core::canonical_json(prev_content->as_object()) != core::canonical_json(content)) return std::nullopt;
    return id;
  });
  if (current) return *current;
  NewEvent e{room_id, r.user_id, type, state_key, content, std::nullopt, ts, std::nullopt, std::nullopt};
  std::string event_id = writer_.send(e).event_id;
  // The spec: once a room stops being guest-joinable, its guests' membership becomes leave.
  if (type == "m.room.guest_access" && state_key.empty() && str_or(content, "guest_access") != "can_join") {
    membership_.kick_guests(room_id);
  }
  return event_id;
}

std::string RoomSending::redact(const Requester& r, const std::string& room_id, const std::string& event_id,
                                const std::string& txn_id, const std::optional<std::string>& reason) {
  if (r.shadow_banned) return shadow_banned_event_id();
  object content;
  if (reason) content["reason"] = *reason;
  const room::RoomVersion* version = nullptr;
  auto target = db_.read([&](storage::Connection& c) {
    auto room_row = rooms_db::get_room(c, room_id);
    if (room_row) version = room::find_room_version(room_row->room_version);
    return ev::get_event_header(c, event_id);
  });
  if (!target) throw MatrixError::not_found("Event not found");
  // Like Synapse (SyTest "PUT /redact disallows redaction of event in different room"): 400.
  if (target->room_id != room_id) throw MatrixError::invalid_param("Cannot redact an event of another room");
  if (version && version->v11_redaction_and_create) content["redacts"] = event_id;
  std::string device = r.device_id.value_or("");
  const std::string key = txn_key({"redact", room_id, event_id, txn_id});
  NewEvent e{room_id, r.user_id, "m.room.redaction", std::nullopt, content, event_id, std::nullopt, txn_id, r.device_id};
  return writer_.send_once(e, {r.user_id, device, key}).event.event_id;
}

}  // namespace trestle::service
