#pragma once
// Guest access (spec: client-server-api modules/guest_access): which endpoints a guest account
// may call. Everything else answers 403 M_GUEST_ACCESS_FORBIDDEN.
#include <string_view>

namespace trestle::service {

// `route` is the matched path template ("/_matrix/client/v3/rooms/{}/send/{}/{}"). The spec's
// list, plus what Synapse also lets guests call: the legacy /events, /events/{id}, the
// capabilities, push rules (read), /keys/changes, the TURN servers and a POST /publicRooms search.
bool guest_may_call(std::string_view method, std::string_view route);

}  // namespace trestle::service
