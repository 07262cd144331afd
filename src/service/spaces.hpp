#pragma once
// Spaces (spec: client-server-api modules/spaces, space_hierarchy.yaml), room summaries
// (room_summary.yaml, MSC3266) and mutual rooms (mutual_rooms.yaml, MSC2666).
//
// Which rooms a user may see is Synapse's rule for room previews: a room whose join rule is public
// (or knock / knock_restricted where the room version has them), or whose history is
// world_readable, is visible to anyone; otherwise to a user who is joined or invited, or who is
// joined to one of the rooms a restricted join rule allows. Only rooms this server has are walked
// (there is no federation yet).
#include "service/requester.hpp"
#include "storage/database.hpp"

#include <boost/json/object.hpp>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace trestle::service {

struct Rooms;

// The `order` of an m.space.child is valid when it is a string of at most 50 characters, each in
// \x20..\x7E (spec: ordering of children within a space).
bool valid_space_child_order(const boost::json::value* order);
// An m.space.child names a child while its `via` is a non-empty list of strings.
bool valid_space_child_via(const boost::json::object& content);
// The spec's order of children: those with a valid `order` first, by it; then by the
// m.space.child's origin_server_ts; then by room ID (state key).
struct SpaceChildKey {
  std::optional<std::string> order;
  int64_t origin_server_ts = 0;
  std::string room_id;
};
bool space_child_before(const SpaceChildKey& a, const SpaceChildKey& b);

struct HierarchyQuery {
  bool suggested_only = false;
  std::optional<int64_t> max_depth;
  std::optional<int64_t> limit;
  std::optional<std::string> from;
};

class SpaceService {
public:
  SpaceService(storage::Database& db, Rooms& rooms);

  // GET /_matrix/client/v1/rooms/{roomId}/hierarchy: a depth-first walk over m.space.child from
  // the room, one page at a time. 403 M_FORBIDDEN when the room itself may not be seen; 400
  // M_INVALID_PARAM for a bad limit, max_depth or `from` token (unknown, expired, another user's,
  // or with other parameters than the first request).
  boost::json::object hierarchy(const Requester& r, const std::string& room_id, const HierarchyQuery& q);

  // GET /_matrix/client/v1/room_summary/{roomIdOrAlias} (and MSC3266's unstable paths, which add
  // the im.nheko.summary.* fields when `unstable`). The requester may be unauthenticated.
  // 404 M_NOT_FOUND for an unknown alias or room, or one the requester may not see.
  boost::json::object summary(const Requester& r, const std::string& room_id_or_alias, bool unstable);

  // GET /_matrix/client/v1/mutual_rooms: rooms both the requester and `user_id` are joined to,
  // by room ID, kMutualRoomsBatch a page; `from` is a previous answer's next_batch.
  boost::json::object mutual_rooms(const Requester& r, const std::optional<std::string>& user_id,
                                   const std::optional<std::string>& from);

  static constexpr int64_t kMaxLimit = 50;             // rooms in one hierarchy page (Synapse's MAX_ROOMS)
  static constexpr int64_t kMaxWorkPerPage = 5000;     // rooms looked at plus children read, for one page
  static constexpr int64_t kMaxVisitsPerWalk = 10000;  // rooms looked at over all pages of one walk
  static constexpr int64_t kMaxChildren = 1000;        // m.space.child events read of one space
  static constexpr size_t kMaxQueue = 20000;           // rooms waiting to be looked at
  static constexpr size_t kMaxSessions = 1000;         // hierarchy pagination tokens kept
  static constexpr size_t kMaxSessionEntries = 200000; // room IDs all kept tokens hold (~20 MB)
  static constexpr int64_t kSessionTtlMs = 5 * 60 * 1000;
  static constexpr int64_t kMutualRoomsBatch = 100;

private:
  struct QueueEntry {
    std::string room_id;
    int64_t depth = 0;
  };
  // Where a paginated walk stands, kept under its token.
  struct Session {
    std::string user_id;
    std::string room_id;
    bool suggested_only = false;
    std::optional<int64_t> max_depth;
    std::vector<QueueEntry> queue;  // a stack: the next room is at the back
    std::unordered_set<std::string> processed;
    int64_t expires_ms = 0;
    size_t entries() const { return queue.size() + processed.size(); }
  };

  std::optional<Session> find_session(const std::string& token);  // a token may be used again until it expires
  std::string store_session(Session s);

  storage::Database& db_;
  Rooms& rooms_;
  std::mutex mu_;
  std::unordered_map<std::string, Session> sessions_;
  size_t session_entries_ = 0;  // sum of entries() over sessions_
};

}  // namespace trestle::service
