#pragma once
// Several event writers (`stream_writers: {events: [...]}`): every event of a room is built,
// authorised and persisted by the room's writer, cfg.event_writer_for(room_id), and by no other
// process, so a room's state never races between processes (Synapse's event persisters). A
// process that creates an event for a room it does not write forwards the event to the writer
// (POST kSendEventPath on the writer's `replication` listener, named by instance_map), gets the
// stored event back, waits until its own reads see it, and answers as if it had written it. The
// writer's errors come back as the same MatrixError; an unreachable writer is 503 M_UNKNOWN.
//
// A forward without a client transaction is never retried (it is not idempotent); with one, the
// client's retry is idempotent on the writer.
#include "config/config.hpp"
#include "service/appservice/sender.hpp"  // OutboundHttp
#include "service/event_writer.hpp"
#include "storage/database.hpp"

#include <boost/json/object.hpp>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace trestle::service {

// The replication call's wire form (our own prefix: Synapse's payload differs). Pure.
namespace replication {
inline constexpr const char* kSendEventPath = "/_trestle/replication/v1/send_event";
// The writer's 403 for a missing or wrong worker_replication_secret (told apart from an auth
// rule's 403 by the forwarding process, which reports a misconfiguration instead).
inline constexpr const char* kBadSecret = "Missing or wrong replication secret";

// {"event": NewEvent, "txn": ClientTxn (send_once only)}
boost::json::object send_request(const NewEvent& e, const std::optional<ClientTxn>& txn);
struct SendRequest {
  NewEvent event;
  std::optional<ClientTxn> txn;
};
SendRequest parse_send_request(const boost::json::object& body);  // MatrixError 400 M_BAD_JSON
// {"event": StoredEvent, "created": bool}
boost::json::object send_answer(const EventWriter::Sent& sent);
EventWriter::Sent parse_send_answer(const boost::json::object& body);  // MatrixError 400 M_BAD_JSON
// A non-200 answer of the writer as the MatrixError it was: {"errcode", "error", extra...}.
MatrixError error_of_answer(int status, const std::string& body);
}  // namespace replication

class EventForwarder {
public:
  // `http` calls the writer (blocking, bounded by its timeout); `threads` run forward_async's calls.
  EventForwarder(const config::Config& cfg, storage::Database& db, OutboundHttp http, size_t threads = 8);
  ~EventForwarder();
  EventForwarder(const EventForwarder&) = delete;
  EventForwarder& operator=(const EventForwarder&) = delete;

  // Sends `e` through its room's writer (another process) and returns once this process's
  // committed position reaches the event (else 503 after kVisibleWithinMs).
  EventWriter::Sent forward(const NewEvent& e, const std::optional<ClientTxn>& txn);
  // forward() on one of the forwarder's own threads: the caller's thread never waits for it.
  void forward_async(NewEvent e, std::optional<ClientTxn> txn, EventWriter::SendDone done);

  static constexpr int kTimeoutMs = 30'000;         // the writer's whole answer
  static constexpr int64_t kVisibleWithinMs = 10'000;  // the writer's commit, seen here

private:
  void run_thread();
  void wait_until_visible(int64_t position, const std::string& writer);
  [[noreturn]] static void unavailable(const std::string& writer);

  const config::Config& cfg_;
  storage::Database& db_;
  OutboundHttp http_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace trestle::service
