#pragma once
// User-interactive authentication sessions (spec: "User-interactive authentication API"). A
// session belongs to the user and the operation it was started for ("DELETE /devices/ABC"),
// and remembers the stages completed in it; a session id presented for another user or
// operation is refused, so authenticating to delete one device cannot delete another.
// Kept in memory: a restart only makes clients start their authentication again.
#include <boost/json/object.hpp>
#include <cstdint>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

namespace trestle::service {

class UiaSessions {
public:
  static constexpr int64_t kLifetimeMs = 30 * 60 * 1000;  // from creation
  static constexpr size_t kMaxSessions = 10000;           // the oldest go first beyond this

  struct Session {
    std::string user_id;
    std::string operation;
    std::set<std::string> completed;
    int64_t created_ms = 0;
    // The request's parameters (registration: the body without `auth`), so a client may send
    // only `auth` after the first request; and what the completed operation produced (the
    // registered user ID), so repeating a completed request repeats its result.
    boost::json::object params;
    std::string result;
  };

  // A new session's id.
  std::string create(const std::string& user_id, const std::string& operation, int64_t now_ms);
  // The session, unless unknown or expired.
  std::optional<Session> get(const std::string& id, int64_t now_ms);
  void complete_stage(const std::string& id, const std::string& stage);
  void set_params(const std::string& id, boost::json::object params);
  void set_result(const std::string& id, const std::string& result);
  void remove(const std::string& id);
  size_t size();

private:
  void make_room(int64_t now_ms);  // with mu_ held

  std::mutex mu_;
  std::unordered_map<std::string, Session> sessions_;
};

}  // namespace trestle::service
