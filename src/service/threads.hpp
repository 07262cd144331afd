#pragma once
// Threads for read receipts and notification counts (spec: client-server-api "Threading",
// "Threaded read receipts"). An event is in a thread when its content.m.relates_to has rel_type
// m.thread (the relation's event_id is the thread root), or when following its relations (at most
// 3 hops) reaches such an event. Everything else, thread roots included, is the main timeline,
// thread ID "main". Derived from event content alone: no relations table needed.
#include "storage/database.hpp"
#include "storage/event_store.hpp"

#include <boost/json/object.hpp>
#include <map>
#include <optional>
#include <string>

namespace trestle::service::threads {

inline constexpr const char* kMain = "main";
inline constexpr int kMaxHops = 3;

struct Relation {
  std::string rel_type;
  std::string event_id;
};
// content.m.relates_to's rel_type and event_id when both are strings (pure).
std::optional<Relation> relation_of(const boost::json::object& content);

// The thread of an event: a thread root's event ID, or "main".
std::string thread_of(storage::Connection& c, const storage::events::StoredEvent& e);

// A user's read positions in one room: the unthreaded receipt's stream position and each thread's
// ("main" or a root) threaded receipt position. An event of thread T is read when its position is
// at most max(unthreaded, thread[T]).
struct ReadPositions {
  int64_t unthreaded = 0;
  std::map<std::string, int64_t> thread;
  int64_t effective(const std::string& thread_id) const;
  bool operator==(const ReadPositions&) const = default;
};
ReadPositions read_positions(storage::Connection& c, const std::string& room_id, const std::string& user_id);

// Checks a receipt's thread_id as Synapse does: "main" needs an event of the main timeline; a
// thread root's ID needs an event in that thread or the root itself (when it has thread replies).
// Throws 400 M_INVALID_PARAM otherwise.
void check_receipt_thread(storage::Connection& c, const storage::events::StoredEvent& e, const std::string& thread_id);

}  // namespace trestle::service::threads
