#pragma once
// The access log: one line per request, in Synapse's format (synapse/http/site.py,
// docs/usage/administration/request_log.md), on the logger `synapse.access.http.<port>`:
//   127.0.0.1 - 8008 - {@alice:hs} Processed request: 0.012sec/0.000sec 345B 200 "GET /_matrix/client/v3/sync?since=s1 HTTP/1.1" "Element/1.0"
// Synapse's per-request CPU and database figures are left out (Trestle does not measure them per
// request). Secrets never reach it: see redact_target.
#include "service/requester.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace trestle::http {

// The request target with secret values replaced by "<redacted>": query parameters whose name
// (percent-decoded, any case) contains "token", "password" or "secret", or is "ticket" (CAS);
// Synapse redacts access_token and client_secret only. And the token in the path of
// /_synapse/admin/v1/registration_tokens/{token}.
std::string redact_target(std::string_view target);

// Who made the request, as Synapse writes it between braces: the user; for an appservice acting
// as a user of its namespace "<sender>|<user>" (the entity that authenticated, then the one it
// controls, as Synapse logs an admin puppeting a user); a masqueraded device follows as
// " (DEVICE)". "None" when unauthenticated, as Synapse.
std::string requester_for_log(const service::Requester& r);

struct AccessRecord {
  std::string client_ip;
  unsigned short port = 0;
  std::string requester = "None";
  double processing_seconds = 0;  // request received (header read) to the answer ready
  double send_seconds = 0;        // answer ready to written
  uint64_t sent_bytes = 0;
  std::string code;  // "200", or "408!" when no answer was sent (Synapse's '!')
  std::string method;
  std::string target;  // already redacted
  std::string protocol = "HTTP/1.1";
  std::string user_agent;  // raw; escaped when formatted
};

std::string format_access_line(const AccessRecord& r);

}  // namespace trestle::http
