// Push rules and pushers (spec: pushrules.yaml, pusher.yaml).
#include "api/handler_util.hpp"
#include "api/routes.hpp"
#include "service/push/rule_editing.hpp"

namespace trestle::api {

using boost::json::object;
using http::Auth;
namespace push = service::push;

namespace {
void check_scope(const std::string& scope) {
  if (scope != "global") throw MatrixError::invalid_param("Unknown push rule scope '" + scope + "'");
}
}  // namespace

void add_push_routes(http::Router& r, service::Homeserver& hs) {
  auto& ud = hs.user_data;
  r.client("GET", "/pushrules/", Auth::required, [&ud](http::Request&, const service::Requester& who) {
    return ok(object{{"global", ud.push_rules(who.user_id)}});
  });
  // GET /pushrules (no trailing slash) is not an endpoint of the spec: 404 like any unknown path.
  r.client("GET", "/pushrules/{}/", Auth::required, [&ud](http::Request& req, const service::Requester& who) {
    check_scope(req.params[0]);
    return ok(ud.push_rules(who.user_id));
  });
  // The rules of one kind, as a list (as Synapse answers; the empty last segment is not a rule id).
  r.client("GET", "/pushrules/{}/{}/", Auth::required, [&ud](http::Request& req, const service::Requester& who) {
    check_scope(req.params[0]);
    push::check_kind(req.params[1]);
    auto rules = ud.push_rules(who.user_id);
    auto* list = rules.if_contains(req.params[1]);
    return http::Response::json(list && list->is_array() ? *list : boost::json::value(boost::json::array{}));
  });
  r.client("GET", "/pushrules/{}/{}/{}", Auth::required, [&ud](http::Request& req, const service::Requester& who) {
    check_scope(req.params[0]);
    auto rules = ud.push_rules(who.user_id);
    return ok(push::find_rule(rules, req.params[1], req.params[2]));
  });
  r.client("PUT", "/pushrules/{}/{}/{}", Auth::required, [&ud](http::Request& req, const service::Requester& who) {
    check_scope(req.params[0]);
    auto body = req.json_object();
    auto rules = ud.push_rules(who.user_id);
    push::put_rule(rules, req.params[1], req.params[2], body, req.query_param("before"), req.query_param("after"));
    ud.save_push_rules(who.user_id, rules);
    return ok();
  });
  r.client("DELETE", "/pushrules/{}/{}/{}", Auth::required, [&ud](http::Request& req, const service::Requester& who) {
    check_scope(req.params[0]);
    auto rules = ud.push_rules(who.user_id);
    push::delete_rule(rules, req.params[1], req.params[2]);
    ud.save_push_rules(who.user_id, rules);
    return ok();
  });
  for (const std::string attr : {"enabled", "actions"}) {
    r.client("GET", "/pushrules/{}/{}/{}/" + attr, Auth::required,
             [&ud, attr](http::Request& req, const service::Requester& who) {
               check_scope(req.params[0]);
               auto rules = ud.push_rules(who.user_id);
               auto& rule = push::find_rule(rules, req.params[1], req.params[2]);
               boost::json::value v = rule.contains(attr) ? rule.at(attr) : boost::json::value(true);
               return ok(object{{attr, v}});
             });
    r.client("PUT", "/pushrules/{}/{}/{}/" + attr, Auth::required,
             [&ud, attr](http::Request& req, const service::Requester& who) {
               check_scope(req.params[0]);
               auto body = req.json_object();
               auto* v = body.if_contains(attr);
               if (!v) throw MatrixError::missing_param("Missing '" + attr + "'");
               if (attr == "enabled" && !v->is_bool()) throw MatrixError::bad_json("'enabled' must be a boolean");
               if (attr == "actions" && !v->is_array()) throw MatrixError::bad_json("'actions' must be a list");
               auto rules = ud.push_rules(who.user_id);
               push::find_rule(rules, req.params[1], req.params[2])[attr] = *v;
               ud.save_push_rules(who.user_id, rules);
               return ok();
             });
  }

  // Malformed push-rule paths (no scope, no kind, no rule id, an unknown attribute): 400, as
  // Synapse answers and SyTest expects, instead of 404/405 for an unknown path. Added after every
  // real push-rule route, so only what they do not match lands here.
  auto malformed = [](http::Request&, const service::Requester&) -> http::Reply {
    throw MatrixError(400, "M_UNRECOGNIZED", "Malformed push rule path: expected /pushrules/global/{kind}/{ruleId}[/enabled|/actions]");
  };
  for (const char* method : {"GET", "PUT", "DELETE"}) {
    for (const char* tail : {"/pushrules/", "/pushrules/{}", "/pushrules/{}/{}", "/pushrules/{}/{}/{}/{}"}) {
      r.client(method, tail, Auth::required, malformed);
    }
  }

  r.client("GET", "/pushers", Auth::required, [&ud](http::Request&, const service::Requester& who) {
    return ok(object{{"pushers", ud.pushers(who.user_id)}});
  });
  r.client("POST", "/pushers/set", Auth::required, [&ud, &hs](http::Request& req, const service::Requester& who) {
    auto body = req.json_object();
    ud.set_pusher(who.user_id, body);
    auto* kind = body.if_contains("kind");
    if (kind && kind->is_string()) {
      hs.push.pusher_set(who.user_id, required_string(body, "app_id"), required_string(body, "pushkey"), who.device_id);
    }
    return ok();
  });
  // GET /notifications (spec: notifications.yaml).
  r.client("GET", "/notifications", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    auto only = req.query_param("only");
    return ok(hs.push.notifications(who.user_id, req.query_param("from"), query_int(req, "limit").value_or(50),
                                    only && *only == "highlight"));
  });
}

}  // namespace trestle::api
