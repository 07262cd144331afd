#pragma once
// Events (PDUs), current room state, memberships, forward extremities and send transactions.
#include "storage/database.hpp"

#include <boost/json/object.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace trestle::storage::events {

struct StoredEvent {
  int64_t stream_ordering = 0;
  std::string event_id;
  std::string room_id;
  std::string type;
  std::optional<std::string> state_key;
  std::string sender;
  int64_t origin_server_ts = 0;
  int64_t depth = 0;
  boost::json::object pdu;
  std::optional<std::string> replaces_state;
  std::optional<std::string> redacted_by;
  std::optional<std::string> txn_id;
  std::optional<std::string> txn_device_id;
};

struct StateEntry {
  std::string type;
  std::string state_key;
  std::string event_id;
};

struct Membership {
  std::string room_id;
  std::string user_id;
  std::string membership;
  std::string event_id;
  int64_t stream_ordering = 0;
  bool forgotten = false;
};

void insert_event(Connection& c, const StoredEvent& e);
// The same, with e.pdu already serialised by the caller (the event writer has it for the size check).
void insert_event(Connection& c, const StoredEvent& e, std::string_view pdu_json);
// Rows whose stored JSON cannot be read are left out (logged), unless redacted: then their PDU is
// rebuilt from the columns with empty content.
std::optional<StoredEvent> get_event(Connection& c, const std::string& event_id);
// The columns without the PDU (`pdu` stays empty): cheap, and works for unreadable rows too.
std::optional<StoredEvent> get_event_header(Connection& c, const std::string& event_id);
std::vector<StoredEvent> get_events(Connection& c, const std::vector<std::string>& event_ids);
// Events of every room with after < stream_ordering <= upto, oldest first, at most `limit`.
std::vector<StoredEvent> events_in_stream_range(Connection& c, int64_t after, int64_t upto, int64_t limit);
// The same for readers that must never stop at one row (the appservice sender): a row whose
// stored JSON does not parse comes back without `event`, with `error` saying why.
struct StreamRow {
  int64_t stream_ordering = 0;
  std::string event_id;
  std::optional<StoredEvent> event;
  std::string error;
};
std::vector<StreamRow> stream_rows(Connection& c, int64_t after, int64_t upto, int64_t limit);
void mark_redacted(Connection& c, const std::string& event_id, const std::string& redaction_id);

std::vector<StateEntry> current_state(Connection& c, const std::string& room_id);
// The room's state as of stream position `at`: for each (type, state_key) the latest state event
// at or before it. Every state event we store becomes current state, so this is exact.
std::vector<StateEntry> state_at(Connection& c, const std::string& room_id, int64_t at);
// The content of the (type, state_key) state event in force just before stream position `before`
// (nullopt when there was none), without loading the whole state.
std::optional<boost::json::object> state_content_before(Connection& c, const std::string& room_id,
                                                        const std::string& type, const std::string& state_key,
                                                        int64_t before);
// The ID of the (type, state_key) state event in force just before stream position `before`.
std::optional<std::string> state_event_id_before(Connection& c, const std::string& room_id, const std::string& type,
                                                 const std::string& state_key, int64_t before);
std::optional<std::string> current_state_event_id(Connection& c, const std::string& room_id,
                                                  const std::string& type, const std::string& state_key);
void set_current_state(Connection& c, const std::string& room_id, const std::string& type,
                       const std::string& state_key, const std::string& event_id);

std::vector<std::string> forward_extremities(Connection& c, const std::string& room_id);
void set_forward_extremity(Connection& c, const std::string& room_id, const std::string& event_id);

void upsert_membership(Connection& c, const Membership& m);
std::optional<Membership> get_membership(Connection& c, const std::string& room_id, const std::string& user_id);
// Rooms of the user with the given membership ("join", "invite", ...).
std::vector<std::string> rooms_for_user(Connection& c, const std::string& user_id, const std::string& membership);
// Every membership row of the user (all states), for sync.
std::vector<Membership> memberships_of_user(Connection& c, const std::string& user_id);
std::vector<Membership> members_of_room(Connection& c, const std::string& room_id);
void set_forgotten(Connection& c, const std::string& room_id, const std::string& user_id);
int64_t joined_member_count(Connection& c, const std::string& room_id);

std::optional<std::string> txn_event(Connection& c, const std::string& user_id, const std::string& device_id,
                                     const std::string& txn_id);
void insert_txn(Connection& c, const std::string& user_id, const std::string& device_id, const std::string& txn_id,
                const std::string& event_id);

// Events of a room with from < stream_ordering <= to, newest first, at most `limit`.
std::vector<StoredEvent> room_events_backwards(Connection& c, const std::string& room_id, int64_t from_exclusive,
                                               int64_t to_inclusive, int64_t limit);
// Events of a room with from <= stream_ordering < to... oldest first (for forward pagination):
// from_exclusive < stream_ordering <= to_inclusive, at most `limit`.
std::vector<StoredEvent> room_events_forwards(Connection& c, const std::string& room_id, int64_t from_exclusive,
                                              int64_t to_inclusive, int64_t limit);
// Rooms among `room_ids` that have any event with stream_ordering > since.
int64_t latest_stream_in_room(Connection& c, const std::string& room_id);

}  // namespace trestle::storage::events
