#pragma once
// Handlers that may wait on an appservice (user and alias queries, third-party lookups, ping)
// answer through http::Offload, so the wait holds a thread of the transport's outbound pool, never
// one of the workers every other client needs (issue 7, item 6; see AppServiceQueries for the
// per-appservice limits that keep the outbound pool itself from filling up).
#include "http/request.hpp"

#include <utility>

namespace trestle::api {

// `answer` (a callable returning http::Reply holding a Response, capturing everything by value)
// runs on the outbound pool when `calls_out`, else right here on the worker.
template <class F>
http::Reply offload_if(bool calls_out, F answer) {
  if (!calls_out) return answer();
  return http::Offload{[answer = std::move(answer)]() -> http::Response { return std::get<http::Response>(answer()); }};
}

}  // namespace trestle::api
