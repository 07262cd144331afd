#pragma once
// Event relationships (spec: client-server-api "Forming relationships between events"): one row
// per child event whose content.m.relates_to has a rel_type and an event_id.
#include "storage/database.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace trestle::storage::relations {

struct Relation {
  std::string event_id;     // the child
  std::string room_id;
  std::string relates_to;   // the parent
  std::string rel_type;
  std::string type;         // the child's event type
  std::string sender;
  std::optional<std::string> aggregation_key;  // m.annotation's `key`
  int64_t stream_ordering = 0;
};

void insert(Connection& c, const Relation& r);
// The event was redacted: it relates to nothing any more.
void remove(Connection& c, const std::string& event_id);
// Whether any event relates to `event_id`.
bool is_parent(Connection& c, const std::string& event_id);
// Whether the user already annotated the event with this type and key.
bool has_annotation(Connection& c, const std::string& parent, const std::string& sender, const std::string& type,
                    const std::string& key);

// The children of `parent` (and, with depth > 0, their children down to that many more levels)
// within lower_exclusive < stream_ordering <= upper_inclusive, newest first (`backwards`) or
// oldest first, at most `limit`, optionally only of one rel_type / event type.
std::vector<Relation> children(Connection& c, const std::string& parent, const std::optional<std::string>& rel_type,
                               const std::optional<std::string>& event_type, int64_t lower_exclusive,
                               int64_t upper_inclusive, bool backwards, int64_t limit, int depth = 0);

// Per rel_type, how many children the event has (only the rel_types listed): one indexed read,
// empty for the common event nobody relates to.
struct RelTypeCount {
  std::string rel_type;
  int64_t count = 0;
};
std::vector<RelTypeCount> aggregatable_counts(Connection& c, const std::string& parent);

// The m.thread replies of a root, per sender: how many and the newest one's stream position.
struct SenderSummary {
  std::string sender;
  int64_t count = 0;
  int64_t latest_stream = 0;
};
std::vector<SenderSummary> thread_senders(Connection& c, const std::string& root);
// The newest m.thread reply of a root not sent by any of `excluded` (at most 1000 tried).
std::optional<std::string> latest_thread_reply(Connection& c, const std::string& root,
                                               const std::vector<std::string>& excluded);

// Candidate edits of an event: m.replace children by `sender` of `type`, the most recent first
// (origin_server_ts, then event_id), at most `limit`.
std::vector<std::string> replacements(Connection& c, const std::string& parent, const std::string& sender,
                                      const std::string& type, int64_t limit);
// m.reference children in stream order (event ID, sender), at most `limit`.
std::vector<std::pair<std::string, std::string>> references(Connection& c, const std::string& parent, int64_t limit);

// Thread roots of a room ordered by their newest reply at or before `upto`, only those whose
// newest reply is before `before_exclusive`; with `participant`, only threads that user started or
// replied to. Returns (root event ID, newest reply's stream position).
struct ThreadRow {
  std::string root;
  int64_t latest_stream = 0;
};
std::vector<ThreadRow> threads(Connection& c, const std::string& room_id, int64_t upto, int64_t before_exclusive,
                               const std::optional<std::string>& participant, int64_t limit);

// Among `event_ids`, those with a child matching the rel_types / senders lists (an empty list
// matches anything): RoomEventFilter's related_by_rel_types and related_by_senders.
bool has_child_matching(Connection& c, const std::string& parent, const std::vector<std::string>& rel_types,
                        const std::vector<std::string>& senders);

}  // namespace trestle::storage::relations
