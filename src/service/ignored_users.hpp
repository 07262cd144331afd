#pragma once
// m.ignored_user_list (spec: client-server-api modules/ignore_users): whose events and invites a
// user does not receive. State events of ignored users are still sent.
#include "storage/database.hpp"
#include "storage/event_store.hpp"

#include <set>
#include <string>

namespace trestle::service {

// The users `user_id` ignores now (keys of the account data's `ignored_users`); empty if none.
std::set<std::string> ignored_users(storage::Connection& c, const std::string& user_id);

// Whether `e` is hidden from a user ignoring `ignored`: a non-state event of an ignored sender.
inline bool hidden_by_ignore(const std::set<std::string>& ignored, const storage::events::StoredEvent& e) {
  return !e.state_key && !ignored.empty() && ignored.count(e.sender) > 0;
}

}  // namespace trestle::service
