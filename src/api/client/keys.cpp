// End-to-end encryption keys (spec: keys.yaml, cross_signing.yaml).
#include "api/handler_util.hpp"
#include "api/routes.hpp"

namespace trestle::api {

using http::Auth;

void add_keys_routes(http::Router& r, service::Homeserver& hs) {
  r.client("POST", "/keys/upload", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    return ok(hs.keys.upload(who, req.json_object(true)));
  });
  r.client("POST", "/keys/query", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    return ok(hs.keys.query(who, req.json_object()));
  });
  r.client("POST", "/keys/claim", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    return ok(hs.keys.claim(who, req.json_object()));
  });
  r.client("GET", "/keys/changes", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    auto from = req.query_param("from");
    auto to = req.query_param("to");
    if (!from || !to) throw MatrixError::missing_param("Both 'from' and 'to' are required");
    return ok(hs.keys.changes(who, *from, *to));
  });
  http::Handler device_signing = [&hs](http::Request& req, const service::Requester& who) {
    hs.keys.upload_cross_signing(who, req.json_object(true));
    return ok();
  };
  http::Handler signatures = [&hs](http::Request& req, const service::Requester& who) {
    return ok(hs.keys.upload_signatures(who, req.json_object(true)));
  };
  r.client("POST", "/keys/device_signing/upload", Auth::required, device_signing);
  r.client("POST", "/keys/signatures/upload", Auth::required, signatures);
  // The MSC1756 paths that clients used before spec v1.1, which Synapse still serves.
  r.add("POST", "/_matrix/client/unstable/keys/device_signing/upload", Auth::required, device_signing);
  r.add("POST", "/_matrix/client/unstable/keys/signatures/upload", Auth::required, signatures);
}

}  // namespace trestle::api
