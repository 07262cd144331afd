#include "api/client/long_poll_reply.hpp"

namespace trestle::api {

http::Reply to_reply(service::SyncResult result) {
  if (auto* body = std::get_if<boost::json::object>(&result)) return http::Response::json(*body);
  auto& wait = std::get<service::SyncWait>(result);
  http::LongPoll lp;
  lp.wake_keys = std::move(wait.wake_keys);
  lp.notifier_position = wait.notifier_position;
  lp.deadline_ms = wait.deadline_ms;
  lp.owner = std::move(wait.owner);
  lp.poll = [resume = std::move(wait.resume)](bool deadline_reached) -> std::variant<http::Response, http::LongPoll, http::Offload> {
    http::Reply next = to_reply(resume(deadline_reached));  // a body or another wait, nothing else
    if (auto* again = std::get_if<http::LongPoll>(&next)) return std::move(*again);
    return std::move(std::get<http::Response>(next));
  };
  return lp;
}

}  // namespace trestle::api
