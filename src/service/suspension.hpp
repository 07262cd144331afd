#pragma once
// Account suspension (spec 1.13 "Account suspension", as Synapse applies it): a suspended user
// keeps reading, leaving rooms (and rejecting invites) and redacting their own events, but sends
// no other event: no messages or state, no joins, invites or knocks, no new rooms.
#include "storage/database.hpp"

#include <boost/json/object.hpp>
#include <optional>
#include <string>

namespace trestle::service {

// Throws 403 M_USER_SUSPENDED when `sender` is suspended and the event is not one of the
// corrective ones. Runs inside the event's write transaction.
void check_suspended_sender(storage::Connection& c, const std::string& sender, const std::string& type,
                            const std::optional<std::string>& state_key, const boost::json::object& content,
                            const std::optional<std::string>& redacts);

}  // namespace trestle::service
