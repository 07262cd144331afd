#include "service/event_writer.hpp"

#include "core/canonical_json.hpp"
#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/json_fields.hpp"
#include "core/metrics.hpp"
#include "room/event_builder.hpp"
#include "service/event_forwarder.hpp"
#include "service/membership_rules.hpp"
#include "service/relations.hpp"
#include "service/suspension.hpp"
#include "storage/room_store.hpp"
#include "storage/search_store.hpp"

#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

namespace trestle::service {

namespace ev = storage::events;
namespace rooms_db = storage::rooms;
using boost::json::object;
using core::str_or;

namespace {
constexpr size_t kMaxPduBytes = 65536;  // the spec's limit on a whole event


std::string membership_of(const object& pdu) {
  auto* content = pdu.if_contains("content");
  if (!content || !content->is_object()) return "";
  return str_or(content->as_object(), "membership");
}

}  // namespace

std::string txn_key(std::initializer_list<std::string_view> path_parts) {
  std::string key;
  for (auto part : path_parts) key += std::to_string(part.size()) + ":" + std::string(part);
  return key;
}

// The room as building an event reads it: the database inside the write transaction, with the
// DAG cache in front for depths and auth fields.
class EventWriter::StoredRoom final : public room::RoomStateView {
public:
  StoredRoom(EventWriter& w, storage::Connection& c, const std::string& room_id) : w_(w), c_(c), room_id_(room_id) {}
  std::vector<std::string> forward_extremities() override { return ev::forward_extremities(c_, room_id_); }
  std::optional<int64_t> depth_of(const std::string& event_id) override {
    if (auto e = w_.dag_event(c_, event_id)) return e->depth;
    return std::nullopt;
  }
  std::optional<AuthEvent> current_auth_event(const std::string& type, const std::string& state_key) override {
    auto id = ev::current_state_event_id(c_, room_id_, type, state_key);
    if (!id) return std::nullopt;
    auto e = w_.dag_event(c_, *id);
    if (!e) return std::nullopt;
    return AuthEvent{*id, e->auth_fields};
  }
  std::optional<EventOrigin> event_origin(const std::string& event_id) override {
    auto e = ev::get_event_header(c_, event_id);
    if (!e) return std::nullopt;
    return EventOrigin{e->room_id, e->sender};
  }
  bool room_exists(const std::string& room_id) override { return rooms_db::get_room(c_, room_id).has_value(); }

private:
  EventWriter& w_;
  storage::Connection& c_;
  const std::string& room_id_;
};

EventWriter::EventWriter(const config::Config& cfg, storage::Database& db, Notifier& notifier,
                         const core::SigningKey& key)
    : cfg_(cfg), db_(db), notifier_(notifier), key_(key) {}

EventWriter::~EventWriter() = default;

void EventWriter::set_forwarder(std::unique_ptr<EventForwarder> f) { forwarder_ = std::move(f); }

bool EventWriter::writes_room(std::string_view room_id) const {
  return !cfg_.shared_stream() || cfg_.event_writer_for(room_id) == cfg_.instance_name;
}

EventForwarder* EventWriter::forwarder_for(const std::string& room_id) const {
  return forwarder_ && !writes_room(room_id) ? forwarder_.get() : nullptr;
}

std::shared_ptr<const EventWriter::DagEvent> EventWriter::dag_event(storage::Connection& c,
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
  if (e->state_key && room::is_auth_state_type(e->type)) {
    auto full = ev::get_event(c, event_id);
    if (full) e = std::move(full);
  }
  return remember_dag_event(*e);
}

std::shared_ptr<const EventWriter::DagEvent> EventWriter::remember_dag_event(const ev::StoredEvent& e) {
  auto entry = std::make_shared<DagEvent>();
  entry->depth = e.depth;
  if (e.state_key && room::is_auth_state_type(e.type)) entry->auth_fields = room::auth_fields(e.pdu);
  // Map and list nodes, the two copies of the id, the shared control block, and the fields.
  entry->bytes = 160 + 2 * e.event_id.size() +
                 (entry->auth_fields.empty() ? 0 : 2 * boost::json::serialize(entry->auth_fields).size());
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
  // The events this one follows are no longer forward extremities: unless the auth rules read
  // them, nothing will ask for them again (a fork that does reads them back), so the cache holds
  // the rooms' auth state and extremities, not an entry per event ever written.
  if (const auto* prev = e.pdu.if_contains("prev_events"); prev && prev->is_array()) {
    for (const auto& p : prev->get_array()) {
      // v1/v2: [event_id, hashes]; later versions: event_id.
      const boost::json::value* id = p.is_array() && !p.get_array().empty() ? &p.get_array()[0] : &p;
      if (!id->is_string()) continue;
      auto old = dag_cache_.find(std::string(id->get_string()));
      if (old == dag_cache_.end() || !old->second.first->auth_fields.empty()) continue;
      dag_cache_bytes_ -= old->second.first->bytes;
      dag_lru_.erase(old->second.second);
      dag_cache_.erase(old);
    }
  }
  while (dag_cache_bytes_ > kDagCacheBytes && dag_lru_.size() > 1) {
    auto victim = dag_cache_.find(dag_lru_.back());
    dag_cache_bytes_ -= victim->second.first->bytes;
    dag_cache_.erase(victim);
    dag_lru_.pop_back();
  }
  return entry;
}

ev::StoredEvent EventWriter::append(storage::Connection& c, const NewEvent& ne) {
  const bool is_create = ne.type == "m.room.create" && ne.state_key && ne.state_key->empty();
  std::string room_version;
  if (!is_create) {
    auto room_row = rooms_db::get_room(c, ne.room_id);
    if (!room_row) throw MatrixError::not_found("Unknown room " + ne.room_id);
    room_version = room_row->room_version;
  }
  room::EventDraft draft{ne.room_id, ne.sender, ne.type, ne.state_key, ne.content, ne.redacts,
                         ne.origin_server_ts.value_or(core::now_ms())};
  const room::RoomVersion& version = room::version_for(draft, room_version);
  check_suspended_sender(c, ne.sender, ne.type, ne.state_key, ne.content, ne.redacts);  // account suspension
  if (ne.type == "m.room.member") membership_rules::check_room_not_blocked(c, ne.room_id, str_or(ne.content, "membership"));

  StoredRoom room(*this, c, ne.room_id);
  room::BuiltEvent built = room::build_event(draft, version, room, {cfg_.server_name, key_});
  object& pdu = built.pdu;
  const std::string& room_id = built.room_id;
  const std::string& event_id = built.event_id;
  // Checked here, where the room ID is final (v12: the create event's ID), before the event takes
  // a stream position: one writer per room, so the room's state never races between processes.
  if (!writes_room(room_id)) {
    throw NotRoomWriter(500, "M_UNKNOWN", "Room " + room_id + " is written by the event writer '" +
                                              cfg_.event_writer_for(room_id) + "', not by '" + cfg_.instance_name + "'");
  }

  ev::StoredEvent se;
  se.event_id = event_id;
  se.room_id = room_id;
  se.type = ne.type;
  se.state_key = ne.state_key;
  se.sender = ne.sender;
  se.origin_server_ts = pdu["origin_server_ts"].as_int64();
  se.depth = built.depth;
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
  // The spec's limit holds for the whole PDU as stored, unsigned and event ID included. The row's
  // JSON is this serialisation: as long as the canonical form (numbers are integers and strings
  // escaped alike; only the key order differs).
  const std::string pdu_json = boost::json::serialize(pdu);
  if (pdu_json.size() + event_id.size() + 16 > kMaxPduBytes) {
    throw MatrixError(413, "M_TOO_LARGE", "Event is larger than 65536 bytes");
  }
  check_new_relation(c, ne.room_id, ne.sender, ne.type, pdu);  // relations.hpp: the spec's 400s
  se.stream_ordering = db_.next_stream_position();
  se.pdu = std::move(pdu);
  ev::insert_event(c, se, pdu_json);
  // Not indexed for search here: storage/search_store indexes events in batches (service/search).
  record_relation(c, se);
  remember_dag_event(se);

  if (is_create) rooms_db::insert_room(c, {room_id, version.id, ne.sender, false}, core::now_ms());
  if (ne.state_key) {
    ev::set_current_state(c, room_id, ne.type, *ne.state_key, event_id);
    if (ne.type == "m.room.member") {
      ev::upsert_membership(c, {room_id, *ne.state_key, membership_of(se.pdu), event_id, se.stream_ordering, false});
    }
  }
  if (ne.type == "m.room.redaction") {
    std::string target = ne.redacts.value_or("");
    if (auto t = ev::get_event_header(c, target); t && t->room_id == room_id) {
      ev::mark_redacted(c, target, event_id);
      // A redacted event never matches a search: out of the index if it is in it (one not yet
      // indexed never will be: batches skip redacted events).
      db_.before_commit([target](storage::Connection& c) { storage::search::unindex_event(c, target); });
      forget_relation(c, target);                 // redacted content has no m.relates_to
    }
  }
  ev::set_forward_extremity(c, room_id, event_id);
  return se;
}

ev::StoredEvent EventWriter::Batch::append(const NewEvent& e) {
  appended_.push_back(w_.append(c_, e));
  return appended_.back();
}

std::vector<ev::StoredEvent> EventWriter::write(const std::function<void(Batch&)>& body) {
  auto stored = db_.write([&](storage::Connection& c) {
    Batch batch(*this, c);
    body(batch);
    return std::move(batch.appended_);
  });
  announce(stored);
  return stored;
}

ev::StoredEvent EventWriter::send(const NewEvent& e) {
  if (auto* f = forwarder_for(e.room_id)) return f->forward(e, std::nullopt).event;
  return write([&](Batch& b) { b.append(e); }).front();
}

std::optional<ev::StoredEvent> EventWriter::append_once(Batch& b, const NewEvent& e, const ClientTxn& txn) {
  if (auto again = ev::txn_event(b.connection(), txn.user_id, txn.device_id, txn.key)) {
    return ev::get_event(b.connection(), *again).value();
  }
  auto se = b.append(e);
  ev::insert_txn(b.connection(), txn.user_id, txn.device_id, txn.key, se.event_id);
  return std::nullopt;
}

EventWriter::Sent EventWriter::send_once(const NewEvent& e, const ClientTxn& txn) {
  if (auto* f = forwarder_for(e.room_id)) return f->forward(e, txn);
  std::optional<ev::StoredEvent> earlier;
  auto stored = write([&](Batch& b) { earlier = append_once(b, e, txn); });
  if (earlier) return {std::move(*earlier), false};
  return {std::move(stored.front()), true};
}

void EventWriter::send_once_async(NewEvent e, ClientTxn txn, SendDone done) {
  if (auto* f = forwarder_for(e.room_id)) return f->forward_async(std::move(e), std::move(txn), std::move(done));
  struct State {
    NewEvent e;
    ClientTxn txn;
    std::optional<ev::StoredEvent> earlier;
    std::vector<ev::StoredEvent> appended;
  };
  auto state = std::make_shared<State>(State{std::move(e), std::move(txn), std::nullopt, {}});
  db_.write_async(
      [this, state](storage::Connection& c) {
        Batch batch(*this, c);
        state->earlier = append_once(batch, state->e, state->txn);
        state->appended = std::move(batch.appended_);
      },
      [this, state, done = std::move(done)](std::exception_ptr error) {
        if (error) return done(Sent{}, error);
        if (state->earlier) return done(Sent{std::move(*state->earlier), false}, nullptr);
        try {
          announce(state->appended);
        } catch (const std::exception& e) {  // the event is stored: the sender still gets its answer
          spdlog::error("announcing a sent event failed: {}", e.what());
        }
        done(Sent{std::move(state->appended.front()), true}, nullptr);
      });
}

void EventWriter::announce(const std::vector<ev::StoredEvent>& events) {
  if (events.empty()) return;
  static auto& persisted =
      metrics::registry().counter("synapse_storage_events_persisted_events", "Events persisted").labels({});
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

}  // namespace trestle::service
