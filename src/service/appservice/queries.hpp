#pragma once
// Calls the homeserver makes to appservices on demand: user and alias queries, ping, and
// third-party lookups. Each call is bounded by a timeout and runs on the caller's thread, never on
// the transaction senders, so a slow /users answer cannot stall event delivery.
#include "service/appservice/registration.hpp"
#include "service/appservice/sender.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <functional>
#include <optional>
#include <string>

namespace trestle::service {

class AppServiceQueries {
public:
  static constexpr int kQueryTimeoutMs = 5000;
  static constexpr int64_t kQueryBudgetMs = 8000;  // all attempts of one query together
  static constexpr int kPingTimeoutMs = 10000;

  AppServiceQueries(const AppServiceRegistry& registry, OutboundHttp http) : registry_(registry), http_(std::move(http)) {}

  // Asks the appservices whose user namespaces cover `user_id` whether it exists (they create it
  // through the Client-Server API before answering 200). True when one said yes; false when they
  // said no; 408 (the spec's "Request Timeout" for the client) when one never answered.
  bool query_user(const std::string& user_id) const;
  // Same for an alias: true when an appservice says it now exists.
  bool query_alias(const std::string& alias) const;
  // POST /_matrix/app/v1/ping; returns duration_ms or throws the spec's MatrixErrors.
  int64_t ping(const AppService& as, const std::optional<std::string>& transaction_id) const;
  // GET /thirdparty/protocol/{protocol}: the metadata from every appservice declaring it, their
  // instances merged, each given the `instance_id` ("<appservice id>|<network_id>") the
  // Client-Server API adds. nullopt when none answered.
  std::optional<boost::json::object> protocol(const std::string& protocol) const;
  // Third-party lookups: GET on every appservice that declares `protocol` (all when empty) with
  // `path_and_query`; merges list answers, returns the first object answer. 404 when none knows.
  boost::json::value thirdparty(const std::string& protocol, const std::string& path_and_query, bool merge_lists) const;

private:
  // One appservice's answer (HTTP status), retried until kQueryBudgetMs; nullopt: no answer.
  std::optional<int> ask(const AppService& as, const std::string& path) const;
  bool query(const std::string& path, const std::function<bool(const AppService&)>& interested) const;

  const AppServiceRegistry& registry_;
  OutboundHttp http_;
};

}  // namespace trestle::service
