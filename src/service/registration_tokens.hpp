#pragma once
// Registration tokens (spec: "Token-authenticated registration", v1.2; Synapse's admin API
// docs/admin_api/registration_tokens.md). Admins create, list, change and delete tokens; the
// m.login.registration_token stage of POST /register checks one and holds it for the UIA session
// (`pending`), and the session's registration turns the hold into a completed use. A session
// that expires unused gives its hold back.
#include "storage/database.hpp"
#include "storage/registration_token_store.hpp"

#include <boost/json/object.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace trestle::service {

class RegistrationTokenService {
public:
  using Token = storage::registration_tokens::Token;
  static constexpr size_t kMaxTokenLength = 64;

  // `clock` gives ms since the epoch (tests pass their own). Forgets the holds of registration
  // sessions from before this start (those lived in memory).
  explicit RegistrationTokenService(storage::Database& db, std::function<int64_t()> clock = {});

  static boost::json::object to_json(const Token& t);
  // Whether `token` is 1 to 64 characters of [A-Za-z0-9._~-] (what the admin API accepts).
  static bool well_formed(const std::string& token);

  // Admin API. Bad values: 400 M_INVALID_PARAM with Synapse's messages; unknown tokens 404.
  std::vector<Token> list(std::optional<bool> valid);
  Token get(const std::string& token);
  Token create(const boost::json::object& body);
  Token update(const std::string& token, const boost::json::object& body);
  void remove(const std::string& token);

  // GET /register/m.login.registration_token/validity.
  bool is_valid(const std::string& token);

  // The m.login.registration_token stage for UIA session `session_id`, which ends at
  // `session_expires_ms` (epoch ms). `auth` is the client's auth dict. A session that already
  // holds a token passes again with the same one (400-style M_INVALID_PARAM for another); else
  // the token must be valid counting the other sessions' holds (M_UNAUTHORIZED), and is then held
  // by this session. Errors are MatrixErrors for the 401 the registration answers.
  void check_stage(const boost::json::object& auth, const std::string& session_id, int64_t session_expires_ms);
  // The session registered someone: its held token counts one completed use.
  void complete(const std::string& session_id);

private:
  int64_t now() const;

  storage::Database& db_;
  std::function<int64_t()> clock_;
};

}  // namespace trestle::service
