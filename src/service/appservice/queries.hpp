#pragma once
// Calls the homeserver makes to appservices on demand: user and alias queries, ping, and
// third-party lookups. Each call is bounded by a timeout and runs on the caller's thread, never on
// the transaction senders, so a slow /users answer cannot stall event delivery.
//
// A slow or hung appservice must not starve anybody else (issue 7, item 6). Three parts:
// - Handlers that may call out return http::Offload (api/appservice/offload.hpp): the transport
//   runs them on its small outbound pool, never on the workers that serve every other client.
// - At most kMaxInFlight calls per appservice at once. A call over the limit is not made: it
//   counts as unanswered at once (408 for a query) instead of holding another outbound thread,
//   so one hung appservice holds at most kMaxInFlight of them.
// - A circuit breaker: after a call to an appservice timed out, new calls to it are not made for
//   kBreakerMs (unanswered at once). The calls already in flight keep retrying within their budget
//   as the spec asks; the first answer closes the breaker.
#include "service/appservice/registration.hpp"
#include "service/appservice/sender.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace trestle::service {

class AppServiceQueries {
public:
  static constexpr int kQueryTimeoutMs = 5000;
  static constexpr int64_t kQueryBudgetMs = 8000;  // all attempts of one query together
  static constexpr int kPingTimeoutMs = 10000;
  static constexpr int kMaxInFlight = 4;        // calls to one appservice at once
  static constexpr int64_t kBreakerMs = 5000;   // no new calls this long after one timed out

  AppServiceQueries(const AppServiceRegistry& registry, OutboundHttp http) : registry_(registry), http_(std::move(http)) {}

  // Asks the appservices whose user namespaces cover `user_id` whether it exists (they create it
  // through the Client-Server API before answering 200). True when one said yes; false when they
  // said no; 408 (the spec's "Request Timeout" for the client) when one never answered.
  bool query_user(const std::string& user_id) const;
  // Same for an alias: true when an appservice says it now exists.
  bool query_alias(const std::string& alias) const;
  // Whether query_user / query_alias would ask any appservice (cheap: namespaces only). Handlers
  // use it to decide whether to offload.
  bool may_query_user(const std::string& user_id) const;
  bool may_query_alias(const std::string& alias) const;
  // POST /_matrix/app/v1/ping; returns duration_ms or throws the spec's MatrixErrors.
  int64_t ping(const AppService& as, const std::optional<std::string>& transaction_id) const;
  // GET /thirdparty/protocol/{protocol}: the metadata from every appservice declaring it, their
  // instances merged, each with a `network_id` given the `instance_id` ("<appservice id>|<network_id>")
  // the Client-Server API adds. nullopt when none answered. As Synapse does, an appservice's valid
  // answer (an object with an `instances` list) is kept for kProtocolCacheMs: clients ask often
  // (every directory dialog) and a bridge's protocols change with its version.
  std::optional<boost::json::object> protocol(const std::string& protocol) const;
  static constexpr int64_t kProtocolCacheMs = 60 * 60 * 1000;
  // Third-party lookups: GET on every appservice that declares `protocol` (all when empty) with
  // `path_and_query`; merges list answers, returns the first object answer. 404 when none knows.
  boost::json::value thirdparty(const std::string& protocol, const std::string& path_and_query, bool merge_lists) const;

private:
  // One call to `as` under its in-flight limit and breaker: status 0 with `error` set when it was
  // not made (over the limit, breaker open) or got no answer; a timeout opens the breaker.
  OutboundResponse call(const AppService& as, const std::string& method, const std::string& path_and_query,
                        const std::string& body, int timeout_ms, bool use_breaker = true) const;
  // One appservice's answer (HTTP status), retried until kQueryBudgetMs; nullopt: no answer.
  std::optional<int> ask(const AppService& as, const std::string& path) const;
  bool query(const std::string& path, const std::function<bool(const AppService&)>& interested) const;

  const AppServiceRegistry& registry_;
  OutboundHttp http_;
  struct Gate {
    int in_flight = 0;
    int64_t closed_until = 0;  // steady ms; no new calls before this (breaker open)
  };
  mutable std::mutex gates_mu_;
  mutable std::map<std::string, Gate> gates_;  // by appservice id
  // One appservice's metadata for one protocol, instance ids added.
  std::optional<boost::json::object> protocol_of(const AppService& as, const std::string& protocol) const;
  struct CachedProtocol {
    boost::json::object meta;
    int64_t until = 0;  // steady ms
  };
  mutable std::mutex protocol_cache_mu_;
  mutable std::map<std::pair<std::string, std::string>, CachedProtocol> protocol_cache_;  // (appservice id, protocol)
};

}  // namespace trestle::service
