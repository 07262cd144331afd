"""Account flows that need another listener or an outside service: OpenID userinfo (on a listener
with the `openid` resource), the m.login.recaptcha registration stage (a fake siteverify API),
and CAS single sign-on (a fake CAS server): /login/sso/redirect, /login/cas/ticket, m.login.token
and the m.login.sso stage of user-interactive authentication."""

import http.server
import os
import re
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestFailure, default_config, to_yaml  # noqa: E402


class FakeService:
    """A plain-http server on 127.0.0.1 answering with `handler(method, path, query, body)` ->
    (status, content_type, body); every request is kept in `requests`."""

    def __init__(self, handler):
        self.requests = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                parsed = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parsed.query))
                outer.requests.append({"method": self.command, "path": parsed.path, "query": query, "body": body,
                                       "content_type": self.headers.get("Content-Type")})
                status, ctype, text = handler(self.command, parsed.path, query, body)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def raw_config(srv, extra, resources=("client",)):
    """The runner's config with `extra`, the listener's resources, and public_baseurl on the
    server's own port (filled in at start)."""
    cfg = default_config(srv.data_dir, "${port}")
    cfg["listeners"][0]["resources"] = [{"names": list(resources)}]
    cfg["public_baseurl"] = "http://127.0.0.1:${port}/"
    cfg.update(extra)
    return to_yaml(cfg).replace('"${port}"', "${port}")


def server_with(ctx, extra, resources=("client",)):
    srv = ctx.server(start=False)
    srv.raw_config = raw_config(srv, extra, resources)
    srv.start()
    return srv


# --- OpenID ------------------------------------------------------------------------------------

def test_openid_token_exchanged_for_the_user(ctx):
    srv = server_with(ctx, {}, resources=("client", "openid"))
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    body = ctx.expect(alice.request("POST", f"/user/{alice.user_id}/openid/request_token", body={}), 200,
                      body={"access_token": "$nonempty", "token_type": "Bearer", "matrix_server_name": "localhost",
                            "expires_in": {"$ge": 60}})
    c = srv.client()
    ctx.expect(c.request("GET", "/_matrix/federation/v1/openid/userinfo", query={"access_token": body["access_token"]}),
               200, body={"sub": alice.user_id})
    ctx.expect(c.request("GET", "/_matrix/federation/v1/openid/userinfo", query={"access_token": "an/invalid/token"}),
               401, "M_UNKNOWN_TOKEN")
    ctx.expect(c.request("GET", "/_matrix/federation/v1/openid/userinfo"), 401, "M_MISSING_TOKEN")
    # The OpenID token is not an access token, and no one asks for another user's.
    ctx.expect(c.request("GET", "/account/whoami", token=body["access_token"]), 401, "M_UNKNOWN_TOKEN")
    ctx.expect(bob.request("POST", f"/user/{alice.user_id}/openid/request_token", body={}), 403, "M_FORBIDDEN")
    ctx.expect(c.request("POST", f"/user/{alice.user_id}/openid/request_token", body={}), 401, "M_MISSING_TOKEN")


def test_openid_userinfo_not_served_on_a_client_only_listener(ctx):
    srv = server_with(ctx, {}, resources=("client",))
    alice = ctx.register(srv, "alice")
    token = ctx.expect(alice.request("POST", f"/user/{alice.user_id}/openid/request_token", body={}))["access_token"]
    ctx.expect(srv.client().request("GET", "/_matrix/federation/v1/openid/userinfo", query={"access_token": token}),
               404, "M_UNRECOGNIZED")


# --- reCAPTCHA ---------------------------------------------------------------------------------

def recaptcha_service():
    def handler(method, path, query, body):
        form = dict(urllib.parse.parse_qsl(body))
        ok = path == "/recaptcha/api/siteverify" and form.get("secret") == "private-key" and form.get("response") == "good"
        return 200, "application/json", '{"success": %s}' % ("true" if ok else "false")
    return FakeService(handler)


def recaptcha_config(fake, required=True):
    return {"recaptcha_public_key": "public-key", "recaptcha_private_key": "private-key",
            "recaptcha_siteverify_api": fake.url + "/recaptcha/api/siteverify",
            "enable_registration_captcha": required}


def test_registration_with_a_recaptcha(ctx):
    fake = recaptcha_service()
    try:
        srv = server_with(ctx, recaptcha_config(fake))
        c = srv.client()
        first = ctx.expect(c.request("POST", "/register", body={"username": "capt", "password": "sekrit-1234"}), 401,
                           body={"flows": [{"stages": ["m.login.recaptcha", "m.login.dummy"]}],
                                 "params": {"m.login.recaptcha": {"public_key": "public-key"}}, "session": "$nonempty"})
        session = first["session"]
        ctx.expect(c.request("POST", "/register", body={"auth": {"type": "m.login.dummy", "session": session}}), 401,
                   body={"completed": ["m.login.dummy"], "errcode": "$absent"})
        ctx.expect(c.request("POST", "/register",
                             body={"auth": {"type": "m.login.recaptcha", "response": "bad", "session": session}}),
                   401, "M_UNAUTHORIZED", body={"flows": "$array", "session": session})
        ctx.expect(c.request("POST", "/register", body={"auth": {"type": "m.login.recaptcha", "session": session}}),
                   401, "M_CAPTCHA_NEEDED")
        ctx.expect(c.request("POST", "/register",
                             body={"auth": {"type": "m.login.recaptcha", "response": "good", "session": session}}),
                   200, body={"user_id": "@capt:localhost", "access_token": "$nonempty"})
        posts = [r for r in fake.requests if r["path"] == "/recaptcha/api/siteverify"]
        if len(posts) != 2 or posts[-1]["method"] != "POST" or \
                not (posts[-1]["content_type"] or "").startswith("application/x-www-form-urlencoded"):
            raise TestFailure(f"siteverify requests: {posts}")
        form = dict(urllib.parse.parse_qsl(posts[-1]["body"]))
        if form.get("remoteip") != "127.0.0.1":
            raise TestFailure(f"siteverify form: {form}")
    finally:
        fake.close()


def test_recaptcha_stage_checkable_when_not_required(ctx):
    # SyTest's "Register with a recaptcha": Synapse checks the stage even when no flow needs it.
    fake = recaptcha_service()
    try:
        srv = server_with(ctx, recaptcha_config(fake, required=False))
        c = srv.client()
        ctx.expect(c.request("POST", "/register", body={"username": "capt2", "password": "sekrit-1234",
                                                        "auth": {"type": "m.login.recaptcha", "response": "good"}}),
                   401, body={"completed": ["m.login.recaptcha"], "flows": [{"stages": ["m.login.dummy"]}]})
    finally:
        fake.close()


def test_recaptcha_service_down_is_a_server_error(ctx):
    fake = FakeService(lambda m, p, q, b: (503, "text/plain", "down"))
    try:
        srv = server_with(ctx, recaptcha_config(fake))
        res = srv.client().request("POST", "/register", body={"username": "capt3", "password": "sekrit-1234",
                                                              "auth": {"type": "m.login.recaptcha", "response": "good"}})
        ctx.expect(res, 500, "M_UNKNOWN")
    finally:
        fake.close()


# --- CAS ---------------------------------------------------------------------------------------

CAS_OK = """<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'>
    <cas:authenticationSuccess>
         <cas:user>{user}</cas:user>
         <cas:attributes></cas:attributes>
    </cas:authenticationSuccess>
</cas:serviceResponse>"""
CAS_FAIL = """<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'>
    <cas:authenticationFailure code="INVALID_TICKET">no</cas:authenticationFailure>
</cas:serviceResponse>"""


def cas_service(users):
    """`users` maps tickets to the CAS user names they validate as."""
    def handler(method, path, query, body):
        if path == "/cas/proxyValidate" and query.get("ticket") in users:
            return 200, "text/plain", CAS_OK.format(user=users[query["ticket"]])
        return 200, "text/plain", CAS_FAIL
    return FakeService(handler)


def test_login_with_cas(ctx):
    fake = cas_service({"golden": "Cas User!"})
    try:
        srv = server_with(ctx, {"cas_config": {"server_url": fake.url + "/cas"}})
        c = srv.client()
        ctx.expect(c.request("GET", "/login"), 200, body={"flows": {"$contains": [
            {"type": "m.login.sso"}, {"type": "m.login.cas"}, {"type": "m.login.token"}, {"type": "m.login.password"}]}})
        client_url = "https://client.example?p=http%3A%2F%2Fserver"
        res = c.request("GET", "/login/sso/redirect", query={"redirectUrl": client_url})
        ctx.expect(res, 302)
        location = res.headers.get("location", "")
        if not location.startswith(fake.url + "/cas/login?service="):
            raise TestFailure(f"redirect to {location!r}")
        service = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))["service"]
        expected_service = (f"{srv.base_url}/_matrix/client/r0/login/cas/ticket?redirectUrl="
                            + urllib.parse.quote(client_url, safe=""))
        if service != expected_service:
            raise TestFailure(f"service {service!r}, expected {expected_service!r}")
        ctx.expect(c.request("GET", "/login/cas/redirect", query={"redirectUrl": client_url}), 302)
        # The identity provider /login lists is "cas"; any other idpId is unknown.
        ctx.expect(c.request("GET", "/login/sso/redirect/cas", query={"redirectUrl": client_url}), 302)
        ctx.expect(c.request("GET", "/login/sso/redirect/oidc-github", query={"redirectUrl": client_url}), 404, "M_NOT_FOUND")

        # The browser comes back from CAS with a ticket; we check it at the CAS server.
        path = urllib.parse.urlsplit(service)
        res = c.request("GET", f"{path.path}?{path.query}&ticket=golden")
        ctx.expect(res, 200)
        validate = [r for r in fake.requests if r["path"] == "/cas/proxyValidate"][-1]
        if validate["query"] != {"ticket": "golden", "service": expected_service}:
            raise TestFailure(f"proxyValidate query {validate['query']}")
        page = res.body.decode()
        m = re.search(r'href="https://client\.example\?p=http%3A%2F%2Fserver&amp;loginToken=([^"&]+)"', page)
        if not m:
            raise TestFailure(f"no loginToken link in {page!r}")
        token = m.group(1)
        ctx.expect(c.request("POST", "/login", body={"type": "m.login.token", "token": token, "device_id": "CASDEV"}),
                   200, body={"user_id": "@cas=20user=21:localhost", "device_id": "CASDEV", "access_token": "$nonempty"})
        ctx.expect(c.request("POST", "/login", body={"type": "m.login.token", "token": token}), 403, "M_FORBIDDEN")
        ctx.expect(c.request("POST", "/login", body={"type": "m.login.token", "token": "made-up"}), 403, "M_FORBIDDEN")

        # A refused ticket logs no one in.
        res = c.request("GET", f"{path.path}?{path.query}&ticket=forged")
        ctx.expect(res, 401, "M_UNAUTHORIZED")
        ctx.expect(c.request("GET", "/login/cas/ticket"), 400, "M_MISSING_PARAM")
    finally:
        fake.close()


def test_no_sso_without_cas_config(ctx):
    srv = server_with(ctx, {})
    c = srv.client()
    ctx.expect(c.request("GET", "/login"), 200, body={"flows": {"$not_contains": [{"type": "m.login.sso"}]}})
    ctx.expect(c.request("GET", "/login/sso/redirect", query={"redirectUrl": "https://x"}), 404, "M_UNRECOGNIZED")
    ctx.expect(c.request("GET", "/login/sso/redirect/cas", query={"redirectUrl": "https://x"}), 404, "M_UNRECOGNIZED")
    ctx.expect(c.request("POST", "/login", body={"type": "m.login.token", "token": "x"}), 403, "M_FORBIDDEN")


def test_user_interactive_auth_with_sso(ctx):
    srv = None
    fake = None
    try:
        users = {}
        fake = cas_service(users)
        srv = server_with(ctx, {"cas_config": {"server_url": fake.url + "/cas"}})
        alice = ctx.register(srv, "alice")
        users["alice-ticket"] = alice.localpart
        users["other-ticket"] = "someone-else"
        c = srv.client()
        for device in ("DEV1", "DEV2"):
            ctx.expect(c.request("POST", "/login", body={"type": "m.login.password", "device_id": device,
                                                         "identifier": {"type": "m.id.user", "user": alice.localpart},
                                                         "password": alice.password}))

        # The stage is offered; passing CAS as alice completes it.
        first = ctx.expect(alice.request("DELETE", "/devices/DEV1", body={}), 401,
                           body={"flows": {"$contains": [{"stages": ["m.login.sso"]}, {"stages": ["m.login.password"]}]}})
        session = first["session"]
        res = c.request("GET", "/auth/m.login.sso/fallback/web", query={"session": session})
        ctx.expect(res, 302)
        if "/cas/login?service=" not in res.headers.get("location", ""):
            raise TestFailure(f"fallback redirect {res.headers.get('location')!r}")
        ctx.expect(c.request("GET", "/_matrix/client/r0/login/cas/ticket",
                             query={"session": session, "ticket": "alice-ticket"}), 200)
        ctx.expect(alice.request("DELETE", "/devices/DEV1", body={"auth": {"session": session}}), 200)
        ctx.expect(alice.request("GET", "/devices/DEV1"), 404, "M_NOT_FOUND")

        # CAS naming another user makes the session's request fail, and the device stays.
        session = ctx.expect(alice.request("DELETE", "/devices/DEV2", body={}), 401)["session"]
        ctx.expect(c.request("GET", "/_matrix/client/r0/login/cas/ticket",
                             query={"session": session, "ticket": "other-ticket"}), 200)
        ctx.expect(alice.request("DELETE", "/devices/DEV2", body={"auth": {"session": session}}), 403, "M_FORBIDDEN")
        ctx.expect(alice.request("GET", "/devices/DEV2"), 200, body={"device_id": "DEV2"})
        ctx.expect(c.request("GET", "/_matrix/client/r0/login/cas/ticket",
                             query={"session": "no-such-session", "ticket": "alice-ticket"}), 400, "M_UNKNOWN")
    finally:
        if fake:
            fake.close()
