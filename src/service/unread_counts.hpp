#pragma once
// Unread notification counts for /sync: the events after a user's read receipt (or their own last
// message) that the user's push rules say notify or highlight. Counting from the receipt on every
// sync would re-evaluate the same events each time, so each (user, room) keeps its running count
// and only the events since the last count are evaluated. The cache is memory only: after a
// restart the first sync recounts from the receipt.
//
// Threads (task threadrx): each event counts in its thread ("main" or its thread root, see
// service/threads) and is read when at or before the later of the user's unthreaded receipt and
// their receipt in that thread. The user's own message reads its thread (in the main timeline:
// the whole room, as an unthreaded receipt would).
#include "service/threads.hpp"
#include "storage/database.hpp"

#include <boost/json/object.hpp>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace trestle::service {

struct UnreadCounts {
  int64_t notifications = 0;
  int64_t highlights = 0;
};

// The counts of one room: by thread ("main" and thread roots; threads at 0 left out) and summed.
struct ThreadedUnreadCounts {
  UnreadCounts total;
  UnreadCounts main;
  std::map<std::string, UnreadCounts> threads;  // thread root -> counts, only non-zero
};

class UnreadCounter {
public:
  static constexpr int64_t kMaxScan = 1000;  // bound the work of one count

  // Whether the push evaluator's stored decisions (storage/push_store) hold the user's
  // notifications; it skips users an appservice owns exclusively, whose events are evaluated
  // here. Unset: they hold everyone's.
  void set_rows_apply(std::function<bool(const std::string&)> f) { rows_apply_ = std::move(f); }

  // `member_event_id` is the user's membership event (for the display name), `push_rules` gives the
  // user's "global" ruleset, `upto` the sync's stream position.
  ThreadedUnreadCounts count(storage::Connection& c, const std::string& user_id, const std::string& room_id,
                             const std::string& member_event_id,
                             const std::function<const boost::json::object&()>& push_rules,
                             int64_t upto);

private:
  struct Unread {
    int64_t stream_ordering = 0;
    bool highlight = false;
  };
  // Receipts only move forward, so when they move the cached counts are pruned (the unread
  // events at or before a thread's new read position drop out) instead of recounted from the
  // unthreaded receipt, which for a client sending only threaded receipts is the room's start.
  struct Entry {
    threads::ReadPositions read;  // the receipts the counts start after
    int64_t counted_upto = 0;
    std::map<std::string, std::vector<Unread>> unread;  // by thread ("main" or a root), oldest first
    size_t size() const;
  };
  static constexpr size_t kMaxCachedUnread = 4'000'000;  // bound the cache's memory (~64 MB)
  // Reads the stored decisions of the events in (entry.counted_upto, upto] into `entry`, at most
  // kMaxScan; false when it stopped at the bound.
  bool count_stored(storage::Connection& c, const std::string& user_id, const std::string& room_id, Entry& entry,
                    int64_t upto);

  std::function<bool(const std::string&)> rows_apply_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> cache_;
  size_t cached_unread_ = 0;
};

}  // namespace trestle::service
