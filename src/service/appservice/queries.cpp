#include "service/appservice/queries.hpp"

#include "core/clock.hpp"
#include "core/error.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <thread>

namespace trestle::service {

namespace {
std::string path_escape(const std::string& s) { return boost::urls::encode(s, boost::urls::unreserved_chars); }
}  // namespace

OutboundResponse AppServiceQueries::call(const AppService& as, const std::string& method,
                                         const std::string& path_and_query, const std::string& body, int timeout_ms,
                                         bool use_breaker) const {
  {
    std::lock_guard lock(gates_mu_);
    auto& gate = gates_[as.id];
    OutboundResponse refused;
    if (use_breaker && gate.closed_until > core::steady_ms()) {
      refused.error = "not called: it timed out recently";
    } else if (gate.in_flight >= kMaxInFlight) {
      refused.error = "not called: " + std::to_string(kMaxInFlight) + " calls already in flight";
    }
    if (!refused.error.empty()) {
      refused.not_sent = true;
      return refused;
    }
    gate.in_flight++;
  }
  OutboundResponse r;
  try {
    r = http_(method, *as.url, path_and_query, {{"Authorization", "Bearer " + as.hs_token}}, body, timeout_ms);
  } catch (...) {
    std::lock_guard lock(gates_mu_);
    gates_[as.id].in_flight--;
    throw;
  }
  std::lock_guard lock(gates_mu_);
  auto& gate = gates_[as.id];
  gate.in_flight--;
  if (r.timed_out) {
    gate.closed_until = core::steady_ms() + kBreakerMs;
  } else if (r.status != 0) {
    gate.closed_until = 0;  // it answers again
  }
  return r;
}

std::optional<int> AppServiceQueries::ask(const AppService& as, const std::string& path) const {
  // The spec: retry a query that gets no answer, within a bound, before giving up. A call that
  // was not made (in-flight limit, breaker) is not retried: the appservice is busy or hung.
  int64_t deadline = core::steady_ms() + kQueryBudgetMs;
  bool first = true;
  while (true) {
    int64_t left = deadline - core::steady_ms();
    if (left <= 0) return std::nullopt;
    // Retries belong to a call already under way: the breaker its own timeout opened stops others.
    auto r = call(as, "GET", path, "", static_cast<int>(std::min<int64_t>(left, kQueryTimeoutMs)), first);
    first = false;
    if (r.status != 0) return r.status;
    spdlog::warn("appservice {}: query {} got no answer: {}", as.id, path, r.error);
    if (r.not_sent) return std::nullopt;
    if (!r.timed_out) {
      // Refused or reset: pause briefly rather than hammering a restarting appservice.
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(200, std::max<int64_t>(0, left))));
    }
  }
}

bool AppServiceQueries::query(const std::string& path, const std::function<bool(const AppService&)>& interested) const {
  bool unanswered = false;
  for (const auto& as : registry_.all()) {
    if (!as->url || !interested(*as)) continue;
    auto status = ask(*as, path);
    if (status && *status >= 200 && *status < 300) return true;
    if (!status) unanswered = true;
  }
  if (unanswered) throw MatrixError(408, "M_UNKNOWN", "The application service did not answer in time");
  return false;
}

bool AppServiceQueries::query_user(const std::string& user_id) const {
  return query("/_matrix/app/v1/users/" + path_escape(user_id), [&](const AppService& as) {
    return as.is_interested_in_user(user_id) && user_id != as.sender;
  });
}

bool AppServiceQueries::may_query_user(const std::string& user_id) const {
  for (const auto& as : registry_.all()) {
    if (as->url && as->is_interested_in_user(user_id) && user_id != as->sender) return true;
  }
  return false;
}

bool AppServiceQueries::may_query_alias(const std::string& alias) const {
  for (const auto& as : registry_.all()) {
    if (as->url && as->is_interested_in_alias(alias)) return true;
  }
  return false;
}

bool AppServiceQueries::query_alias(const std::string& alias) const {
  return query("/_matrix/app/v1/rooms/" + path_escape(alias),
               [&](const AppService& as) { return as.is_interested_in_alias(alias); });
}

int64_t AppServiceQueries::ping(const AppService& as, const std::optional<std::string>& transaction_id) const {
  if (!as.url) throw MatrixError(400, "M_URL_NOT_SET", "Application service URL is not set");
  boost::json::object body;
  if (transaction_id) body["transaction_id"] = *transaction_id;
  int64_t start = core::steady_ms();
  // Under the in-flight limit, but not the breaker: a ping is how one finds out it is back.
  auto r = call(as, "POST", "/_matrix/app/v1/ping", boost::json::serialize(body), kPingTimeoutMs, false);
  int64_t duration = core::steady_ms() - start;
  if (r.timed_out) throw MatrixError(504, "M_CONNECTION_TIMEOUT", "Ping timed out");
  if (r.status == 0) throw MatrixError(502, "M_CONNECTION_FAILED", "Ping failed: " + r.error);
  if (r.status < 200 || r.status >= 300) {
    throw MatrixError(502, "M_BAD_STATUS", "Ping returned status " + std::to_string(r.status),
                      {{"status", r.status}, {"body", r.body}});
  }
  return duration;
}

std::optional<boost::json::object> AppServiceQueries::protocol_of(const AppService& as,
                                                                   const std::string& protocol) const {
  const auto key = std::make_pair(as.id, protocol);
  {
    std::lock_guard lock(protocol_cache_mu_);
    if (auto it = protocol_cache_.find(key); it != protocol_cache_.end() && it->second.until > core::steady_ms()) {
      return it->second.meta;
    }
  }
  auto r = call(as, "GET", "/_matrix/app/v1/thirdparty/protocol/" + path_escape(protocol), "", kQueryTimeoutMs);
  if (r.status < 200 || r.status >= 300) return std::nullopt;
  boost::system::error_code ec;
  auto v = boost::json::parse(r.body, ec);
  auto* instances = !ec && v.is_object() ? v.as_object().if_contains("instances") : nullptr;
  if (!instances || !instances->is_array()) {
    spdlog::warn("appservice {}: GET /thirdparty/protocol/{} did not answer protocol metadata (an object with an "
                 "'instances' list)", as.id, protocol);
    return std::nullopt;
  }
  auto meta = v.as_object();
  boost::json::array with_ids;
  for (const auto& item : instances->as_array()) {
    if (!item.is_object()) continue;
    boost::json::object inst = item.as_object();
    if (auto* network = inst.if_contains("network_id"); network && network->is_string()) {
      inst["instance_id"] = as.id + "|" + std::string(network->as_string());
    }
    with_ids.push_back(std::move(inst));
  }
  meta["instances"] = std::move(with_ids);
  std::lock_guard lock(protocol_cache_mu_);
  protocol_cache_[key] = {meta, core::steady_ms() + kProtocolCacheMs};
  return meta;
}

std::optional<boost::json::object> AppServiceQueries::protocol(const std::string& protocol) const {
  std::optional<boost::json::object> merged;
  for (const auto& as : registry_.all()) {
    if (!as->url || std::find(as->protocols.begin(), as->protocols.end(), protocol) == as->protocols.end()) continue;
    auto meta = protocol_of(*as, protocol);
    if (!meta) continue;
    // The other fields from the first answer (they should agree), the instances of all.
    if (!merged) {
      merged = std::move(*meta);
      continue;
    }
    auto& all = (*merged)["instances"].as_array();
    for (auto& inst : (*meta)["instances"].as_array()) all.push_back(std::move(inst));
  }
  return merged;
}

boost::json::value AppServiceQueries::thirdparty(const std::string& protocol, const std::string& path_and_query,
                                                 bool merge_lists) const {
  boost::json::array merged;
  bool answered = false;
  for (const auto& as : registry_.all()) {
    if (!as->url) continue;
    if (!protocol.empty() &&
        std::find(as->protocols.begin(), as->protocols.end(), protocol) == as->protocols.end()) {
      continue;
    }
    auto r = call(*as, "GET", path_and_query, "", kQueryTimeoutMs);
    if (r.status < 200 || r.status >= 300) continue;
    boost::system::error_code ec;
    auto v = boost::json::parse(r.body, ec);
    if (ec) continue;
    if (!merge_lists) return v;
    answered = true;
    if (v.is_array()) {
      for (auto& item : v.as_array()) merged.push_back(item);
    }
  }
  if (!answered) throw MatrixError::not_found("No application service answered for this protocol");
  return merged;
}

}  // namespace trestle::service
