#pragma once
// What /sync and /events answer, in service terms: a body now, or "nothing yet: wait until the
// notifier fires for one of these keys after this position, or until the deadline, then resume".
// The transport-facing handler (api/client/long_poll_reply) turns it into an http::Reply, so the
// service layer never sees the HTTP types.
#include <boost/json/object.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

namespace trestle::service {

struct SyncWait {
  std::vector<std::string> wake_keys;
  uint64_t notifier_position = 0;  // Notifier::position() taken before the (empty) answer was computed
  int64_t deadline_ms = 0;         // steady clock milliseconds (core::steady_ms)
  // Whose wait this is (the user ID): the transport caps how many one owner may hold at once.
  std::string owner;
  // Computes again; `deadline_reached` (or an eviction) means it must answer with a body.
  std::function<std::variant<boost::json::object, SyncWait>(bool deadline_reached)> resume;
};

using SyncResult = std::variant<boost::json::object, SyncWait>;

}  // namespace trestle::service
