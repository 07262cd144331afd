#pragma once
// The deprecated client API that old clients and SyTest still use (Matrix r0; Synapse's
// handlers/events.py and initial_sync.py): the `/events` long-poll stream, `/initialSync`,
// `/rooms/{roomId}/initialSync`, and MSC2753 `/peek`. Built on the same stream positions,
// tokens (SyncToken) and notifier as /sync.
#include "service/notifier.hpp"
#include "service/requester.hpp"
#include "service/sync_result.hpp"
#include "storage/database.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace trestle::service {

class UserDataService;
class PresenceTracker;

struct EventStreamRequest {
  std::optional<std::string> from;     // a token from an earlier answer's `end`; none: from now
  int64_t timeout_ms = 30000;          // Synapse's default
  std::optional<std::string> room_id;  // only this room (peeking when not joined)
  int64_t limit = 10;
};

class LegacyService {
public:
  LegacyService(storage::Database& db, Notifier& notifier, UserDataService& user_data, PresenceTracker& presence);

  // GET /events: `{chunk, start, end}`, at once when something happened since `from`, else a
  // SyncWait until something does or the timeout passes. 400 for a bad token, 403 for a room
  // the user is not in and cannot peek (not world_readable).
  SyncResult events(const Requester& r, const EventStreamRequest& req);
  // GET /initialSync: every room the user is invited to or joined (and left, with `archived`).
  boost::json::object initial_sync(const Requester& r, int64_t limit, bool archived);
  // GET /rooms/{roomId}/initialSync: a joined room, a departed room as it was when the user left
  // (SPEC-216), or a world_readable room for anyone. 403 otherwise (also for unknown rooms).
  boost::json::object room_initial_sync(const Requester& r, const std::string& room_id, int64_t limit);

  // A user's presence changed (PresenceTracker's listener, wired by Homeserver): /events
  // streams it to whoever shares a room with them.
  void on_presence(const std::string& user_id);

  // MSC2753 peeking: POST /peek/{roomId} makes this device's /sync show the room under
  // rooms.peek (403 unless world_readable); POST /rooms/{roomId}/unpeek stops it.
  void peek(const Requester& r, const std::string& room_id);
  void unpeek(const Requester& r, const std::string& room_id);
  // The `rooms.peek` part of /sync for the requester's device: a room peeked after `since` (or
  // on an initial sync) in full, others with their events since `since`. Adds the rooms to
  // `wake_keys`.
  boost::json::object sync_peeks(const Requester& r, std::optional<int64_t> since, int64_t now,
                                 int64_t timeline_limit, std::vector<std::string>& wake_keys);

private:
  boost::json::object compute_events(const Requester& r, const EventStreamRequest& req,
                                     std::vector<std::string>& wake_keys, bool& empty);
  boost::json::object presence_event(const std::string& user_id) const;
  // /events tokens: a sync token and the presence serial, "s<pos>_<typing>_<pos>_p<serial>".
  std::string token_str(int64_t position, uint64_t typing, uint64_t presence) const;
  uint64_t presence_serial() const;

  storage::Database& db_;
  Notifier& notifier_;
  UserDataService& user_data_;
  PresenceTracker& presence_;
  // Presence is in memory, like PresenceTracker: a serial and each user's last change.
  mutable std::mutex presence_mu_;
  uint64_t presence_serial_ = 0;
  std::unordered_map<std::string, uint64_t> presence_changed_;
};

}  // namespace trestle::service
