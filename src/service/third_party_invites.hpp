#pragma once
// Third-party invites (spec: Client-Server "Third-party invites"): inviting someone by email
// address. The identity server the client names is asked who the address belongs to; a bound
// address invites that user, an unbound one is stored at the identity server and recorded in the
// room as an m.room.third_party_invite state event. When the address is bound later, the identity
// server calls /_matrix/federation/v1/3pid/onbind with the invites it holds, signed; each becomes
// the invitee's m.room.member invite carrying the signed block (sent as the original inviter,
// which the auth rules allow even after the inviter left).
#include "service/accounts.hpp"
#include "service/requester.hpp"
#include "service/rooms/rooms.hpp"
#include "service/threepid.hpp"

#include <boost/json/object.hpp>
#include <string>

namespace trestle::service {

class ThirdPartyInviteService {
public:
  ThirdPartyInviteService(const config::Config& cfg, Rooms& rooms, AccountService& accounts,
                          ThreepidService& threepids)
      : cfg_(cfg), rooms_(rooms), accounts_(accounts), threepids_(threepids) {}

  // POST /rooms/{roomId}/invite with id_server/id_access_token/medium/address, and each entry of
  // createRoom's invite_3pid. Calls the identity server: run it off the workers.
  void invite(const Requester& r, const std::string& room_id, const std::string& id_server,
              const std::string& id_access_token, const std::string& medium, const std::string& address);
  // One createRoom invite_3pid entry, validated (400 M_BAD_JSON / M_MISSING_PARAM), then invited.
  void invite_from_create(const Requester& r, const std::string& room_id, const boost::json::value& entry);
  // Checks createRoom's invite_3pid before the room is made: 400 when malformed.
  static void check_invite_3pid(const boost::json::value* list);
  // POST /_matrix/federation/v1/3pid/onbind. Each invite becomes an m.room.member invite when its
  // signature verifies with a key of the room's m.room.third_party_invite, the identity server
  // still vouches for that key (key_validity_url), and the auth rules allow it. Like Synapse,
  // every invite is tried and the last failure is the answer (403 for a bad or revoked key). The
  // number of invites sent.
  int on_bind(const boost::json::object& body);

private:
  // The power level check of the invite (and of m.room.third_party_invite) ahead of time.
  // One invite of onbind: true when sent, false when there was nothing to do; throws otherwise.
  bool exchange(const boost::json::value& invite);
  bool may_invite(const std::string& room_id, const std::string& user_id);
  const config::Config& cfg_;
  Rooms& rooms_;
  AccountService& accounts_;
  ThreepidService& threepids_;
};

}  // namespace trestle::service
