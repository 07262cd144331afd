#pragma once
// Who is making a request, once authentication has run.
#include <optional>
#include <string>

namespace trestle::service {

struct AppService;  // appservice registration (service/appservice)

struct Requester {
  std::string user_id;                   // empty for unauthenticated requests
  std::optional<std::string> device_id;  // none for an appservice acting without device_id
  std::string access_token_hash;         // identifies the token used (for logout)
  const AppService* appservice = nullptr;  // set when the as_token authenticated the request
  bool is_guest = false;                   // a guest account (POST /register?kind=guest)
  bool locked = false;                     // the account is locked (401 M_USER_LOCKED but for logout)
  bool shadow_banned = false;              // admin shadow-ban: writes seem to succeed, reach no one
  bool authenticated() const { return !user_id.empty(); }
};

}  // namespace trestle::service
