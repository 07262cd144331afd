#pragma once
// Rooms: creating them, building signed and authorised events, membership, state, redaction,
// aliases, the directory, and reading history (/messages, /context, /event).
#include "config/config.hpp"
#include "core/crypto.hpp"
#include "room/auth_rules.hpp"
#include "service/notifier.hpp"
#include "service/rate_limiter.hpp"
#include "service/requester.hpp"
#include "service/visibility.hpp"
#include "storage/database.hpp"
#include "storage/event_store.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <string>

namespace trestle::service {

class AccountService;
class AppServiceQueries;

// What one new event is, before the server fills in the DAG fields.
struct NewEvent {
  std::string room_id;
  std::string sender;
  std::string type;
  std::optional<std::string> state_key;
  boost::json::object content;
  std::optional<std::string> redacts;
  std::optional<int64_t> origin_server_ts;  // timestamp massaging; now if unset
  std::optional<std::string> txn_id;        // recorded so the sender's device sees its echo
  std::optional<std::string> txn_device_id;
};

// Which directory /publicRooms lists: the server's own, plus all appservice networks
// (include_all_networks), or one network's ("<appservice id>|<network id>").
struct DirectoryScope {
  bool include_all_networks = false;
  std::optional<std::string> third_party_instance_id;
};

// Pagination position: a token names the stream position after which reading continues.
int64_t parse_stream_token(const std::string& token);  // 400 M_INVALID_PARAM when malformed

class RoomService {
public:
  RoomService(const config::Config& cfg, storage::Database& db, Notifier& notifier, const core::SigningKey& key,
              AccountService& accounts);

  // POST /createRoom. Returns the room id (`room_id` when given: a room upgrade names it first).
  std::string create_room(const Requester& r, const boost::json::object& body,
                          const std::optional<std::string>& room_id = std::nullopt);

  // Builds, authorises (403 M_FORBIDDEN with the auth rule's reason), stores and announces an event.
  storage::events::StoredEvent send_event(const NewEvent& e);
  // Same for several events of one room in one transaction (room creation).
  std::vector<storage::events::StoredEvent> send_events(const std::vector<NewEvent>& events);

  // PUT /send/{type}/{txnId}: idempotent per (user, device, txnId).
  std::string send_message(const Requester& r, const std::string& room_id, const std::string& type,
                           const std::string& txn_id, const boost::json::object& content,
                           std::optional<int64_t> ts);
  std::string set_state(const Requester& r, const std::string& room_id, const std::string& type,
                        const std::string& state_key, const boost::json::object& content, std::optional<int64_t> ts);
  std::string redact(const Requester& r, const std::string& room_id, const std::string& event_id,
                     const std::string& txn_id, const std::optional<std::string>& reason);

  // Membership. join takes a room id or alias and returns the room id.
  // `extra` (the request body's other keys) goes into the member event as Synapse does; the
  // server's own keys (membership, and the profile unless given) are set over it.
  std::string join(const Requester& r, const std::string& room_id_or_alias, const std::optional<std::string>& reason,
                   const boost::json::object& extra = {});
  // POST /knock/{roomIdOrAlias}: the knock membership; returns the room id.
  std::string knock(const Requester& r, const std::string& room_id_or_alias, const std::optional<std::string>& reason);
  // Invite permission (v1.18): 403 M_INVITE_BLOCKED when `target` blocks invites.
  void check_invite_permission(const std::string& target);
  void invite(const Requester& r, const std::string& room_id, const std::string& target,
              const std::optional<std::string>& reason, bool is_direct = false);
  void leave(const Requester& r, const std::string& room_id, const std::optional<std::string>& reason);
  void kick(const Requester& r, const std::string& room_id, const std::string& target,
            const std::optional<std::string>& reason);
  void ban(const Requester& r, const std::string& room_id, const std::string& target,
           const std::optional<std::string>& reason);
  void unban(const Requester& r, const std::string& room_id, const std::string& target,
             const std::optional<std::string>& reason);
  void forget(const Requester& r, const std::string& room_id);
  // Re-sends the user's join events with a new display name / avatar after a profile change.
  void update_profile_in_rooms(const std::string& user_id);

  boost::json::array joined_rooms(const std::string& user_id);
  boost::json::object joined_members(const Requester& r, const std::string& room_id);
  boost::json::array members(const Requester& r, const std::string& room_id,
                             const std::optional<std::string>& membership,
                             const std::optional<std::string>& not_membership);
  boost::json::array state(const Requester& r, const std::string& room_id);
  // The content (or, with `full_event`, the whole event) of one state event: 404 M_NOT_FOUND.
  boost::json::object state_event(const Requester& r, const std::string& room_id, const std::string& type,
                                  const std::string& state_key, bool full_event);
  boost::json::object event(const Requester& r, const std::string& room_id, const std::string& event_id);
  boost::json::object messages(const Requester& r, const std::string& room_id, const std::optional<std::string>& from,
                               const std::optional<std::string>& to, const std::string& dir, int64_t limit,
                               const boost::json::object& filter);
  boost::json::object context(const Requester& r, const std::string& room_id, const std::string& event_id,
                              int64_t limit, const boost::json::object& filter);

  // Aliases and directory.
  void create_alias(const Requester& r, const std::string& alias, const std::string& room_id);
  boost::json::object resolve_alias(const std::string& alias);
  // A room ID as given, or the room an alias names; 400 M_INVALID_PARAM for neither.
  std::string resolve_room_id_or_alias(const std::string& room_id_or_alias);
  void delete_alias(const Requester& r, const std::string& alias);
  boost::json::array room_aliases(const Requester& r, const std::string& room_id);
  boost::json::object public_rooms(int64_t limit, const std::optional<std::string>& since,
                                   const std::optional<std::string>& search, const DirectoryScope& scope = {});
  std::string room_visibility(const std::string& room_id);
  void set_room_visibility(const Requester& r, const std::string& room_id, const std::string& visibility);
  // PUT /directory/list/appservice/{networkId}/{roomId}: the appservice publishes a bridged room.
  void set_appservice_room_visibility(const std::string& appservice_id, const std::string& network_id,
                                      const std::string& room_id, const std::string& visibility);

  // Guest access: 403 M_GUEST_ACCESS_FORBIDDEN for a guest unless the room's m.room.guest_access
  // is can_join (nothing for other users).
  void check_guest_may_join(const Requester& r, const std::string& room_id);
  // The content of a current state event, if the room has it.
  std::optional<boost::json::object> current_state_content(const std::string& room_id, const std::string& type,
                                                           const std::string& state_key);

  // The current state event (whole PDU) of this type and key, whoever asks (server-side use).
  std::optional<boost::json::object> current_state_pdu(const std::string& room_id, const std::string& type,
                                                       const std::string& state_key);
  // Whether `user_id` is joined to the room (used by ephemeral endpoints).
  bool is_joined(const std::string& room_id, const std::string& user_id);
  // 403 unless joined; 404 for unknown rooms is not revealed (also 403), like Synapse.
  void require_joined(const Requester& r, const std::string& room_id);

  RateLimiter& message_limiter() { return message_limiter_; }
  // Unknown users and aliases in an appservice's namespace are asked about before a 404.
  void set_appservice_queries(const AppServiceQueries* q) { appservice_queries_ = q; }

private:
  // Inside a write transaction: build, authorise, store one event.
  storage::events::StoredEvent build_and_store(storage::Connection& c, const NewEvent& e);
  // Membership change helper shared by invite/leave/kick/ban/unban/join.
  void change_membership(const Requester& r, const std::string& room_id, const std::string& target,
                         const std::string& membership, const std::optional<std::string>& reason,
                         bool is_direct = false, const boost::json::object& extra = {});
  // What the requester may read of the room (room_read_access in visibility.hpp), or 403.
  RoomReadAccess read_access(storage::Connection& c, const Requester& r, const std::string& room_id);
  room::StateMap state_map(storage::Connection& c, const std::string& room_id);
  // What building an event needs of an earlier one: its depth (as a prev event) and, for the
  // state types the auth rules consult, the fields they read (as an auth event). Whole events are
  // never kept: 20,000 cached 60 KB messages once held 1.2 GiB.
  struct DagEvent {
    int64_t depth = 0;
    boost::json::object auth_pdu;  // room_id, sender, type, state_key, content; empty for others
    size_t bytes = 0;              // estimated heap held, for the byte budget
  };
  // A PDU never changes once stored (redaction is recorded beside it), so caching by event ID is
  // safe. Only ids read from the database are looked up, so an event of a rolled-back write is
  // never referenced. LRU within kDagCacheBytes.
  std::shared_ptr<const DagEvent> dag_event(storage::Connection& c, const std::string& event_id);
  std::shared_ptr<const DagEvent> remember_dag_event(const storage::events::StoredEvent& e);
  static constexpr size_t kDagCacheBytes = 32u << 20;
  void announce(const std::vector<storage::events::StoredEvent>& events);
  // Makes every joined guest of the room leave (guest_access no longer can_join).
  void kick_guests(const std::string& room_id);
  void remove_from_canonical_alias(const Requester& r, const std::string& room_id, const std::string& alias);

  const config::Config& cfg_;
  storage::Database& db_;
  Notifier& notifier_;
  const core::SigningKey& key_;
  AccountService& accounts_;
  RateLimiter message_limiter_;
  const AppServiceQueries* appservice_queries_ = nullptr;
  std::mutex dag_cache_mu_;
  std::list<std::string> dag_lru_;  // most recently used first
  std::unordered_map<std::string, std::pair<std::shared_ptr<const DagEvent>, std::list<std::string>::iterator>>
      dag_cache_;
  size_t dag_cache_bytes_ = 0;
};

}  // namespace trestle::service
