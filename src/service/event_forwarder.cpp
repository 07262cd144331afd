#include "service/event_forwarder.hpp"

#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/json_depth.hpp"
#include "core/json_fields.hpp"
#include "core/metrics.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <chrono>

namespace trestle::service {

namespace ev = storage::events;
using boost::json::object;
using boost::json::value;

namespace replication {

namespace {

[[noreturn]] void malformed(const std::string& what) {
  throw MatrixError::bad_json("Malformed replication message: " + what);
}

const value& field(const object& o, const char* key) {
  auto* v = o.if_contains(key);
  if (!v) malformed(std::string("missing '") + key + "'");
  return *v;
}

std::string string_field(const object& o, const char* key) {
  const value& v = field(o, key);
  if (!v.is_string()) malformed(std::string("'") + key + "' is not a string");
  return std::string(v.get_string());
}

int64_t int_field(const object& o, const char* key) {
  const value& v = field(o, key);
  if (!v.is_int64()) malformed(std::string("'") + key + "' is not an integer");
  return v.get_int64();
}

const object& object_field(const object& o, const char* key) {
  const value& v = field(o, key);
  if (!v.is_object()) malformed(std::string("'") + key + "' is not an object");
  return v.get_object();
}

// Optional fields travel as null when unset.
value optional(const std::optional<std::string>& s) { return s ? value(*s) : value(nullptr); }
value optional(const std::optional<int64_t>& n) { return n ? value(*n) : value(nullptr); }

std::optional<std::string> optional_string(const object& o, const char* key) {
  auto* v = o.if_contains(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_string()) malformed(std::string("'") + key + "' is not a string");
  return std::string(v->get_string());
}

std::optional<int64_t> optional_int(const object& o, const char* key) {
  auto* v = o.if_contains(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_int64()) malformed(std::string("'") + key + "' is not an integer");
  return v->get_int64();
}

object to_json(const NewEvent& e) {
  return {{"room_id", e.room_id},
          {"sender", e.sender},
          {"type", e.type},
          {"state_key", optional(e.state_key)},
          {"content", e.content},
          {"redacts", optional(e.redacts)},
          {"origin_server_ts", optional(e.origin_server_ts)},
          {"txn_id", optional(e.txn_id)},
          {"txn_device_id", optional(e.txn_device_id)}};
}

NewEvent new_event_of(const object& o) {
  return NewEvent{string_field(o, "room_id"),          string_field(o, "sender"),   string_field(o, "type"),
                  optional_string(o, "state_key"),     object_field(o, "content"),  optional_string(o, "redacts"),
                  optional_int(o, "origin_server_ts"), optional_string(o, "txn_id"), optional_string(o, "txn_device_id")};
}

object to_json(const ev::StoredEvent& e) {
  return {{"stream_ordering", e.stream_ordering},
          {"event_id", e.event_id},
          {"room_id", e.room_id},
          {"type", e.type},
          {"state_key", optional(e.state_key)},
          {"sender", e.sender},
          {"origin_server_ts", e.origin_server_ts},
          {"depth", e.depth},
          {"pdu", e.pdu},
          {"replaces_state", optional(e.replaces_state)},
          {"redacted_by", optional(e.redacted_by)},
          {"txn_id", optional(e.txn_id)},
          {"txn_device_id", optional(e.txn_device_id)}};
}

ev::StoredEvent stored_event_of(const object& o) {
  ev::StoredEvent e;
  e.stream_ordering = int_field(o, "stream_ordering");
  e.event_id = string_field(o, "event_id");
  e.room_id = string_field(o, "room_id");
  e.type = string_field(o, "type");
  e.state_key = optional_string(o, "state_key");
  e.sender = string_field(o, "sender");
  e.origin_server_ts = int_field(o, "origin_server_ts");
  e.depth = int_field(o, "depth");
  e.pdu = object_field(o, "pdu");
  e.replaces_state = optional_string(o, "replaces_state");
  e.redacted_by = optional_string(o, "redacted_by");
  e.txn_id = optional_string(o, "txn_id");
  e.txn_device_id = optional_string(o, "txn_device_id");
  return e;
}

}  // namespace

object send_request(const NewEvent& e, const std::optional<ClientTxn>& txn) {
  object body{{"event", to_json(e)}};
  if (txn) body["txn"] = object{{"user_id", txn->user_id}, {"device_id", txn->device_id}, {"key", txn->key}};
  return body;
}

SendRequest parse_send_request(const object& body) {
  SendRequest r{new_event_of(object_field(body, "event")), std::nullopt};
  if (auto* t = body.if_contains("txn"); t && !t->is_null()) {
    if (!t->is_object()) malformed("'txn' is not an object");
    const object& txn = t->get_object();
    r.txn = ClientTxn{string_field(txn, "user_id"), string_field(txn, "device_id"), string_field(txn, "key")};
  }
  return r;
}

object send_answer(const EventWriter::Sent& sent) {
  return {{"event", to_json(sent.event)}, {"created", sent.created}};
}

EventWriter::Sent parse_send_answer(const object& body) {
  const value& created = field(body, "created");
  if (!created.is_bool()) malformed("'created' is not a boolean");
  return {stored_event_of(object_field(body, "event")), created.get_bool()};
}

MatrixError error_of_answer(int status, const std::string& body) {
  boost::system::error_code ec;
  value v = boost::json::parse(body, ec);
  if (ec || !v.is_object() || !v.get_object().contains("errcode")) {
    return MatrixError(status, "M_UNKNOWN", "The room's event writer answered " + std::to_string(status));
  }
  object extra = v.get_object();
  std::string errcode = core::str_or(extra, "errcode");
  std::string error = core::str_or(extra, "error");
  extra.erase("errcode");
  extra.erase("error");
  return MatrixError(status, std::move(errcode), std::move(error), std::move(extra));
}

}  // namespace replication

EventForwarder::EventForwarder(const config::Config& cfg, storage::Database& db, OutboundHttp http, size_t threads)
    : cfg_(cfg), db_(db), http_(std::move(http)) {
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { run_thread(); });
}

EventForwarder::~EventForwarder() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void EventForwarder::run_thread() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left (each job fails fast once stopping)
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job();
  }
}

void EventForwarder::unavailable(const std::string& writer) {
  static auto& failures = metrics::registry().counter(
      "trestle_event_forward_failures_total", "Events that could not be forwarded to their room's writer", {"writer"});
  failures.labels({writer}).inc();
  throw MatrixError(503, "M_UNKNOWN", "The event writer '" + writer + "' of this room is unavailable; try again later");
}

EventWriter::Sent EventForwarder::forward(const NewEvent& e, const std::optional<ClientTxn>& txn) {
  const std::string& writer = cfg_.event_writer_for(e.room_id);
  const config::Config::Instance* peer = cfg_.instance(writer);
  if (!peer) {  // config/workers.cpp checks every writer is in instance_map
    spdlog::error("event writer '{}' is not in instance_map", writer);
    unavailable(writer);
  }
  {
    std::lock_guard lock(mu_);
    if (stopping_) unavailable(writer);
  }
  std::vector<std::pair<std::string, std::string>> headers{{"Content-Type", "application/json"}};
  if (!cfg_.worker_replication_secret.empty()) {
    headers.emplace_back("Authorization", "Bearer " + cfg_.worker_replication_secret);
  }
  const std::string url = "http://" + peer->host + ":" + std::to_string(peer->port);
  auto r = http_("POST", url, replication::kSendEventPath, headers,
                 boost::json::serialize(replication::send_request(e, txn)), kTimeoutMs);
  if (r.status == 0) {
    spdlog::warn("forwarding an event of {} to its writer '{}' at {} failed: {}", e.room_id, writer, url, r.error);
    unavailable(writer);
  }
  if (r.status != 200) {
    MatrixError error = replication::error_of_answer(r.status, r.body);
    // A deployment's mistake, not the client's: instance_map names a listener without the
    // `replication` resource, or the processes disagree on worker_replication_secret.
    bool misconfigured = (r.status == 404 && error.errcode() == "M_UNRECOGNIZED") ||
                         (r.status == 403 && std::string(error.what()) == replication::kBadSecret) ||
                         (r.status == 400 && error.errcode() == "M_UNKNOWN" && r.body.find("not this room's writer") != std::string::npos);
    if (misconfigured) {
      spdlog::error("event writer '{}' at {} refused a forwarded event: {} {} (check instance_map, its listener's "
                    "`replication` resource, stream_writers and worker_replication_secret)",
                    writer, url, r.status, error.what());
      unavailable(writer);
    }
    throw error;
  }
  EventWriter::Sent sent;
  try {
    boost::json::value v = core::parse_stored_json(r.body);  // the stored event, a few levels deeper
    if (!v.is_object()) throw MatrixError::bad_json("not an object");
    sent = replication::parse_send_answer(v.get_object());
  } catch (const std::exception& ex) {
    spdlog::error("event writer '{}' answered a forwarded event with a malformed body: {}", writer, ex.what());
    throw MatrixError::unknown("The room's event writer gave a malformed answer");
  }
  wait_until_visible(sent.event.stream_ordering, writer);
  static auto& forwarded =
      metrics::registry().counter("trestle_events_forwarded_total", "Events written by their room's writer for this process", {"writer"});
  forwarded.labels({writer}).inc();
  return sent;
}

void EventForwarder::wait_until_visible(int64_t position, const std::string& writer) {
  // The writer answered after its commit: one re-read of the position normally suffices (the
  // peer's wake-up may also have moved it already).
  const int64_t deadline = core::steady_ms() + kVisibleWithinMs;
  while (db_.committed_position() < position) {
    if (db_.refresh_position() >= position) return;
    {
      std::lock_guard lock(mu_);
      if (stopping_) unavailable(writer);
    }
    if (core::steady_ms() > deadline) {
      spdlog::warn("an event forwarded to '{}' (position {}) is not visible here after {} ms (at {})", writer, position,
                   kVisibleWithinMs, db_.committed_position());
      throw MatrixError(503, "M_UNKNOWN", "The event was sent but is not visible yet; try again later");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void EventForwarder::forward_async(NewEvent e, std::optional<ClientTxn> txn, EventWriter::SendDone done) {
  auto job = [this, e = std::move(e), txn = std::move(txn), done = std::move(done)]() mutable {
    EventWriter::Sent sent;
    std::exception_ptr error;
    try {
      sent = forward(e, txn);
    } catch (...) {
      error = std::current_exception();
    }
    done(std::move(sent), error);
  };
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      queue_.push_back(std::move(job));
      cv_.notify_one();
      return;
    }
  }
  job();  // stopping: fails at once with 503
}

}  // namespace trestle::service
