#include "service/event_format.hpp"

#include "core/clock.hpp"
#include "room/event_crypto.hpp"
#include "storage/room_store.hpp"

namespace trestle::service {

namespace {

// An event's content as clients see it: redacted ones keep what their room version's redaction
// algorithm keeps.
boost::json::value served_content(const storage::events::StoredEvent& e, storage::Connection& c) {
  if (!e.redacted_by) return e.pdu.contains("content") ? e.pdu.at("content") : boost::json::object{};
  // Redaction is rare on the read path: look the room's version up only then.
  boost::json::object redacted_pdu = e.pdu;
  redacted_pdu.erase("unsigned");
  auto room_row = storage::rooms::get_room(c, e.room_id);
  const room::RoomVersion* v = room_row ? room::find_room_version(room_row->room_version) : nullptr;
  auto redacted = room::redact_event(redacted_pdu, v ? *v : room::default_room_version());
  return redacted.contains("content") ? redacted["content"] : boost::json::object{};
}

}  // namespace

boost::json::object client_event(const storage::events::StoredEvent& e, storage::Connection& c,
                                 const ClientEventOptions& opts) {
  const auto& pdu = e.pdu;
  boost::json::object out;
  out["event_id"] = e.event_id;
  out["type"] = e.type;
  out["sender"] = e.sender;
  out["origin_server_ts"] = e.origin_server_ts;
  if (opts.include_room_id) out["room_id"] = e.room_id;
  if (e.state_key) out["state_key"] = *e.state_key;
  boost::json::object unsigned_obj;
  if (auto* u = pdu.if_contains("unsigned"); u && u->is_object()) unsigned_obj = u->as_object();
  unsigned_obj["age"] = std::max<int64_t>(0, core::now_ms() - e.origin_server_ts);
  if (e.redacted_by) {
    out["content"] = served_content(e, c);
    if (auto r = storage::events::get_event(c, *e.redacted_by)) {
      ClientEventOptions inner;
      inner.include_room_id = opts.include_room_id;
      auto rev = client_event(*r, c, inner);
      unsigned_obj["redacted_because"] = std::move(rev);
    }
    unsigned_obj.erase("prev_content");
  } else {
    out["content"] = pdu.contains("content") ? pdu.at("content") : boost::json::object{};
    // Read from the replaced event now, not stored with this one (older rows stored a copy): so
    // the stored PDU stays within the limits it was checked against, and a later redaction of
    // the replaced event also hides its content here.
    unsigned_obj.erase("prev_content");
    if (e.replaces_state) {
      if (auto prev = storage::events::get_event(c, *e.replaces_state)) {
        unsigned_obj["prev_content"] = served_content(*prev, c);
      }
    }
    if (auto* r = pdu.if_contains("redacts")) out["redacts"] = *r;
    else if (e.type == "m.room.redaction") {
      if (auto* ct = pdu.if_contains("content"); ct && ct->is_object()) {
        if (auto* r2 = ct->as_object().if_contains("redacts")) out["redacts"] = *r2;
      }
    }
  }
  if (e.txn_id && opts.viewer_user_id && *opts.viewer_user_id == e.sender && opts.viewer_device_id &&
      e.txn_device_id && *opts.viewer_device_id == *e.txn_device_id) {
    unsigned_obj["transaction_id"] = *e.txn_id;
  }
  out["unsigned"] = std::move(unsigned_obj);
  return out;
}

boost::json::object federation_event(const storage::events::StoredEvent& e, storage::Connection& c) {
  boost::json::object out = e.pdu;
  if (e.redacted_by) out["content"] = served_content(e, c);
  out["event_id"] = e.event_id;
  if (!out.contains("room_id")) out["room_id"] = e.room_id;
  boost::json::object unsigned_obj;
  if (auto* u = out.if_contains("unsigned"); u && u->is_object()) unsigned_obj = u->as_object();
  unsigned_obj.erase("prev_content");
  unsigned_obj["age"] = std::max<int64_t>(0, core::now_ms() - e.origin_server_ts);
  out["unsigned"] = std::move(unsigned_obj);
  return out;
}

boost::json::object stripped_state_event(const storage::events::StoredEvent& e) {
  boost::json::object out;
  out["type"] = e.type;
  out["state_key"] = e.state_key.value_or("");
  out["sender"] = e.sender;
  out["content"] = e.pdu.contains("content") ? e.pdu.at("content") : boost::json::object{};
  return out;
}

}  // namespace trestle::service
