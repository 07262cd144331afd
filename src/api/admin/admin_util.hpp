#pragma once
// What the admin API's handlers share: routes under /_synapse/admin for server admins only.
#include "api/handler_util.hpp"
#include "http/router.hpp"
#include "service/homeserver.hpp"

namespace trestle::api::admin {

// 403 M_FORBIDDEN "You are not a server admin" unless the requester's account has the admin flag.
void require_admin(service::Homeserver& hs, const service::Requester& who);

// Synapse's `dir` query parameter, "f" or "b" (400 M_INVALID_PARAM otherwise): true for "b";
// `backwards` when absent.
bool query_backwards(const http::Request& req, bool backwards);

// Adds METHOD /_synapse/admin{tail} (tail like "/v2/users/{}"); the handler runs only for admins.
void route(http::Router& r, service::Homeserver& hs, const std::string& method, const std::string& tail,
           http::Handler handler);

}  // namespace trestle::api::admin
