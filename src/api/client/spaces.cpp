// Space hierarchy, room summary (and MSC3266's unstable paths) and mutual rooms (spec:
// space_hierarchy.yaml, room_summary.yaml, mutual_rooms.yaml).
#include "api/appservice/offload.hpp"
#include "api/handler_util.hpp"
#include "api/routes.hpp"

namespace trestle::api {

using http::Auth;

namespace {

}  // namespace

void add_space_routes(http::Router& r, service::Homeserver& hs) {
  auto& spaces = hs.spaces;
  r.add("GET", "/_matrix/client/v1/rooms/{}/hierarchy", Auth::required,
        [&spaces](http::Request& req, const service::Requester& who) {
          service::HierarchyQuery q;
          q.suggested_only = query_bool(req, "suggested_only").value_or(false);
          q.max_depth = query_int(req, "max_depth");
          q.limit = query_int(req, "limit");
          q.from = req.query_param("from");
          return ok(spaces.hierarchy(who, req.params[0], q));
        });

  // Authentication is optional: a publicly accessible room may be previewed without an account.
  // An alias in an appservice's namespace may be created on demand: asking runs off the workers.
  auto summary = [&hs, &spaces](bool unstable) {
    return [&hs, &spaces, unstable](http::Request& req, const service::Requester& who) {
      std::string id = req.params[0];
      return offload_if(id.starts_with("#") && hs.appservice_queries.may_query_alias(id),
                        [&spaces, who, id, unstable] { return ok(spaces.summary(who, id, unstable)); });
    };
  };
  r.add("GET", "/_matrix/client/v1/room_summary/{}", Auth::optional, summary(false));
  r.add("GET", "/_matrix/client/unstable/im.nheko.summary/summary/{}", Auth::optional, summary(true));
  r.add("GET", "/_matrix/client/unstable/im.nheko.summary/rooms/{}/summary", Auth::optional, summary(true));

  r.add("GET", "/_matrix/client/v1/mutual_rooms", Auth::required,
        [&spaces](http::Request& req, const service::Requester& who) {
          return ok(spaces.mutual_rooms(who, req.query_param("user_id"), req.query_param("from")));
        });
  // MSC2666's unstable path (matrix-js-sdk's _unstable_getSharedRooms): the token is called
  // batch_token in the query and next_batch_token in the answer.
  r.add("GET", "/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms", Auth::required,
        [&spaces](http::Request& req, const service::Requester& who) {
          auto from = req.query_param("batch_token");
          if (!from) from = req.query_param("from");
          auto out = spaces.mutual_rooms(who, req.query_param("user_id"), from);
          if (auto* next = out.if_contains("next_batch")) out["next_batch_token"] = *next;
          return ok(out);
        });
}

}  // namespace trestle::api
