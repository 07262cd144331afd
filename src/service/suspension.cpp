#include "service/suspension.hpp"

#include "core/error.hpp"
#include "storage/account_store.hpp"
#include "storage/event_store.hpp"

namespace trestle::service {

void check_suspended_sender(storage::Connection& c, const std::string& sender, const std::string& type,
                            const std::optional<std::string>& state_key, const boost::json::object& content,
                            const std::optional<std::string>& redacts) {
  if (!storage::accounts::is_suspended(c, sender)) return;
  if (type == "m.room.redaction") {
    // Own events only (an unknown target changes nothing either way).
    auto target = redacts ? storage::events::get_event_header(c, *redacts) : std::nullopt;
    if (target && target->sender != sender) {
      throw MatrixError(403, "M_USER_SUSPENDED", "You can only redact your own events while suspended.");
    }
    return;
  }
  if (type == "m.room.member" && state_key == sender) {
    auto* m = content.if_contains("membership");
    if (m && m->is_string() && m->as_string() == "leave") return;  // leaving, or rejecting an invite
    throw MatrixError(403, "M_USER_SUSPENDED", "You cannot join rooms while suspended.");
  }
  if (type == "m.room.member") {
    throw MatrixError(403, "M_USER_SUSPENDED", "You cannot change others' membership (invite, kick, ban) while suspended.");
  }
  throw MatrixError(403, "M_USER_SUSPENDED", "You cannot send events while suspended.");
}

}  // namespace trestle::service
