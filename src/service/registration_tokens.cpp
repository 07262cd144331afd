#include "service/registration_tokens.hpp"

#include "core/clock.hpp"
#include "core/error.hpp"

#include <sodium.h>

namespace trestle::service {

namespace store = storage::registration_tokens;

namespace {

constexpr std::string_view kAllowedChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-";

std::string random_token(size_t length) {
  std::string s(length, ' ');
  for (auto& ch : s) ch = kAllowedChars[randombytes_uniform(static_cast<uint32_t>(kAllowedChars.size()))];
  return s;
}

// An integer as Python's `type(x) is int` sees it: JSON integers, not booleans or 1.0.
std::optional<int64_t> as_int(const boost::json::value& v) {
  if (v.is_int64()) return v.as_int64();
  if (v.is_uint64() && v.as_uint64() <= static_cast<uint64_t>(INT64_MAX)) return static_cast<int64_t>(v.as_uint64());
  return std::nullopt;
}

// uses_allowed: a non-negative integer or null.
std::optional<int64_t> uses_allowed_value(const boost::json::value& v) {
  if (v.is_null()) return std::nullopt;
  auto n = as_int(v);
  if (!n || *n < 0) throw MatrixError::invalid_param("uses_allowed must be a non-negative integer or null");
  return n;
}

// expiry_time: an integer (ms since the epoch) not in the past, or null.
std::optional<int64_t> expiry_time_value(const boost::json::value& v, int64_t now) {
  if (v.is_null()) return std::nullopt;
  auto n = as_int(v);
  if (!n) throw MatrixError::invalid_param("expiry_time must be an integer or null");
  if (*n < now) throw MatrixError::invalid_param("expiry_time must not be in the past");
  return n;
}

boost::json::value or_null(const std::optional<int64_t>& v) {
  if (v) return boost::json::value(*v);
  return nullptr;
}

}  // namespace

RegistrationTokenService::RegistrationTokenService(storage::Database& db, std::function<int64_t()> clock)
    : db_(db), clock_(std::move(clock)) {
  db_.write([](storage::Connection& c) { store::drop_all_holds(c); });
}

int64_t RegistrationTokenService::now() const { return clock_ ? clock_() : core::now_ms(); }

boost::json::object RegistrationTokenService::to_json(const Token& t) {
  return boost::json::object{{"token", t.token},
                             {"uses_allowed", or_null(t.uses_allowed)},
                             {"pending", t.pending},
                             {"completed", t.completed},
                             {"expiry_time", or_null(t.expiry_time)}};
}

bool RegistrationTokenService::well_formed(const std::string& token) {
  return !token.empty() && token.size() <= kMaxTokenLength &&
         token.find_first_not_of(kAllowedChars) == std::string::npos;
}

std::vector<RegistrationTokenService::Token> RegistrationTokenService::list(std::optional<bool> valid) {
  int64_t t = now();
  return db_.read([&](storage::Connection& c) { return store::list(c, valid, t); });
}

RegistrationTokenService::Token RegistrationTokenService::get(const std::string& token) {
  int64_t t = now();
  auto found = db_.read([&](storage::Connection& c) { return store::get(c, token, t); });
  if (!found) throw MatrixError::not_found("No such registration token: " + token);
  return *found;
}

RegistrationTokenService::Token RegistrationTokenService::create(const boost::json::object& body) {
  int64_t t = now();
  std::optional<std::string> token;
  size_t length = 16;
  if (auto* v = body.if_contains("token")) {
    if (!v->is_string()) throw MatrixError::invalid_param("token must be a string");
    token = std::string(v->as_string());
    if (token->empty() || token->size() > kMaxTokenLength) {
      throw MatrixError::invalid_param("token must not be empty and must not be longer than 64 characters");
    }
    if (!well_formed(*token)) {
      throw MatrixError::invalid_param("token must consist only of characters matched by the regex [A-Za-z0-9._~-]");
    }
  } else if (auto* v = body.if_contains("length")) {
    auto n = as_int(*v);
    if (!n) throw MatrixError::invalid_param("length must be an integer");
    if (*n <= 0 || *n > static_cast<int64_t>(kMaxTokenLength)) {
      throw MatrixError::invalid_param("length must be greater than zero and not greater than 64");
    }
    length = static_cast<size_t>(*n);
  }
  std::optional<int64_t> uses_allowed;
  if (auto* v = body.if_contains("uses_allowed")) uses_allowed = uses_allowed_value(*v);
  std::optional<int64_t> expiry_time;
  if (auto* v = body.if_contains("expiry_time")) expiry_time = expiry_time_value(*v, t);

  if (token) {
    bool created = db_.write([&](storage::Connection& c) { return store::create(c, *token, uses_allowed, expiry_time); });
    if (!created) throw MatrixError::invalid_param("Token already exists: " + *token);
  } else {
    // A random token; a few tries when short tokens collide (Synapse tries three times).
    for (int attempt = 0; attempt < 3 && !token; ++attempt) {
      std::string candidate = random_token(length);
      if (db_.write([&](storage::Connection& c) { return store::create(c, candidate, uses_allowed, expiry_time); })) {
        token = candidate;
      }
    }
    if (!token) throw MatrixError::unknown("Unable to generate a unique registration token");
  }
  return Token{*token, uses_allowed, 0, 0, expiry_time};
}

RegistrationTokenService::Token RegistrationTokenService::update(const std::string& token,
                                                                  const boost::json::object& body) {
  int64_t t = now();
  std::optional<std::optional<int64_t>> uses_allowed;
  std::optional<std::optional<int64_t>> expiry_time;
  if (auto* v = body.if_contains("uses_allowed")) uses_allowed = uses_allowed_value(*v);
  if (auto* v = body.if_contains("expiry_time")) expiry_time = expiry_time_value(*v, t);
  auto updated = db_.write([&](storage::Connection& c) -> std::optional<Token> {
    if (!store::update(c, token, uses_allowed, expiry_time)) return std::nullopt;
    return store::get(c, token, t);
  });
  if (!updated) throw MatrixError::not_found("No such registration token: " + token);
  return *updated;
}

void RegistrationTokenService::remove(const std::string& token) {
  if (!db_.write([&](storage::Connection& c) { return store::remove(c, token); })) {
    throw MatrixError::not_found("No such registration token: " + token);
  }
}

bool RegistrationTokenService::is_valid(const std::string& token) {
  if (!well_formed(token)) return false;  // never stored: no need to look
  int64_t t = now();
  return db_.read([&](storage::Connection& c) { return store::is_valid(c, token, t); });
}

void RegistrationTokenService::check_stage(const boost::json::object& auth, const std::string& session_id,
                                           int64_t session_expires_ms) {
  auto* v = auth.if_contains("token");
  if (!v) throw MatrixError::missing_param("Missing registration token");
  if (!v->is_string()) throw MatrixError::invalid_param("Registration token must be a string");
  std::string token(v->as_string());
  int64_t t = now();
  // The client's own session id is part of the stage's auth dict (the spec; Synapse insists).
  auto* sid = auth.if_contains("session");
  if (!sid || !sid->is_string()) throw MatrixError::missing_param("Missing UIA session");
  auto held = db_.write([&](storage::Connection& c) -> std::optional<bool> {
    // Passed before in this session: the same token passes again without a second hold.
    if (auto existing = store::session_token(c, session_id)) return *existing == token;
    if (!well_formed(token)) return std::nullopt;
    if (!store::hold(c, session_id, token, session_expires_ms, t)) return std::nullopt;
    return true;
  });
  if (!held) throw MatrixError(401, "M_UNAUTHORIZED", "Invalid registration token");
  if (!*held) throw MatrixError::invalid_param("Registration token has changed");
}

void RegistrationTokenService::complete(const std::string& session_id) {
  db_.write([&](storage::Connection& c) { store::complete(c, session_id); });
}

}  // namespace trestle::service
