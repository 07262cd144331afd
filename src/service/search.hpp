#pragma once
// Server-side search (spec: client-server-api modules/search, search.yaml): POST /search over the
// room events a user may read, from the full-text index in storage/search_store.
#include "service/requester.hpp"
#include "storage/database.hpp"

#include <boost/json/object.hpp>
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace trestle::service {

// The user's search text as a safe FTS5 expression, with the syntax Synapse gives its SQLite
// search: words (letters, digits, '_', '-') are ANDed, "double quotes" make a phrase, `or` between
// two words is OR, a leading '-' excludes a word; a few stop words are skipped; no prefix
// matching or stemming. Every word and phrase is quoted, so FTS syntax in the text (`AND`, `(`,
// `*`, `NEAR`, column filters) is only ever searched for, never run. nullopt when nothing is left
// to search for (no words, or only excluded ones).
std::optional<std::string> fts_query(const std::string& term);

// The opaque next_batch token: which ordering, which group it pages (all results or one room),
// and where the next page starts (a row offset for rank, a stream position for recent).
struct SearchBatch {
  std::string order;      // "rank" or "recent"
  std::string group;      // "all" or "room_id"
  std::string group_key;  // the room ID for "room_id"
  int64_t cursor = 0;
};
std::string encode_search_batch(const SearchBatch& b);
std::optional<SearchBatch> decode_search_batch(const std::string& token);

// Events are indexed in batches (storage/search_store index_upto), not in the group that writes
// them: a write group hook indexes the pending ones once kIndexBatch stream positions are past the
// indexed position, and a search first indexes what is still pending (a write), so results are
// exact. The position is stored: after a restart the next batch or search catches up.
class SearchService {
public:
  static constexpr int64_t kIndexBatch = 256;   // stream positions per batch (one FTS5 segment)
  static constexpr int64_t kMaxHookBatch = 8192;  // at most this many per group (a long backlog)

  explicit SearchService(storage::Database& db);
  ~SearchService();
  SearchService(const SearchService&) = delete;
  SearchService& operator=(const SearchService&) = delete;

  // Indexes everything committed so far that is not yet (a write, when anything is pending);
  // returns the position up to which the index is then complete.
  int64_t catch_up();

  // The body's search_categories (validated against the spec's schema before) and the next_batch
  // query parameter; returns the response body. 400 for bad parameters or tokens.
  boost::json::object search(const Requester& r, const boost::json::object& body,
                             const std::optional<std::string>& next_batch);

private:
  storage::Database& db_;
  // Committed indexed_upto (or below it: that only costs a write); -1 until a group reads it.
  std::atomic<int64_t> indexed_{-1};
  int64_t hook_indexed_ = 0;         // what the running group's hook indexed up to (writer thread)
  int hook_ = 0;
};

}  // namespace trestle::service
