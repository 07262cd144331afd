#pragma once
// Third-party identifiers (email addresses) of accounts, the identity servers they were bound at
// through this server, and the validation sessions that prove a user owns an address.
#include "storage/database.hpp"

#include <optional>
#include <string>
#include <vector>

namespace trestle::storage::threepids {

struct Threepid {
  std::string user_id;
  std::string medium;
  std::string address;
  int64_t validated_at = 0;
  int64_t added_at = 0;
};

struct ValidationSession {
  std::string session_id;
  std::string medium;
  std::string address;
  std::string client_secret;
  std::string token;
  int64_t send_attempt = 0;
  std::optional<int64_t> validated_at;
  int64_t created_ts = 0;
};

// Adds (or moves to `user_id`) the address.
void upsert_threepid(Connection& c, const Threepid& t);
std::vector<Threepid> user_threepids(Connection& c, const std::string& user_id);
std::optional<std::string> user_for_threepid(Connection& c, const std::string& medium, const std::string& address);
// True when the user had the address.
bool delete_threepid(Connection& c, const std::string& user_id, const std::string& medium, const std::string& address);
void delete_user_threepids(Connection& c, const std::string& user_id);

void add_id_server(Connection& c, const std::string& user_id, const std::string& medium, const std::string& address,
                   const std::string& id_server);
void remove_id_server(Connection& c, const std::string& user_id, const std::string& medium,
                      const std::string& address, const std::string& id_server);
std::vector<std::string> id_servers(Connection& c, const std::string& user_id, const std::string& medium,
                                    const std::string& address);
// Every (medium, address, id_server) the user bound through us.
struct Binding {
  std::string medium, address, id_server;
};
std::vector<Binding> user_bindings(Connection& c, const std::string& user_id);

void insert_session(Connection& c, const ValidationSession& s);
std::optional<ValidationSession> get_session(Connection& c, const std::string& session_id);
// The newest session for this client secret and address, if any.
std::optional<ValidationSession> find_session(Connection& c, const std::string& client_secret,
                                              const std::string& medium, const std::string& address);
void set_send_attempt(Connection& c, const std::string& session_id, int64_t send_attempt);
void set_validated(Connection& c, const std::string& session_id, int64_t now_ms);
void delete_sessions_before(Connection& c, int64_t created_before_ms);

}  // namespace trestle::storage::threepids
