// PUT /sendToDevice/{eventType}/{txnId} (spec: to_device.yaml). Delivery is in /sync.
#include "api/handler_util.hpp"
#include "api/routes.hpp"

namespace trestle::api {

using http::Auth;

void add_to_device_routes(http::Router& r, service::Homeserver& hs) {
  r.client("PUT", "/sendToDevice/{}/{}", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    hs.to_device.send(who, req.params[0], req.params[1], req.json_object());
    return ok();
  });
}

}  // namespace trestle::api
