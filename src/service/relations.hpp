#pragma once
// Event relationships (spec: client-server-api "Forming relationships between events", threading,
// event replacements, reference relations, annotations; relations.yaml, threads_list.yaml):
// recording each child event, the rules checked when a client sends one, /relations, /threads,
// and the bundled aggregations (unsigned.m.relations) served with events.
#include "service/event_format.hpp"
#include "service/requester.hpp"
#include "storage/database.hpp"
#include "storage/event_store.hpp"

#include <boost/json/object.hpp>
#include <optional>
#include <string>

namespace trestle::service {

// content.m.relates_to when it has a string rel_type and event_id (else none: rich replies and
// malformed relations are not relationships).
struct RelatesTo {
  std::string rel_type;
  std::string event_id;
  std::optional<std::string> key;  // m.annotation
};
std::optional<RelatesTo> parse_relates_to(const boost::json::object& pdu);

// The spec's "Validity of replacement events": same room, sender and type, neither a state event,
// the original not itself an edit, the edit relating to it with m.replace and (unless encrypted)
// carrying m.new_content.
bool is_valid_replacement(const storage::events::StoredEvent& original, const storage::events::StoredEvent& edit);

// Before a local event is stored: 400 for a relation to an event of another room or to one the
// server does not know of (unless others already relate to it), M_DUPLICATE_ANNOTATION for a
// second identical reaction, and M_UNKNOWN for a thread started off an event that has a relation.
void check_new_relation(storage::Connection& c, const std::string& room_id, const std::string& sender,
                        const std::string& type, const boost::json::object& pdu);
// After it is stored: its row in event_relations. On redaction: removed.
void record_relation(storage::Connection& c, const storage::events::StoredEvent& e);
void forget_relation(storage::Connection& c, const std::string& redacted_event_id);

// unsigned.m.relations for `e` served to opts.viewer_user_id: m.thread, m.replace, m.reference.
// Nothing for state events, redacted events, edits and annotations; costs one indexed read for
// an event nothing relates to.
void add_bundled_aggregations(const storage::events::StoredEvent& e, storage::Connection& c,
                              const ClientEventOptions& opts, boost::json::object& unsigned_obj);

// RoomEventFilter's related_by_rel_types / related_by_senders (spec v1.4): only events that some
// child relates to with one of those rel_types / from one of those senders. True when the filter
// has neither.
bool related_by_matches(storage::Connection& c, const boost::json::object& filter,
                        const storage::events::StoredEvent& e);

struct RelationsQuery {
  std::optional<std::string> rel_type;
  std::optional<std::string> event_type;
  std::optional<std::string> from;
  std::optional<std::string> to;
  std::string dir = "b";
  std::optional<int64_t> limit;
  bool recurse = false;
};

class RelationService {
public:
  explicit RelationService(storage::Database& db) : db_(db) {}
  // GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]
  boost::json::object relations(const Requester& r, const std::string& room_id, const std::string& event_id,
                                const RelationsQuery& q);
  // GET /rooms/{roomId}/threads
  boost::json::object threads(const Requester& r, const std::string& room_id, const std::string& include,
                              const std::optional<std::string>& from, std::optional<int64_t> limit);

  static constexpr int64_t kDefaultLimit = 5;  // as Synapse, for both
  static constexpr int64_t kMaxRelationsLimit = 1000;
  static constexpr int64_t kMaxThreadsLimit = 100;
  static constexpr int kRecursionDepth = 3;

private:
  storage::Database& db_;
};

}  // namespace trestle::service
