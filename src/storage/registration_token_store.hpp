#pragma once
// Registration tokens (Synapse's admin API and the m.login.registration_token stage): the tokens,
// and the registration sessions holding one. A token's `pending` is the number of sessions that
// passed the stage with it, have not registered anyone yet and have not expired.
#include "storage/database.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace trestle::storage::registration_tokens {

struct Token {
  std::string token;
  std::optional<int64_t> uses_allowed;  // null: unlimited
  int64_t pending = 0;
  int64_t completed = 0;
  std::optional<int64_t> expiry_time;  // ms since the epoch; null: never expires
};

// Tokens in creation order; `valid` keeps only the valid (true) or only the invalid (false) ones:
// valid means not expired at `now_ms` and pending + completed below uses_allowed.
std::vector<Token> list(Connection& c, std::optional<bool> valid, int64_t now_ms);
std::optional<Token> get(Connection& c, const std::string& token, int64_t now_ms);
// Whether the token exists and is valid at `now_ms` (see list).
bool is_valid(Connection& c, const std::string& token, int64_t now_ms);
bool exists(Connection& c, const std::string& token);
// False when the token exists already.
bool create(Connection& c, const std::string& token, std::optional<int64_t> uses_allowed,
            std::optional<int64_t> expiry_time);
// Sets what is given (an empty inner optional sets null). False when there is no such token.
bool update(Connection& c, const std::string& token, std::optional<std::optional<int64_t>> uses_allowed,
            std::optional<std::optional<int64_t>> expiry_time);
// Also forgets the sessions holding it. False when there was no such token.
bool remove(Connection& c, const std::string& token);

// The token a registration session holds (pending or used), if any.
std::optional<std::string> session_token(Connection& c, const std::string& session_id);
// Makes `session_id` hold `token` until `expires_ts` if the token is valid at `now_ms` (counting
// the other sessions holding it); false when it is not. Sessions expired at `now_ms` are dropped.
bool hold(Connection& c, const std::string& session_id, const std::string& token, int64_t expires_ts,
          int64_t now_ms);
// The session registered someone: its hold turns into one completed use of the token (once).
void complete(Connection& c, const std::string& session_id);
// Forgets every hold (at start: registration sessions live in memory and died with the process).
void drop_all_holds(Connection& c);

}  // namespace trestle::storage::registration_tokens
