#include "service/rooms.hpp"
#include "service/suspension.hpp"

#include "core/canonical_json.hpp"
#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/identifiers.hpp"
#include "core/json_depth.hpp"
#include "core/metrics.hpp"
#include "room/event_crypto.hpp"
#include "service/accounts.hpp"
#include "service/appservice/queries.hpp"
#include "service/event_format.hpp"
#include "service/filter.hpp"
#include "service/ignored_users.hpp"
#include "service/membership_rules.hpp"
#include "service/relations.hpp"
#include "service/visibility.hpp"
#include "storage/account_store.hpp"
#include "storage/room_admin_store.hpp"
#include "storage/room_store.hpp"
#include "storage/search_store.hpp"

#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>
#include <algorithm>
#include <initializer_list>
#include <set>
#include <string_view>

namespace trestle::service {

namespace ev = storage::events;
namespace rooms_db = storage::rooms;
using boost::json::array;
using boost::json::object;

namespace {
// What a shadow-banned user is told its event got (Synapse's ShadowBanError): an ID like a real
// one, for an event that was never sent.
std::string shadow_banned_event_id() { return "$" + core::random_string(43); }

constexpr size_t kMaxPduBytes = 65536;  // the spec's limit on a whole event
constexpr size_t kMaxTypeOrStateKeyBytes = 255;  // and on its type and state_key

std::string membership_of(const object& pdu) {
  auto* content = pdu.if_contains("content");
  if (!content || !content->is_object()) return "";
  auto* m = content->as_object().if_contains("membership");
  return m && m->is_string() ? std::string(m->as_string()) : "";
}

// State events the auth rules read (room::auth_event_keys names no other types).
bool is_auth_state(const ev::StoredEvent& e) {
  if (!e.state_key) return false;
  return e.type == "m.room.create" || e.type == "m.room.power_levels" || e.type == "m.room.member" ||
         e.type == "m.room.join_rules" || e.type == "m.room.third_party_invite";
}

// The part of an auth event the auth rules read: of a membership only its "membership" (a member
// event's other content, like a long displayname, never matters to them).
object auth_fields(const ev::StoredEvent& e) {
  if (!is_auth_state(e)) return {};
  object out;
  for (const char* key : {"room_id", "sender", "type", "state_key", "event_id"}) {
    if (auto* v = e.pdu.if_contains(key)) out[key] = *v;
  }
  auto* content = e.pdu.if_contains("content");
  if (content && content->is_object()) {
    if (e.type == "m.room.member") {
      object trimmed;
      if (auto* m = content->as_object().if_contains("membership")) trimmed["membership"] = *m;
      out["content"] = std::move(trimmed);
    } else {
      out["content"] = *content;
    }
  }
  return out;
}

std::string str_or(const object& o, const char* key, const std::string& fallback = "") {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : fallback;
}

// A retransmission is the same txnId on the same request path (spec: "Transaction identifiers"),
// so the path's variable parts belong to the key; length prefixes keep "a/b"+"c" apart from "a"+"b/c".
std::string txn_key(std::initializer_list<std::string_view> path_parts) {
  std::string key;
  for (auto part : path_parts) key += std::to_string(part.size()) + ":" + std::string(part);
  return key;
}

// The state a requester sees, given the position read_access() allows (`now` is the committed
// position): current state while joined; once they left, the state as it was when they left.
std::vector<ev::StateEntry> visible_state(storage::Connection& c, const std::string& room_id, int64_t upto,
                                          int64_t now) {
  return upto < now ? ev::state_at(c, room_id, upto) : ev::current_state(c, room_id);
}

std::optional<std::string> visible_state_event_id(storage::Connection& c, const std::string& room_id, int64_t upto,
                                                  int64_t now, const std::string& type, const std::string& state_key) {
  if (upto >= now) return ev::current_state_event_id(c, room_id, type, state_key);
  for (const auto& s : ev::state_at(c, room_id, upto)) {
    if (s.type == type && s.state_key == state_key) return s.event_id;
  }
  return std::nullopt;
}

}  // namespace

int64_t parse_stream_token(const std::string& token) {
  // Tokens look like "s123" or "s123_4" (the part after '_' is the typing serial in /sync).
  if (token.size() < 2 || token[0] != 's') throw MatrixError::invalid_param("Invalid pagination token");
  size_t end = token.find('_');
  std::string digits = token.substr(1, end == std::string::npos ? std::string::npos : end - 1);
  if (digits.empty() || digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) {
    throw MatrixError::invalid_param("Invalid pagination token");
  }
  return std::stoll(digits);
}

RoomService::RoomService(const config::Config& cfg, storage::Database& db, Notifier& notifier,
                         const core::SigningKey& key, AccountService& accounts)
    : cfg_(cfg), db_(db), notifier_(notifier), key_(key), accounts_(accounts), message_limiter_(cfg.rc_message) {}

std::shared_ptr<const RoomService::DagEvent> RoomService::dag_event(storage::Connection& c,
                                                                    const std::string& event_id) {
  {
    std::lock_guard lock(dag_cache_mu_);
    auto it = dag_cache_.find(event_id);
    if (it != dag_cache_.end()) {
      dag_lru_.splice(dag_lru_.begin(), dag_lru_, it->second.second);
      return it->second.first;
    }
  }
  // The columns give the depth without parsing the PDU; only auth events need their JSON.
  auto e = ev::get_event_header(c, event_id);
  if (!e) return nullptr;
  if (is_auth_state(*e)) {
    auto full = ev::get_event(c, event_id);
    if (full) e = std::move(full);
  }
  return remember_dag_event(*e);
}

std::shared_ptr<const RoomService::DagEvent> RoomService::remember_dag_event(const ev::StoredEvent& e) {
  auto entry = std::make_shared<DagEvent>();
  entry->depth = e.depth;
  entry->auth_pdu = auth_fields(e);
  // Map and list nodes, the two copies of the id, the shared control block, and the fields.
  entry->bytes = 160 + 2 * e.event_id.size() +
                 (entry->auth_pdu.empty() ? 0 : 2 * boost::json::serialize(entry->auth_pdu).size());
  std::lock_guard lock(dag_cache_mu_);
  auto it = dag_cache_.find(e.event_id);
  if (it != dag_cache_.end()) {
    dag_cache_bytes_ -= it->second.first->bytes;
    dag_lru_.erase(it->second.second);
    dag_cache_.erase(it);
  }
  dag_lru_.push_front(e.event_id);
  dag_cache_bytes_ += entry->bytes;
  dag_cache_.emplace(e.event_id, std::make_pair(entry, dag_lru_.begin()));
  while (dag_cache_bytes_ > kDagCacheBytes && dag_lru_.size() > 1) {
    auto victim = dag_cache_.find(dag_lru_.back());
    dag_cache_bytes_ -= victim->second.first->bytes;
    dag_cache_.erase(victim);
    dag_lru_.pop_back();
  }
  return entry;
}

room::StateMap RoomService::state_map(storage::Connection& c, const std::string& room_id) {
  room::StateMap m;
  for (const auto& s : ev::current_state(c, room_id)) {
    if (auto e = ev::get_event(c, s.event_id)) m[{s.type, s.state_key}] = std::move(e->pdu);
  }
  return m;
}

namespace {
// Rooms a server admin blocked (admin API) refuse every membership but leave and ban, as Synapse:
// 403 M_UNKNOWN.
void check_room_not_blocked(storage::Connection& c, const std::string& room_id, const std::string& membership) {
  if (membership == "leave" || membership == "ban") return;
  if (storage::room_admin::blocked_by(c, room_id)) {
    throw MatrixError(403, "M_UNKNOWN", "This room has been blocked on this server");
  }
}
}  // namespace

ev::StoredEvent RoomService::build_and_store(storage::Connection& c, const NewEvent& ne) {
  const bool is_create = ne.type == "m.room.create" && ne.state_key && ne.state_key->empty();
  const room::RoomVersion* version = nullptr;
  if (is_create) {
    std::string v = str_or(ne.content, "room_version", "1");
    version = room::find_room_version(v);
  } else {
    auto room_row = rooms_db::get_room(c, ne.room_id);
    if (!room_row) throw MatrixError::not_found("Unknown room " + ne.room_id);
    version = room::find_room_version(room_row->room_version);
  }
  if (!version) throw MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", "Unsupported room version");
  if (ne.type.size() > kMaxTypeOrStateKeyBytes || (ne.state_key && ne.state_key->size() > kMaxTypeOrStateKeyBytes)) {
    throw MatrixError(413, "M_TOO_LARGE", "An event's type and state_key must not exceed 255 bytes");
  }
  if (ne.type == "m.room.tombstone" && str_or(ne.content, "replacement_room") == ne.room_id) {
    throw MatrixError::invalid_param("A tombstone cannot name the room it is sent in as its replacement");
  }
  // Content as deep as a request may carry sits one level deeper in the PDU, which the stored-JSON
  // reader takes with room to spare (core/json_depth.hpp); deeper content can only come from a bug.
  if (core::json_depth(ne.content) > core::kMaxJsonDepth) {
    throw MatrixError::bad_json("Event content is nested too deeply");
  }
  if (!core::is_event_json_compatible(ne.content)) {
    throw MatrixError::bad_json(
        "Event content must not contain floats, exponents or integers outside [-(2^53)+1, (2^53)-1]");
  }

  check_suspended_sender(c, ne.sender, ne.type, ne.state_key, ne.content, ne.redacts);  // account suspension
  if (ne.type == "m.room.member") check_room_not_blocked(c, ne.room_id, str_or(ne.content, "membership"));

  // v12: the create event carries no room_id; its event ID, with '!', becomes the room ID.
  const bool derives_room_id = is_create && version->room_id_is_create_event_id;
  std::string room_id = ne.room_id;
  object pdu;
  if (!derives_room_id) pdu["room_id"] = ne.room_id;
  pdu["sender"] = ne.sender;
  pdu["type"] = ne.type;
  if (ne.state_key) pdu["state_key"] = *ne.state_key;
  pdu["content"] = ne.content;
  pdu["origin_server_ts"] = ne.origin_server_ts.value_or(core::now_ms());
  if (ne.redacts && !version->v11_redaction_and_create) pdu["redacts"] = *ne.redacts;

  // DAG position: we are the only server in our rooms, so there is one extremity.
  int64_t depth = 1;
  array prev_events;
  for (const auto& id : derives_room_id ? std::vector<std::string>{} : ev::forward_extremities(c, ne.room_id)) {
    if (auto p = dag_event(c, id)) depth = std::max(depth, p->depth + 1);
    prev_events.push_back(boost::json::value(id));
  }
  pdu["prev_events"] = std::move(prev_events);
  pdu["depth"] = depth;

  // Auth events: the current state entries the auth rules name for this event.
  room::StateMap auth_state;
  array auth_events;
  for (const auto& key : room::auth_event_keys(pdu)) {
    auto id = ev::current_state_event_id(c, ne.room_id, key.first, key.second);
    if (!id) continue;
    if (auto e = dag_event(c, *id); e && !e->auth_pdu.empty()) {
      auth_state[key] = e->auth_pdu;
      if (key.first == "m.room.create" && version->room_id_is_create_event_id) {
        // v12: the room ID stands for the create event, which is never an auth event; the auth
        // rules compare the room ID with its event ID.
        auth_state[key]["event_id"] = *id;
        continue;
      }
      auth_events.push_back(boost::json::value(*id));
    }
  }
  pdu["auth_events"] = std::move(auth_events);

  if (auto reason = room::check_event_auth(pdu, auth_state, *version)) {
    throw MatrixError::forbidden(*reason);
  }
  if (ne.type == "m.room.redaction" && ne.redacts) {
    // The auth rules let anyone on the target's server redact it, and here that is everyone: like
    // Synapse, only those with the "redact" power level may redact others' events.
    auto target = ev::get_event_header(c, *ne.redacts);
    if (target && target->room_id == ne.room_id && target->sender != ne.sender) {
      auto st = state_map(c, ne.room_id);
      if (room::user_power_level(st, ne.sender, *version) < room::named_power_level(st, "redact")) {
        throw MatrixError::forbidden("You don't have permission to redact this event");
      }
    }
  }

  if (version->id == "1" || version->id == "2") {
    // These versions name an event by an ID its origin server picks and puts in the event.
    pdu["event_id"] = "$" + core::random_string(18) + ":" + cfg_.server_name;
  }
  room::hash_and_sign_event(pdu, cfg_.server_name, key_, *version);
  std::string event_id = room::compute_event_id(pdu, *version);
  if (derives_room_id) {
    // Identical create events (same sender, content and millisecond) would name the same room:
    // move the later one's timestamp on until its ID is free.
    for (int attempt = 0; rooms_db::get_room(c, "!" + event_id.substr(1)); ++attempt) {
      if (attempt == 100) throw MatrixError(500, "M_UNKNOWN", "Could not choose a free room ID");
      pdu.erase("signatures");
      pdu.erase("hashes");
      pdu["origin_server_ts"] = pdu["origin_server_ts"].as_int64() + 1;
      room::hash_and_sign_event(pdu, cfg_.server_name, key_, *version);
      event_id = room::compute_event_id(pdu, *version);
    }
    room_id = "!" + event_id.substr(1);
  }

  ev::StoredEvent se;
  se.event_id = event_id;
  se.room_id = room_id;
  se.type = ne.type;
  se.state_key = ne.state_key;
  se.sender = ne.sender;
  se.origin_server_ts = pdu["origin_server_ts"].as_int64();
  se.depth = depth;
  se.txn_id = ne.txn_id;
  se.txn_device_id = ne.txn_device_id;

  if (ne.state_key) {
    // prev_content is not stored: it is read from the replaced event when served (as Synapse
    // does), so the stored PDU is exactly the one checked below, whatever the state it replaces.
    auto previous = ev::current_state_event_id(c, room_id, ne.type, *ne.state_key);
    if (previous) {
      se.replaces_state = previous;
      if (auto prev = ev::get_event_header(c, *previous)) {
        pdu["unsigned"] = object{{"replaces_state", *previous}, {"prev_sender", prev->sender}};
      }
    }
    // A knock carries the room's stripped state for the knocker (spec: m.room.member).
    if (ne.type == "m.room.member" && str_or(ne.content, "membership") == "knock") {
      if (!pdu.contains("unsigned")) pdu["unsigned"] = object{};
      pdu["unsigned"].as_object()["knock_room_state"] = membership_rules::stripped_room_state(c, ne.room_id);
    }
  }
  // The spec's limit holds for the whole PDU as stored, unsigned and event ID included.
  if (core::canonical_json(pdu).size() + event_id.size() + 16 > kMaxPduBytes) {
    throw MatrixError(413, "M_TOO_LARGE", "Event is larger than 65536 bytes");
  }
  check_new_relation(c, ne.room_id, ne.sender, ne.type, pdu);  // relations.hpp: the spec's 400s
  se.stream_ordering = db_.next_stream_position();
  se.pdu = pdu;
  ev::insert_event(c, se);
  storage::search::index_event(c, se);
  record_relation(c, se);
  remember_dag_event(se);

  if (is_create) {
    rooms_db::insert_room(c, {room_id, version->id, ne.sender, false}, core::now_ms());
  }
  if (ne.state_key) {
    ev::set_current_state(c, room_id, ne.type, *ne.state_key, event_id);
    if (ne.type == "m.room.member") {
      ev::upsert_membership(c, {room_id, *ne.state_key, membership_of(pdu), event_id, se.stream_ordering, false});
    }
  }
  if (ne.type == "m.room.redaction") {
    std::string target = ne.redacts.value_or("");
    if (auto t = ev::get_event_header(c, target); t && t->room_id == room_id) {
      ev::mark_redacted(c, target, event_id);
      storage::search::unindex_event(c, target);  // a redacted event never matches a search
      forget_relation(c, target);  // redacted content has no m.relates_to
    }
  }
  ev::set_forward_extremity(c, room_id, event_id);
  return se;
}

void RoomService::announce(const std::vector<ev::StoredEvent>& events) {
  static auto& persisted = metrics::registry().counter("synapse_storage_events_persisted_events", "Events persisted").labels({});
  persisted.inc(static_cast<double>(events.size()));
  std::vector<std::string> keys;
  for (const auto& e : events) {
    keys.push_back(e.room_id);
    // A membership change must reach the target's /sync even though it is not (yet) watching
    // the room.
    if (e.type == "m.room.member" && e.state_key) keys.push_back(*e.state_key);
  }
  notifier_.notify(keys);
}

ev::StoredEvent RoomService::send_event(const NewEvent& e) { return send_events({e}).front(); }

std::vector<ev::StoredEvent> RoomService::send_events(const std::vector<NewEvent>& events) {
  auto stored = db_.write([&](storage::Connection& c) {
    std::vector<ev::StoredEvent> out;
    for (const auto& e : events) out.push_back(build_and_store(c, e));
    return out;
  });
  announce(stored);
  return stored;
}

std::string RoomService::send_message(const Requester& r, const std::string& room_id, const std::string& type,
                                      const std::string& txn_id, const object& content, std::optional<int64_t> ts) {
  if (r.shadow_banned) return shadow_banned_event_id();
  std::string device = r.device_id.value_or("");
  // Idempotency: a retried PUT returns the first event instead of sending twice. Checked inside
  // the write only: retries are rare, and a separate read first would cost every send.
  const std::string key = txn_key({"send", room_id, type, txn_id});
  NewEvent e{room_id, r.user_id, type, std::nullopt, content, std::nullopt, ts, txn_id, r.device_id};
  if (type == "m.room.redaction") {
    auto* redacts = content.if_contains("redacts");
    if (redacts && redacts->is_string()) e.redacts = std::string(redacts->as_string());
  }
  bool created = false;
  auto stored = db_.write([&](storage::Connection& c) {
    if (auto again = ev::txn_event(c, r.user_id, device, key)) {
      return ev::get_event(c, *again).value();
    }
    auto se = build_and_store(c, e);
    ev::insert_txn(c, r.user_id, device, key, se.event_id);
    created = true;
    return se;
  });
  if (created) announce({stored});
  return stored.event_id;
}

std::optional<object> RoomService::current_state_pdu(const std::string& room_id, const std::string& type,
                                                     const std::string& state_key) {
  return db_.read([&](storage::Connection& c) -> std::optional<object> {
    auto id = ev::current_state_event_id(c, room_id, type, state_key);
    if (!id) return std::nullopt;
    auto e = ev::get_event(c, *id);
    if (!e) return std::nullopt;
    return e->pdu;
  });
}

std::string RoomService::set_state(const Requester& r, const std::string& room_id, const std::string& type,
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
      if (m == "join") check_guest_may_join(r, room_id);
    }
    if (m == "invite") check_invite_permission(state_key);
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
  std::string event_id = send_event(e).event_id;
  // The spec: once a room stops being guest-joinable, its guests' membership becomes leave.
  if (type == "m.room.guest_access" && state_key.empty() && str_or(content, "guest_access") != "can_join") {
    kick_guests(room_id);
  }
  return event_id;
}

std::string RoomService::redact(const Requester& r, const std::string& room_id, const std::string& event_id,
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
  auto existing = db_.read([&](storage::Connection& c) { return ev::txn_event(c, r.user_id, device, key); });
  if (existing) return *existing;
  NewEvent e{room_id, r.user_id, "m.room.redaction", std::nullopt, content, event_id, std::nullopt, txn_id, r.device_id};
  auto stored = db_.write([&](storage::Connection& c) {
    if (auto again = ev::txn_event(c, r.user_id, device, key)) return ev::get_event(c, *again).value();
    auto se = build_and_store(c, e);
    ev::insert_txn(c, r.user_id, device, key, se.event_id);
    return se;
  });
  announce({stored});
  return stored.event_id;
}

std::string RoomService::create_room(const Requester& r, const object& body,
                                     const std::optional<std::string>& preset_room_id) {
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
      check_invite_permission(user_id);  // 403 M_INVITE_BLOCKED before anything is created
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
  std::string room_id = version->room_id_is_create_event_id
                            ? std::string()
                            : preset_room_id.value_or("!" + core::random_string(18) + ":" + cfg_.server_name);
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

  auto stored = db_.write([&](storage::Connection& c) {
    std::vector<ev::StoredEvent> out;
    for (auto& e : events) {
      if (!out.empty()) e.room_id = out.front().room_id;  // v12: the create event named the room
      try {
        out.push_back(build_and_store(c, e));
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
    if (alias && !rooms_db::insert_alias(c, *alias, room_id, r.user_id)) {
      throw MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken");
    }
    if (visibility == "public") rooms_db::set_public(c, room_id, true);
    return out;
  });
  announce(stored);
  return room_id;
}

void RoomService::change_membership(const Requester& r, const std::string& room_id, const std::string& target,
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
  send_event(NewEvent{room_id, r.user_id, "m.room.member", target, content, std::nullopt, std::nullopt, std::nullopt,
                      std::nullopt});
}

std::string RoomService::resolve_room_id_or_alias(const std::string& room_id_or_alias) {
  if (!room_id_or_alias.empty() && room_id_or_alias[0] == '#') {
    if (!core::parse_room_alias(room_id_or_alias)) throw MatrixError::invalid_param("Invalid room alias");
    return std::string(resolve_alias(room_id_or_alias).at("room_id").as_string());
  }
  if (!core::is_valid_room_id(room_id_or_alias)) throw MatrixError::invalid_param("Invalid room ID or alias");
  return room_id_or_alias;
}

std::string RoomService::join(const Requester& r, const std::string& room_id_or_alias,
                              const std::optional<std::string>& reason, const object& extra) {
  const std::string room_id = resolve_room_id_or_alias(room_id_or_alias);
  // A blocked room refuses joins before anything else, even once it is purged (Synapse).
  db_.read([&](storage::Connection& c) { check_room_not_blocked(c, room_id, "join"); });
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

std::string RoomService::knock(const Requester& r, const std::string& room_id_or_alias,
                               const std::optional<std::string>& reason) {
  const std::string room_id = resolve_room_id_or_alias(room_id_or_alias);
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

void RoomService::check_invite_permission(const std::string& target) {
  if (db_.read([&](storage::Connection& c) { return membership_rules::invites_blocked(c, target); })) {
    throw MatrixError(403, "M_INVITE_BLOCKED", target + " does not accept invites");
  }
}

void RoomService::invite(const Requester& r, const std::string& room_id, const std::string& target,
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

void RoomService::leave(const Requester& r, const std::string& room_id, const std::optional<std::string>& reason) {
  auto current = db_.read([&](storage::Connection& c) { return ev::get_membership(c, room_id, r.user_id); });
  if (!current) throw MatrixError::forbidden("You are not in this room");
  if (current->membership == "leave" || current->membership == "ban") return;  // already out: idempotent
  change_membership(r, room_id, r.user_id, "leave", reason);
}

void RoomService::kick(const Requester& r, const std::string& room_id, const std::string& target,
                       const std::optional<std::string>& reason) {
  auto current = db_.read([&](storage::Connection& c) { return ev::get_membership(c, room_id, target); });
  if (!current || (current->membership != "join" && current->membership != "invite" && current->membership != "knock")) {
    throw MatrixError::forbidden(target + " is not in the room");
  }
  change_membership(r, room_id, target, "leave", reason);
}

void RoomService::ban(const Requester& r, const std::string& room_id, const std::string& target,
                      const std::optional<std::string>& reason) {
  change_membership(r, room_id, target, "ban", reason);
}

void RoomService::unban(const Requester& r, const std::string& room_id, const std::string& target,
                        const std::optional<std::string>& reason) {
  auto current = db_.read([&](storage::Connection& c) { return ev::get_membership(c, room_id, target); });
  if (!current || current->membership != "ban") throw MatrixError::forbidden(target + " is not banned");
  change_membership(r, room_id, target, "leave", reason);
}

void RoomService::forget(const Requester& r, const std::string& room_id) {
  db_.write([&](storage::Connection& c) {
    auto m = ev::get_membership(c, room_id, r.user_id);
    if (!m) throw MatrixError::not_found("You have never been in this room");
    if (m->membership == "join" || m->membership == "invite" || m->membership == "knock") {
      throw MatrixError(400, "M_UNKNOWN", "You must leave the room before forgetting it");
    }
    ev::set_forgotten(c, room_id, r.user_id);
  });
}

void RoomService::update_profile_in_rooms(const std::string& user_id) {
  auto user = accounts_.get_user(user_id);
  if (!user) return;
  auto joined = db_.read([&](storage::Connection& c) { return ev::rooms_for_user(c, user_id, "join"); });
  for (const auto& room_id : joined) {
    object content{{"membership", "join"}};
    if (user->displayname) content["displayname"] = *user->displayname;
    if (user->avatar_url) content["avatar_url"] = *user->avatar_url;
    try {
      send_event(NewEvent{room_id, user_id, "m.room.member", user_id, content, std::nullopt, std::nullopt,
                          std::nullopt, std::nullopt});
    } catch (const MatrixError&) {
      // A room whose rules refuse the update keeps the old profile; the others still change.
    }
  }
}

std::optional<object> RoomService::current_state_content(const std::string& room_id, const std::string& type,
                                                         const std::string& state_key) {
  return db_.read([&](storage::Connection& c) -> std::optional<object> {
    auto id = ev::current_state_event_id(c, room_id, type, state_key);
    auto e = id ? ev::get_event(c, *id) : std::nullopt;
    auto* content = e ? e->pdu.if_contains("content") : nullptr;
    if (!content || !content->is_object()) return std::nullopt;
    return content->as_object();
  });
}

void RoomService::check_guest_may_join(const Requester& r, const std::string& room_id) {
  if (!r.is_guest) return;
  auto guest_access = current_state_content(room_id, "m.room.guest_access", "");
  if (!guest_access || str_or(*guest_access, "guest_access") != "can_join") {
    throw MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is not allowed in this room");
  }
}

void RoomService::kick_guests(const std::string& room_id) {
  auto members = db_.read([&](storage::Connection& c) { return ev::members_of_room(c, room_id); });
  for (const auto& m : members) {
    if (m.membership != "join") continue;
    auto user = accounts_.get_user(m.user_id);
    if (!user || !user->is_guest) continue;
    // Like Synapse, the guest leaves itself: no power level is needed, whoever changed the rule.
    try {
      send_event(NewEvent{room_id, m.user_id, "m.room.member", m.user_id,
                          object{{"membership", "leave"}, {"kind", "guest"}}, std::nullopt, std::nullopt,
                          std::nullopt, std::nullopt});
    } catch (const MatrixError& e) {
      spdlog::warn("could not remove guest {} from {}: {}", m.user_id, room_id, e.what());
    }
  }
}

bool RoomService::is_joined(const std::string& room_id, const std::string& user_id) {
  auto m = db_.read([&](storage::Connection& c) { return ev::get_membership(c, room_id, user_id); });
  return m && m->membership == "join";
}

void RoomService::require_joined(const Requester& r, const std::string& room_id) {
  if (!is_joined(room_id, r.user_id)) throw MatrixError::forbidden("You are not joined to room " + room_id);
}

RoomReadAccess RoomService::read_access(storage::Connection& c, const Requester& r, const std::string& room_id) {
  auto access = room_read_access(c, r.user_id, room_id, db_.committed_position());
  if (!access) throw MatrixError::forbidden("You are not allowed to view room " + room_id);
  return *access;
}

boost::json::array RoomService::joined_rooms(const std::string& user_id) {
  array out;
  for (auto& id : db_.read([&](storage::Connection& c) { return ev::rooms_for_user(c, user_id, "join"); })) {
    out.push_back(boost::json::value(id));
  }
  return out;
}

object RoomService::joined_members(const Requester& r, const std::string& room_id) {
  return db_.read([&](storage::Connection& c) {
    auto m = ev::get_membership(c, room_id, r.user_id);
    if (!m || m->membership != "join") throw MatrixError::forbidden("You are not joined to room " + room_id);
    object joined;
    for (const auto& mem : ev::members_of_room(c, room_id)) {
      if (mem.membership != "join") continue;
      object info;
      if (auto e = ev::get_event(c, mem.event_id)) {
        const auto& content = e->pdu.at("content").as_object();
        auto* dn = content.if_contains("displayname");
        auto* av = content.if_contains("avatar_url");
        info["display_name"] = dn && dn->is_string() ? *dn : boost::json::value(nullptr);
        info["avatar_url"] = av && av->is_string() ? *av : boost::json::value(nullptr);
      }
      joined[mem.user_id] = std::move(info);
    }
    return object{{"joined", std::move(joined)}};
  });
}

array RoomService::members(const Requester& r, const std::string& room_id,
                           const std::optional<std::string>& membership,
                           const std::optional<std::string>& not_membership) {
  return db_.read([&](storage::Connection& c) {
    int64_t upto = read_access(c, r, room_id).upto;
    array out;
    ClientEventOptions opts{r.user_id, r.device_id, true};
    for (const auto& s : visible_state(c, room_id, upto, db_.committed_position())) {
      if (s.type != "m.room.member") continue;
      auto e = ev::get_event(c, s.event_id);
      if (!e) continue;
      std::string m = membership_of(e->pdu);
      if (membership && m != *membership) continue;
      if (not_membership && m == *not_membership) continue;
      out.push_back(client_event(*e, c, opts));
    }
    return out;
  });
}

array RoomService::state(const Requester& r, const std::string& room_id) {
  return db_.read([&](storage::Connection& c) {
    int64_t upto = read_access(c, r, room_id).upto;
    array out;
    ClientEventOptions opts{r.user_id, r.device_id, true};
    for (const auto& s : visible_state(c, room_id, upto, db_.committed_position())) {
      if (auto e = ev::get_event(c, s.event_id)) out.push_back(client_event(*e, c, opts));
    }
    return out;
  });
}

object RoomService::state_event(const Requester& r, const std::string& room_id, const std::string& type,
                                const std::string& state_key, bool full_event) {
  return db_.read([&](storage::Connection& c) {
    int64_t upto = read_access(c, r, room_id).upto;
    auto id = visible_state_event_id(c, room_id, upto, db_.committed_position(), type, state_key);
    if (!id) throw MatrixError::not_found("Event not found");
    auto e = ev::get_event(c, *id);
    if (!e) throw MatrixError::not_found("Event not found");
    auto ce = client_event(*e, c, {r.user_id, r.device_id, true});
    if (full_event) return ce;
    return ce["content"].as_object();
  });
}

object RoomService::event(const Requester& r, const std::string& room_id, const std::string& event_id) {
  return db_.read([&](storage::Connection& c) {
    // The spec: 404 when the event is unknown or the requester may not see it (the room's too).
    auto access = room_read_access(c, r.user_id, room_id, db_.committed_position());
    if (!access) throw MatrixError::not_found("Event not found");
    auto e = ev::get_event(c, event_id);
    if (!e || e->room_id != room_id || e->stream_ordering > access->upto ||
        !event_visible_to(c, r.user_id, *e, access->peeking)) {
      throw MatrixError::not_found("Event not found");
    }
    return client_event(*e, c, {r.user_id, r.device_id, true});
  });
}

object RoomService::messages(const Requester& r, const std::string& room_id,
                             const std::optional<std::string>& from_param, const std::optional<std::string>& to_param,
                             const std::string& dir, int64_t limit, const object& filter) {
  if (dir != "b" && dir != "f") throw MatrixError::invalid_param("dir must be 'b' or 'f'");
  limit = std::clamp<int64_t>(limit, 1, 1000);
  // An empty token is no token (clients send `from=` for "from the end").
  auto given = [](const std::optional<std::string>& t) { return t && !t->empty() ? t : std::nullopt; };
  const auto from = given(from_param), to = given(to_param);
  return db_.read([&](storage::Connection& c) {
    auto access = read_access(c, r, room_id);
    int64_t upto = access.upto;
    const auto ignored = ignored_users(c, r.user_id);
    int64_t start = from ? parse_stream_token(*from) : (dir == "b" ? db_.committed_position() : 0);
    std::optional<int64_t> stop;
    if (to) stop = parse_stream_token(*to);
    ClientEventOptions opts{r.user_id, r.device_id, true};
    array chunk;
    std::set<std::string> senders;
    int64_t cursor = start;
    bool exhausted = false;
    // Filtered-out events do not count towards the limit, so read in batches until full.
    while (static_cast<int64_t>(chunk.size()) < limit && !exhausted) {
      std::vector<ev::StoredEvent> batch;
      if (dir == "b") {
        int64_t lower = stop.value_or(0);
        batch = ev::room_events_backwards(c, room_id, lower, std::min(cursor, upto), limit);
        if (batch.empty()) exhausted = true;
        else cursor = batch.back().stream_ordering - 1;
      } else {
        int64_t upper = std::min(stop.value_or(upto), upto);
        batch = ev::room_events_forwards(c, room_id, cursor, upper, limit);
        if (batch.empty()) exhausted = true;
        else cursor = batch.back().stream_ordering;
      }
      if (static_cast<int64_t>(batch.size()) < limit) exhausted = true;
      for (const auto& e : batch) {
        if (static_cast<int64_t>(chunk.size()) >= limit) {
          cursor = dir == "b" ? e.stream_ordering : e.stream_ordering - 1;
          exhausted = false;
          break;
        }
        if (dir == "b") cursor = e.stream_ordering - 1;
        else cursor = e.stream_ordering;
        if (!event_matches(filter, e) || hidden_by_ignore(ignored, e) || !related_by_matches(c, filter, e) ||
            !event_visible_to(c, r.user_id, e, access.peeking)) {
          continue;
        }
        senders.insert(e.sender);
        chunk.push_back(client_event(e, c, opts));
      }
    }
    object out{{"start", from ? *from : "s" + std::to_string(start)}, {"chunk", std::move(chunk)}};
    // `end` whenever there may be more, and whenever events came back (as Synapse: the next page
    // from it is then empty, without `end`), so a forward reader can resume from it.
    if (!exhausted || !out["chunk"].as_array().empty()) out["end"] = "s" + std::to_string(cursor);
    if (filter_flag(filter, "lazy_load_members")) {
      array state;
      for (const auto& s : senders) {
        if (auto id = ev::current_state_event_id(c, room_id, "m.room.member", s)) {
          if (auto e = ev::get_event(c, *id)) state.push_back(client_event(*e, c, opts));
        }
      }
      out["state"] = std::move(state);
    }
    return out;
  });
}

object RoomService::context(const Requester& r, const std::string& room_id, const std::string& event_id,
                            int64_t limit, const object& filter) {
  limit = std::clamp<int64_t>(limit, 0, 100);
  return db_.read([&](storage::Connection& c) {
    auto access = read_access(c, r, room_id);
    int64_t upto = access.upto;
    auto target = ev::get_event(c, event_id);
    if (!target || target->room_id != room_id || target->stream_ordering > upto ||
        !event_visible_to(c, r.user_id, *target, access.peeking)) {
      throw MatrixError::not_found("Event not found");
    }
    ClientEventOptions opts{r.user_id, r.device_id, true};
    const auto ignored = ignored_users(c, r.user_id);
    auto shown = [&](const ev::StoredEvent& e) {
      return event_matches(filter, e) && !hidden_by_ignore(ignored, e) && related_by_matches(c, filter, e) &&
             event_visible_to(c, r.user_id, e, access.peeking);
    };
    int64_t before_n = limit / 2, after_n = limit - before_n;
    array before, after;
    std::set<std::string> senders{target->sender};
    int64_t start = target->stream_ordering - 1, end = target->stream_ordering;
    for (const auto& e : ev::room_events_backwards(c, room_id, 0, target->stream_ordering - 1, before_n)) {
      start = e.stream_ordering - 1;
      if (!shown(e)) continue;
      senders.insert(e.sender);
      before.push_back(client_event(e, c, opts));
    }
    for (const auto& e : ev::room_events_forwards(c, room_id, target->stream_ordering, upto, after_n)) {
      end = e.stream_ordering;
      if (!shown(e)) continue;
      senders.insert(e.sender);
      after.push_back(client_event(e, c, opts));
    }
    // The spec: the state at the last event returned, filtered like the events; with
    // lazy_load_members only the members who sent the events returned.
    const bool lazy_members = filter_flag(filter, "lazy_load_members");
    array state;
    for (const auto& s : ev::state_at(c, room_id, end)) {
      if (lazy_members && s.type == "m.room.member" && !senders.count(s.state_key)) continue;
      auto e = ev::get_event(c, s.event_id);
      if (e && event_matches(filter, *e)) state.push_back(client_event(*e, c, opts));
    }
    return object{{"event", client_event(*target, c, opts)},
                  {"events_before", std::move(before)},
                  {"events_after", std::move(after)},
                  {"start", "s" + std::to_string(start)},
                  {"end", "s" + std::to_string(end)},
                  {"state", std::move(state)}};
  });
}

void RoomService::create_alias(const Requester& r, const std::string& alias, const std::string& room_id) {
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

object RoomService::resolve_alias(const std::string& alias) {
  if (!core::parse_room_alias(alias)) throw MatrixError::invalid_param("Invalid room alias");
  auto lookup = [&] { return db_.read([&](storage::Connection& c) { return rooms_db::get_alias(c, alias); }); };
  auto a = lookup();
  // An appservice may create the room on demand (GET /_matrix/app/v1/rooms/{alias}).
  if (!a && appservice_queries_ && appservice_queries_->query_alias(alias)) a = lookup();
  if (!a) throw MatrixError::not_found("Room alias " + alias + " not found");
  return object{{"room_id", a->room_id}, {"servers", array{boost::json::value(cfg_.server_name)}}};
}

void RoomService::delete_alias(const Requester& r, const std::string& alias) {
  if (!core::parse_room_alias(alias)) throw MatrixError::invalid_param("Invalid room alias");
  auto room_id = db_.write([&](storage::Connection& c) {
    auto a = rooms_db::get_alias(c, alias);
    if (!a) throw MatrixError::not_found("Room alias " + alias + " not found");
    if (a->creator != r.user_id) {
      // Room moderators (enough power to set canonical_alias) may remove aliases too.
      auto st = state_map(c, a->room_id);
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

void RoomService::remove_from_canonical_alias(const Requester& r, const std::string& room_id, const std::string& alias) {
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
    send_event(NewEvent{room_id, r.user_id, "m.room.canonical_alias", "", content, std::nullopt, std::nullopt,
                        std::nullopt, std::nullopt});
  } catch (const MatrixError&) {
    // The alias creator need not be allowed to change the room's state: the alias is gone anyway.
  }
}

array RoomService::room_aliases(const Requester& r, const std::string& room_id) {
  // Server admins may list any room's aliases, as in Synapse (synadm's `user membership` does).
  const bool admin = !r.appservice && accounts_.is_admin(r.user_id);
  return db_.read([&](storage::Connection& c) {
    if (!admin) read_access(c, r, room_id);
    array out;
    for (auto& a : rooms_db::aliases_of_room(c, room_id)) out.push_back(boost::json::value(a));
    return out;
  });
}

object RoomService::public_rooms(int64_t limit, const std::optional<std::string>& since,
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

std::string RoomService::room_visibility(const std::string& room_id) {
  auto room_row = db_.read([&](storage::Connection& c) { return rooms_db::get_room(c, room_id); });
  if (!room_row) throw MatrixError::not_found("Unknown room");
  return room_row->is_public ? "public" : "private";
}

void RoomService::set_room_visibility(const Requester& r, const std::string& room_id, const std::string& visibility) {
  if (visibility != "public" && visibility != "private") throw MatrixError::invalid_param("visibility must be public or private");
  db_.write([&](storage::Connection& c) {
    auto room_row = rooms_db::get_room(c, room_id);
    if (!room_row) throw MatrixError::not_found("Unknown room");
    auto st = state_map(c, room_id);
    const auto* v = room::find_room_version(room_row->room_version);
    if (room::user_power_level(st, r.user_id, v ? *v : room::default_room_version()) <
        room::required_power_level(st, "m.room.canonical_alias", true)) {
      throw MatrixError::forbidden("You may not change this room's directory visibility");
    }
    rooms_db::set_public(c, room_id, visibility == "public");
  });
}

void RoomService::set_appservice_room_visibility(const std::string& appservice_id, const std::string& network_id,
                                                 const std::string& room_id, const std::string& visibility) {
  if (visibility != "public" && visibility != "private") throw MatrixError::invalid_param("visibility must be public or private");
  db_.write([&](storage::Connection& c) {
    if (!rooms_db::get_room(c, room_id)) throw MatrixError::not_found("Unknown room");
    rooms_db::set_appservice_listing(c, appservice_id, network_id, room_id, visibility == "public");
  });
}

}  // namespace trestle::service
