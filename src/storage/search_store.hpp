#pragma once
// The full-text index of room events for POST /search (spec: client-server-api modules/search):
// an SQLite FTS5 table, one row per searchable event, its rowid the event's stream position.
// Indexed, as Synapse does: content.body of m.room.message, content.name of m.room.name and
// content.topic of m.room.topic (when a string). Redacted events are removed.
//
// Besides the text (`value`), each row has a `tags` column of two tokens: "r" + hex(room_id) and
// "k" + the key's field ("kbody"), so that the room and key restrictions are part of the MATCH
// and run on the index alone: counting or paging a word found in most of 20,000 messages never
// reads those messages' rows.
//
// On PostgreSQL (Connection::dialect()) the same functions run on its own full-text search: a
// table keyed by stream_ordering with a generated tsvector (storage/postgres/schema.cpp), the
// FTS5 expression translated into a tsquery, ts_rank_cd for rank, ts_headline for the matched
// words; room and key are plain columns there (no tags). tests/unit/test_postgres.cpp runs one
// set of search checks on both engines.
#include "storage/database.hpp"
#include "storage/event_store.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace trestle::storage::search {

// The key ("content.body", ...) an event of `type` is searched by; nullptr if it is not indexed.
const char* key_for_type(const std::string& type);

// Adds `e` to the index when its type is indexed and the key's value is a string.
void index_event(Connection& c, const events::StoredEvent& e);
// Removes the event (once redacted). A no-op for events not indexed.
void unindex_event(Connection& c, const std::string& event_id);

// Events are indexed in batches, not in the group that writes them (each FTS5 insert run writes a
// segment of its own: one per group cost ~6 WAL pages a group). Every event at or below
// indexed_upto() that is searchable and was not redacted before it was indexed is in the index;
// the position is the stream_position row 'search' (on the page the group's 'global' row dirties).
int64_t indexed_upto(Connection& c);
// Indexes the events in (indexed_upto(), upto] that are searchable and not redacted now, and
// raises indexed_upto() to `upto` (never lowers it). Only inside a write. Returns indexed_upto().
int64_t index_upto(Connection& c, int64_t upto);

struct Match {
  int64_t stream_ordering = 0;
  std::string room_id;
  std::string key;
  std::string event_id;
  double rank = 0;  // higher is a better match (FTS5's bm25 over the text negated; PostgreSQL's ts_rank_cd)
};

enum class Order { rank, recent };

// How many of the newest matches order_by rank ranks (bm25 costs a row read per match).
constexpr int64_t kRankWindow = 2000;

// Rows matching `text_query` (an FTS5 expression over the text: build it with service::fts_query,
// user text must never reach MATCH unquoted) in one of `room_ids` and `keys`, best first (rank:
// among the newest kRankWindow matches) or newest first (recent). `offset` skips that many rows
// (rank paging); `below` keeps rows with stream_ordering < below (recent paging). `visit` returns
// false to stop. Nothing is visited when `room_ids` or `keys` is empty.
void for_each_match(Connection& c, const std::string& text_query, const std::vector<std::string>& room_ids,
                    const std::vector<std::string>& keys, Order order, int64_t offset, std::optional<int64_t> below,
                    const std::function<bool(const Match&)>& visit);

// How many rows match in `keys`, counting in each room of `upto_by_room` the rows at or below its
// position (a former member's leave).
int64_t count_matches(Connection& c, const std::string& text_query, const std::vector<std::string>& keys,
                      const std::map<std::string, int64_t>& upto_by_room);

// The matched words of the event at `stream_ordering` (FTS5 highlight()), as they appear in it.
std::vector<std::string> matched_terms(Connection& c, const std::string& text_query, int64_t stream_ordering);

}  // namespace trestle::storage::search
