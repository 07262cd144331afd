// Server-side search (spec: search.yaml). The work is in service/search.
#include "api/handler_util.hpp"
#include "api/routes.hpp"
#include "service/search.hpp"

#include <memory>

namespace trestle::api {

void add_search_routes(http::Router& r, service::Homeserver& hs) {
  auto search = std::make_shared<service::SearchService>(hs.db);
  r.client("POST", "/search", http::Auth::required, [search](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    return ok(search->search(who, body, req.query_param("next_batch")));
  });
}

}  // namespace trestle::api
