#pragma once
// The one place a service's long-poll answer (service::SyncResult) becomes the transport's:
// a body is a 200 JSON reply, a wait is an http::LongPoll whose poll resumes the service.
#include "http/request.hpp"
#include "service/sync_result.hpp"

namespace trestle::api {

http::Reply to_reply(service::SyncResult result);

}  // namespace trestle::api
