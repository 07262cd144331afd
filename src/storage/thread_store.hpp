#pragma once
// Threaded read receipts and per-thread notification counts (task threadrx). The queries that
// need to know which thread an event or notification is in; the thread itself is derived from the
// event's content by service/threads.
#include "storage/database.hpp"

#include <optional>
#include <string>
#include <vector>

namespace trestle::storage::threads {

// A user's read receipt (m.read or m.read.private) in one thread ('' = unthreaded, "main" or a
// thread root) and the stream position of the event it points at (the later of the two types).
struct ReadPosition {
  std::string thread_id;
  int64_t stream_ordering = 0;
};
std::vector<ReadPosition> read_positions(Connection& c, const std::string& room_id, const std::string& user_id);

// The event a user's receipt of `receipt_type` in `thread_id` ('' = unthreaded) points at.
std::optional<std::string> receipt_event(Connection& c, const std::string& room_id, const std::string& receipt_type,
                                         const std::string& user_id, const std::string& thread_id);

}  // namespace trestle::storage::threads
