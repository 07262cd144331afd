#pragma once
// A small blocking SMTP client (RFC 5321) for the mail the homeserver sends (3PID validation
// links): plain TCP, no STARTTLS, no authentication. One message per connection; a deadline
// bounds the whole exchange.
#include <string>

namespace trestle::http {

// Sends `message` (headers, blank line, body; "\n" or "\r\n" line ends) from `from` to `to` (bare
// addresses). Returns "" on success, else what went wrong. Never throws.
std::string smtp_send(const std::string& host, int port, const std::string& from, const std::string& to,
                      const std::string& message, int timeout_ms);

}  // namespace trestle::http
