// Event relationships (spec: relations.yaml, threads_list.yaml). The work is in service/relations.
#include "api/handler_util.hpp"
#include "api/routes.hpp"
#include "core/identifiers.hpp"

namespace trestle::api {

using http::Auth;

namespace {

const std::string& room_param(const http::Request& req) {
  if (!core::is_valid_room_id(req.params[0])) throw MatrixError::invalid_param("Invalid room ID");
  return req.params[0];
}

// `recurse` (spec v1.10; MSC3981's unstable name too): true or false.
bool recurse_param(const http::Request& req) {
  auto v = req.query_param("recurse");
  if (!v) v = req.query_param("org.matrix.msc3981.recurse");
  if (!v) return false;
  if (*v == "true") return true;
  if (*v == "false") return false;
  throw MatrixError::invalid_param("recurse must be true or false");
}

}  // namespace

void add_relation_routes(http::Router& r, service::Homeserver& hs) {
  auto relations = [&hs](http::Request& req, const service::Requester& who) {
    service::RelationsQuery q;
    if (req.params.size() > 2) q.rel_type = req.params[2];
    if (req.params.size() > 3) q.event_type = req.params[3];
    q.from = req.query_param("from");
    q.to = req.query_param("to");
    q.dir = req.query_param("dir").value_or("b");
    q.limit = query_int(req, "limit");
    q.recurse = recurse_param(req);
    return ok(hs.relations.relations(who, room_param(req), req.params[1], q));
  };
  r.add("GET", "/_matrix/client/v1/rooms/{}/relations/{}", Auth::required, relations);
  r.add("GET", "/_matrix/client/v1/rooms/{}/relations/{}/{}", Auth::required, relations);
  r.add("GET", "/_matrix/client/v1/rooms/{}/relations/{}/{}/{}", Auth::required, relations);

  r.add("GET", "/_matrix/client/v1/rooms/{}/threads", Auth::required,
        [&hs](http::Request& req, const service::Requester& who) {
          return ok(hs.relations.threads(who, room_param(req), req.query_param("include").value_or("all"),
                                         req.query_param("from"), query_int(req, "limit")));
        });
}

}  // namespace trestle::api
