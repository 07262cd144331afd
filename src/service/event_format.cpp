#include "service/event_format.hpp"

#include "core/clock.hpp"
#include "room/event_crypto.hpp"
#include "service/relations.hpp"
#include "storage/account_store.hpp"
#include "storage/room_store.hpp"

#include <atomic>

namespace trestle::service {

namespace {

std::atomic<bool> self_destruct_enabled{false};

// MSC2228: the event's content asks to be served pruned from this time on.
bool self_destructed(const storage::events::StoredEvent& e) {
  if (!self_destruct_enabled.load(std::memory_order_relaxed)) return false;
  auto* content = e.pdu.if_contains("content");
  if (!content || !content->is_object()) return false;
  auto* after = content->as_object().if_contains("org.matrix.self_destruct_after");
  return after && after->is_int64() && after->as_int64() <= core::now_ms();
}

// Erasure: an erased sender's events are pruned for a viewer who was not joined when they were
// sent (the members of that time had already seen them; Synapse does the same).
bool erased_for(const storage::events::StoredEvent& e, storage::Connection& c, const ClientEventOptions& opts) {
  if (!opts.viewer_user_id || *opts.viewer_user_id == e.sender) return false;
  if (!storage::accounts::is_erased(c, e.sender)) return false;
  auto m = storage::events::state_content_before(c, e.room_id, "m.room.member", *opts.viewer_user_id, e.stream_ordering);
  auto* membership = m ? m->if_contains("membership") : nullptr;
  return !(membership && membership->is_string() && membership->as_string() == "join");
}

// The content the event's room version keeps through a redaction.
boost::json::value pruned_content(const storage::events::StoredEvent& e, storage::Connection& c) {
  boost::json::object redacted_pdu = e.pdu;
  redacted_pdu.erase("unsigned");
  auto room_row = storage::rooms::get_room(c, e.room_id);
  const room::RoomVersion* v = room_row ? room::find_room_version(room_row->room_version) : nullptr;
  auto redacted = room::redact_event(redacted_pdu, v ? *v : room::default_room_version());
  return redacted.contains("content") ? redacted["content"] : boost::json::object{};
}

// An event's content as clients see it: redacted ones keep what their room version's redaction
// algorithm keeps.
boost::json::value served_content(const storage::events::StoredEvent& e, storage::Connection& c) {
  if (!e.redacted_by && !self_destructed(e)) return e.pdu.contains("content") ? e.pdu.at("content") : boost::json::object{};
  // Redaction is rare on the read path: look the room's version up only then.
  return pruned_content(e, c);
}

}  // namespace

void set_self_destruct_enabled(bool on) { self_destruct_enabled.store(on); }

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
  } else if (self_destructed(e) || erased_for(e, c, opts)) {
    out["content"] = pruned_content(e, c);
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
  add_bundled_aggregations(e, c, opts, unsigned_obj);
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
