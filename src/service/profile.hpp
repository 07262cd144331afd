#pragma once
// Profiles (spec: profile.yaml, v1.16 / MSC4133): displayname and avatar_url (on the user's row,
// copied into their member events) and any other field (`m.tz`, custom namespaced keys), kept
// in storage/profile_store and never sent into rooms.
#include "config/config.hpp"
#include "service/requester.hpp"
#include "storage/account_store.hpp"
#include "storage/database.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <functional>
#include <optional>
#include <string>

namespace trestle::service {

class ProfileService {
public:
  // `member_events_changed(user_id)` re-sends the user's member events after a displayname or
  // avatar_url change (MembershipService::update_profile_in_rooms).
  ProfileService(const config::Config& cfg, storage::Database& db, std::function<void(const std::string&)> member_events_changed)
      : cfg_(cfg), db_(db), member_events_changed_(std::move(member_events_changed)) {}

  // 400 M_KEY_TOO_LARGE over 255 bytes, M_INVALID_PARAM unless displayname, avatar_url, m.tz or a
  // namespaced identifier (`[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+`).
  static void check_key(const std::string& key);

  // Every field of `u`'s profile.
  boost::json::object profile(const storage::accounts::User& u);
  // One field; nullopt when not set.
  std::optional<boost::json::value> field(const storage::accounts::User& u, const std::string& key);
  // PUT /profile/{userId}/{keyName} with the request body. 403 for another user's profile, 404
  // for unknown users, 400 M_MISSING_PARAM without the key in the body, M_BAD_JSON for a value of
  // the wrong type, M_PROFILE_TOO_LARGE when the whole profile would reach 64 KiB.
  void set_field(const Requester& r, const std::string& user_id, const std::string& key, const boost::json::object& body);
  // DELETE /profile/{userId}/{keyName}: 200 whether or not it was set.
  void delete_field(const Requester& r, const std::string& user_id, const std::string& key);

  static constexpr size_t kMaxProfileBytes = 64 * 1024;
  static constexpr size_t kMaxKeyBytes = 255;

private:
  storage::accounts::User own_user(storage::Connection& c, const Requester& r, const std::string& user_id);

  const config::Config& cfg_;
  storage::Database& db_;
  std::function<void(const std::string&)> member_events_changed_;
};

}  // namespace trestle::service
