#pragma once
// Membership: join (by ID or alias), knock, invite, leave, kick, ban, unban, forget; guest access;
// the invite permission of v1.18; a profile change carried into the user's rooms.
#include "config/config.hpp"
#include "service/requester.hpp"
#include "storage/database.hpp"

#include <boost/json/object.hpp>
#include <optional>
#include <string>

namespace trestle::service {

class AccountService;
class AppServiceQueries;
class EventWriter;
class RoomDirectory;
class RoomHistory;

class MembershipService {
public:
  MembershipService(const config::Config& cfg, storage::Database& db, EventWriter& writer, AccountService& accounts,
                    RoomDirectory& directory, RoomHistory& history)
      : cfg_(cfg), db_(db), writer_(writer), accounts_(accounts), directory_(directory), history_(history) {}

  // join takes a room id or alias and returns the room id. `extra` (the request body's other
  // keys) goes into the member event as Synapse does; the server's own keys (membership, and the
  // profile unless given) are set over it.
  std::string join(const Requester& r, const std::string& room_id_or_alias, const std::optional<std::string>& reason,
                   const boost::json::object& extra = {});
  // POST /knock/{roomIdOrAlias}: the knock membership; returns the room id.
  std::string knock(const Requester& r, const std::string& room_id_or_alias, const std::optional<std::string>& reason);
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

  // Invite permission (v1.18): 403 M_INVITE_BLOCKED when `target` blocks invites.
  void check_invite_permission(const std::string& target);
  // Guest access: 403 M_GUEST_ACCESS_FORBIDDEN for a guest unless the room's m.room.guest_access
  // is can_join (nothing for other users).
  void check_guest_may_join(const Requester& r, const std::string& room_id);
  // Makes every joined guest of the room leave (guest_access no longer can_join).
  void kick_guests(const std::string& room_id);

  // Unknown invitees in an appservice's namespace are asked about before a 404.
  void set_appservice_queries(const AppServiceQueries* q) { appservice_queries_ = q; }

private:
  // The member event that invite/leave/kick/ban/unban/join send.
  void change_membership(const Requester& r, const std::string& room_id, const std::string& target,
                         const std::string& membership, const std::optional<std::string>& reason,
                         bool is_direct = false, const boost::json::object& extra = {});

  const config::Config& cfg_;
  storage::Database& db_;
  EventWriter& writer_;
  AccountService& accounts_;
  RoomDirectory& directory_;
  RoomHistory& history_;
  const AppServiceQueries* appservice_queries_ = nullptr;
};

}  // namespace trestle::service
