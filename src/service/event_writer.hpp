#pragma once
// The one write path for events. Every event this server creates (a client's message or state,
// membership, redaction, room creation, upgrades, appservices' massaged timestamps, admin actions)
// is built by room::build_event and persisted here: the only code that opens an event's
// transaction. It checks the server's own rules (suspension, blocked rooms, relations), keeps
// transaction-ID idempotency, assigns the stream position, writes the rows (event, current state,
// membership, redaction marks, search, relations, extremities) and announces after the commit.
// Federation's incoming events and workers will meet here too.
//
// Several event writers (stream_writers.events): a room's events are written by its writer only
// (cfg.event_writer_for). With a forwarder set, send/send_once/send_once_async of another
// writer's room go to that writer (service/event_forwarder.hpp) and come back as if written here;
// anything else that would write another writer's room fails whole (NotRoomWriter).
#include "config/config.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "service/notifier.hpp"
#include "storage/database.hpp"
#include "storage/event_store.hpp"

#include <boost/json/object.hpp>
#include <functional>
#include <initializer_list>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace trestle::service {

// What one new event is, before the server fills in the DAG fields.
struct NewEvent {
  std::string room_id;
  std::string sender;
  std::string type;
  std::optional<std::string> state_key;
  boost::json::object content;
  std::optional<std::string> redacts;
  std::optional<int64_t> origin_server_ts;  // timestamp massaging; now if unset
  std::optional<std::string> txn_id;        // recorded so the sender's device sees its echo
  std::optional<std::string> txn_device_id;
};

// A client transaction: a retransmission is the same txnId on the same request path (spec:
// "Transaction identifiers"), by the same user and device.
struct ClientTxn {
  std::string user_id;
  std::string device_id;  // "" without one
  std::string key;        // txn_key(...) of the path's variable parts and the txnId
};
// Length prefixes keep "a/b"+"c" apart from "a"+"b/c".
std::string txn_key(std::initializer_list<std::string_view> path_parts);

class EventForwarder;

// An event of a room another process writes reached this process's write (several event
// writers): nothing was written. Room creation draws another room ID on it.
class NotRoomWriter : public MatrixError {
public:
  using MatrixError::MatrixError;
};

class EventWriter {
public:
  EventWriter(const config::Config& cfg, storage::Database& db, Notifier& notifier, const core::SigningKey& key);
  ~EventWriter();

  // Several event writers: events of other writers' rooms go to them through `f` (serve sets it).
  void set_forwarder(std::unique_ptr<EventForwarder> f);
  // This process writes the room's events (always, with one event writer).
  bool writes_room(std::string_view room_id) const;

  // One write transaction in which `body` appends events (and may write other rows of the same
  // change through connection()). After the commit, the appended events are announced.
  class Batch {
  public:
    storage::events::StoredEvent append(const NewEvent& e);
    storage::Connection& connection() { return c_; }

  private:
    friend class EventWriter;
    Batch(EventWriter& w, storage::Connection& c) : w_(w), c_(c) {}
    EventWriter& w_;
    storage::Connection& c_;
    std::vector<storage::events::StoredEvent> appended_;
  };
  std::vector<storage::events::StoredEvent> write(const std::function<void(Batch&)>& body);

  // Builds, authorises (403 M_FORBIDDEN with the auth rule's reason), stores and announces.
  storage::events::StoredEvent send(const NewEvent& e);
  // Idempotent per client transaction: a retry gets the first event back (`created` false) and
  // sends nothing. Checked inside the write only: a separate read first would cost every send.
  struct Sent {
    storage::events::StoredEvent event;
    bool created = false;
  };
  Sent send_once(const NewEvent& e, const ClientTxn& txn);
  // send_once without a thread waiting for the group commit: `done` gets the result, or the
  // error (a MatrixError, say) with an empty Sent, on the thread that led the group. No thread
  // is held per send while the write waits for its group: a bridge's burst of sends needs none.
  using SendDone = std::function<void(Sent, std::exception_ptr)>;
  void send_once_async(NewEvent e, ClientTxn txn, SendDone done);

private:
  class StoredRoom;  // room::RoomStateView over the database and the DAG cache
  storage::events::StoredEvent append(storage::Connection& c, const NewEvent& e);
  // send_once's write: the earlier event when `txn` was sent before (nothing appended), else
  // appends `e` and records the transaction. The check is inside the write only: a separate read
  // first would cost every send.
  static std::optional<storage::events::StoredEvent> append_once(Batch& b, const NewEvent& e, const ClientTxn& txn);
  void announce(const std::vector<storage::events::StoredEvent>& events);

  // What building an event needs of an earlier one: its depth (as a prev event) and, for the
  // state types the auth rules consult, the fields they read (as an auth event). Whole events are
  // never kept: 20,000 cached 60 KB messages once held 1.2 GiB.
  struct DagEvent {
    int64_t depth = 0;
    boost::json::object auth_fields;  // empty for types the auth rules never read
    size_t bytes = 0;                 // estimated heap held, for the byte budget
  };
  // A PDU never changes once stored (redaction is recorded beside it), so caching by event ID is
  // safe. Only ids read from the database are looked up, so an event of a rolled-back write is
  // never referenced. LRU within kDagCacheBytes.
  std::shared_ptr<const DagEvent> dag_event(storage::Connection& c, const std::string& event_id);
  std::shared_ptr<const DagEvent> remember_dag_event(const storage::events::StoredEvent& e);
  static constexpr size_t kDagCacheBytes = 32u << 20;

  // The forwarder, when set and the room is another writer's.
  EventForwarder* forwarder_for(const std::string& room_id) const;

  const config::Config& cfg_;
  storage::Database& db_;
  Notifier& notifier_;
  const core::SigningKey& key_;
  std::unique_ptr<EventForwarder> forwarder_;
  std::mutex dag_cache_mu_;
  std::list<std::string> dag_lru_;  // most recently used first
  std::unordered_map<std::string, std::pair<std::shared_ptr<const DagEvent>, std::list<std::string>::iterator>>
      dag_cache_;
  size_t dag_cache_bytes_ = 0;
};

}  // namespace trestle::service
