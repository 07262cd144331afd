#include "service/guest_access.hpp"

#include <array>
#include <utility>

namespace trestle::service {

namespace {

using Endpoint = std::pair<std::string_view, std::string_view>;  // method, path after the version prefix

constexpr std::array kGuestEndpoints{
    // Reading rooms and events (and room previews).
    Endpoint{"GET", "/rooms/{}/state"}, Endpoint{"GET", "/rooms/{}/state/{}"}, Endpoint{"GET", "/rooms/{}/state/{}/{}"},
    Endpoint{"GET", "/rooms/{}/context/{}"}, Endpoint{"GET", "/rooms/{}/event/{}"}, Endpoint{"GET", "/rooms/{}/messages"},
    Endpoint{"GET", "/rooms/{}/members"}, Endpoint{"GET", "/rooms/{}/initialSync"}, Endpoint{"GET", "/sync"},
    Endpoint{"GET", "/events"}, Endpoint{"GET", "/events/{}"},
    // Sending.
    Endpoint{"POST", "/rooms/{}/join"}, Endpoint{"POST", "/join/{}"}, Endpoint{"POST", "/rooms/{}/leave"},
    Endpoint{"PUT", "/rooms/{}/send/{}/{}"}, Endpoint{"PUT", "/rooms/{}/state/{}"}, Endpoint{"PUT", "/rooms/{}/state/{}/{}"},
    Endpoint{"PUT", "/sendToDevice/{}/{}"},
    // Their own account.
    Endpoint{"PUT", "/profile/{}/displayname"}, Endpoint{"DELETE", "/profile/{}/displayname"}, Endpoint{"GET", "/devices"},
    Endpoint{"GET", "/devices/{}"}, Endpoint{"PUT", "/devices/{}"}, Endpoint{"GET", "/account/whoami"},
    // End-to-end encryption.
    Endpoint{"POST", "/keys/upload"}, Endpoint{"POST", "/keys/query"}, Endpoint{"POST", "/keys/claim"},
    Endpoint{"GET", "/keys/changes"},
    // Synapse's extras, which clients read at start-up.
    Endpoint{"GET", "/capabilities"}, Endpoint{"GET", "/pushrules"}, Endpoint{"GET", "/pushrules/"},
    Endpoint{"GET", "/pushrules/{}/"}, Endpoint{"GET", "/pushrules/{}/{}/{}"}, Endpoint{"GET", "/voip/turnServer"},
    Endpoint{"POST", "/publicRooms"},
};

// Authenticated media (the spec lists these under /_matrix/client/v1).
constexpr std::array kGuestMedia{
    Endpoint{"GET", "/_matrix/client/v1/media/download/{}/{}"},
    Endpoint{"GET", "/_matrix/client/v1/media/download/{}/{}/{}"},
    Endpoint{"GET", "/_matrix/client/v1/media/thumbnail/{}/{}"},
    // Room previews (Synapse lets guests call these too).
    Endpoint{"GET", "/_matrix/client/v1/rooms/{}/hierarchy"},
    Endpoint{"GET", "/_matrix/client/v1/room_summary/{}"},
    Endpoint{"GET", "/_matrix/client/unstable/im.nheko.summary/summary/{}"},
    Endpoint{"GET", "/_matrix/client/unstable/im.nheko.summary/rooms/{}/summary"},
};

}  // namespace

bool guest_may_call(std::string_view method, std::string_view route) {
  if (method == "HEAD") method = "GET";
  for (const auto& [m, path] : kGuestMedia) {
    if (m == method && path == route) return true;
  }
  for (std::string_view prefix : {"/_matrix/client/v3", "/_matrix/client/r0"}) {
    if (!route.starts_with(prefix)) continue;
    std::string_view tail = route.substr(prefix.size());
    for (const auto& [m, path] : kGuestEndpoints) {
      if (m == method && path == tail) return true;
    }
  }
  return false;
}

}  // namespace trestle::service
