// Room aliases and the public room directory (spec: directory.yaml, list_public_rooms.yaml).
#include "api/appservice/offload.hpp"
#include "api/handler_util.hpp"
#include "api/routes.hpp"

namespace trestle::api {

using boost::json::object;
using http::Auth;

void add_directory_routes(http::Router& r, service::Homeserver& hs) {
  auto& rooms = hs.rooms;
  r.client("PUT", "/directory/room/{}", Auth::required, [&hs, &rooms](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    service::check_alias_namespace(hs.appservices, who, req.params[0]);
    rooms.directory.create_alias(who, req.params[0], required_string(body, "room_id"));
    return ok();
  });
  r.client("GET", "/directory/room/{}", Auth::none, [&hs, &rooms](http::Request& req, const service::Requester&) {
    // An alias in an appservice's namespace may be created on demand: asking runs off the workers.
    std::string alias = req.params[0];
    return offload_if(hs.appservice_queries.may_query_alias(alias),
                      [&rooms, alias] { return ok(rooms.directory.resolve_alias(alias)); });
  });
  r.client("DELETE", "/directory/room/{}", Auth::required, [&rooms](http::Request& req, const service::Requester& who) {
    rooms.directory.delete_alias(who, req.params[0]);
    return ok();
  });
  r.client("GET", "/rooms/{}/aliases", Auth::required, [&rooms](http::Request& req, const service::Requester& who) {
    return ok(object{{"aliases", rooms.directory.room_aliases(who, req.params[0])}});
  });
  r.client("GET", "/directory/list/room/{}", Auth::none, [&rooms](http::Request& req, const service::Requester&) {
    return ok(object{{"visibility", rooms.directory.room_visibility(req.params[0])}});
  });
  r.client("PUT", "/directory/list/room/{}", Auth::required, [&rooms](http::Request& req, const service::Requester& who) {
    auto body = req.json_object(true);
    rooms.directory.set_room_visibility(who, req.params[0], optional_string(body, "visibility").value_or("public"));
    return ok();
  });
  r.client("GET", "/publicRooms", Auth::optional, [&rooms](http::Request& req, const service::Requester&) {
    auto limit = query_int(req, "limit").value_or(100);
    return ok(rooms.directory.public_rooms(limit, req.query_param("since"), std::nullopt));
  });
  r.client("POST", "/publicRooms", Auth::required, [&rooms](http::Request& req, const service::Requester&) {
    auto body = req.json_object(true);
    int64_t limit = 100;
    if (auto* l = body.if_contains("limit"); l && l->is_int64()) limit = l->as_int64();
    std::optional<std::string> search;
    if (auto* f = body.if_contains("filter"); f && f->is_object()) search = optional_string(f->as_object(), "generic_search_term");
    service::DirectoryScope scope;
    scope.include_all_networks = optional_bool(body, "include_all_networks").value_or(false);
    scope.third_party_instance_id = optional_string(body, "third_party_instance_id");
    if (scope.include_all_networks && scope.third_party_instance_id) {
      throw MatrixError::invalid_param("include_all_networks and third_party_instance_id exclude each other");
    }
    return ok(rooms.directory.public_rooms(limit, optional_string(body, "since"), search, scope));
  });
}

}  // namespace trestle::api
