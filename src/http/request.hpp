#pragma once
// Our own small request/response types: everything outside src/http/server.cpp sees these,
// never Beast, so handlers compile in a second instead of twenty-five.
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace trestle::http {

struct Request {
  std::string method;                               // "GET", "PUT", ...
  std::string path;                                 // percent-decoded path
  std::multimap<std::string, std::string> query;    // percent-decoded query parameters
  std::vector<std::string> params;                  // path template captures, decoded
  std::string route;                                // the matched path template ("/_matrix/client/v3/sync")
  std::string body;
  // Media uploads: the body was streamed to this file instead of `body` (see server.cpp). The
  // handler may move it away; the transport deletes it if it is still there afterwards.
  std::string body_file;
  std::string authorization;                        // the Authorization header, if any
  std::string content_type;
  std::string remote_address;                       // peer IP, for per-address rate limits
  unsigned short local_port = 0;                    // the listener's port (its resources)
  std::string user_agent;                           // the User-Agent header, if any
  std::string log_requester;                        // who, for the access log (set by the router)

  std::optional<std::string> query_param(const std::string& name) const;
  // The body as a JSON object. Empty body counts as {} when `allow_empty`.
  // Throws MatrixError M_NOT_JSON (unparseable / too deep) or M_BAD_JSON (not an object).
  boost::json::object json_object(bool allow_empty = false) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // When set, the transport sends this file as the body (streamed, never read whole) instead of
  // `body`; a file that cannot be opened becomes 404 M_NOT_FOUND.
  std::string file_path;

  static Response json(const boost::json::value& v, int status = 200);
  static Response error(int status, const std::string& errcode, const std::string& message,
                        const boost::json::object& extra = {});
};

// A handler that is about to call out of the server and may wait seconds for the answer (an
// appservice user/alias query, a third-party lookup, a ping). The transport runs `run` on its small
// "outbound" thread pool instead of the worker pool, so a slow or hung appservice holds outbound
// threads only, never the workers that answer every other client. `run` may throw MatrixError
// like a handler; everything it needs must be captured by value (the Request and Requester the
// handler saw are gone by then). Its own bound on the wait (a query's budget, per-appservice
// in-flight limit and circuit breaker, see AppServiceQueries) keeps outbound threads from piling up.
struct Offload {
  std::function<Response()> run;
};

// A handler that has nothing to answer yet (a /sync long-poll). The transport waits, without a
// thread, until the notifier fires for one of `wake_keys` after `notifier_position`, or the
// deadline passes, then calls `poll` again. `poll(true)` (deadline reached) must answer.
struct LongPoll {
  std::vector<std::string> wake_keys;
  uint64_t notifier_position = 0;
  int64_t deadline_ms = 0;  // steady clock milliseconds
  // Whose long-poll this is (the sync service sets the user ID): the transport caps how many one
  // owner may hold at once, answering the oldest early (its normal empty answer) when over.
  std::string owner;
  // Never an Offload in practice; the transport runs one in place if it comes.
  std::function<std::variant<Response, LongPoll, Offload>(bool deadline_reached)> poll;
};

// A handler whose answer comes from work that runs with no thread waiting for it (a send joining
// the next group commit: EventWriter::send_once_async). The transport calls `start` with
// `complete`, which the work calls exactly once, from any thread, with the answer; the connection
// holds no thread meanwhile. `start` must not block.
struct Deferred {
  std::function<void(std::function<void(Response)> complete)> start;
};

using Reply = std::variant<Response, LongPoll, Offload, Deferred>;

}  // namespace trestle::http
