"""Registration tokens where a case file cannot reach: the flows beside the captcha stage, a
session's pending use given back when the server restarts (registration sessions live in memory),
the validity endpoint's rate limit and its 403 when registration is off."""

from harness import TestFailure

VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity"


def token_server(ctx, **config):
    srv = ctx.server(config=config)
    admin = ctx.register(srv, "admin", admin=True)
    srv.stop()
    srv.config_overrides["registration_requires_token"] = True
    srv.start()
    return srv, admin


def test_token_stage_comes_before_the_captcha(ctx):
    srv = ctx.server(config={"registration_requires_token": True, "enable_registration_captcha": True,
                             "recaptcha_public_key": "pub", "recaptcha_private_key": "priv",
                             "enable_registration_without_verification": None})
    res = srv.client().request("POST", "/register", body={"username": "captcha", "password": "sekrit-1234"})
    ctx.expect(res, 401, body={"flows": [{"stages": ["m.login.registration_token", "m.login.recaptcha", "m.login.dummy"]}],
                               "params": {"m.login.recaptcha": {"public_key": "pub"}}})


def test_without_the_setting_there_is_no_token_stage(ctx):
    srv = ctx.server()
    res = srv.client().request("POST", "/register", body={"username": "plain", "password": "sekrit-1234"})
    ctx.expect(res, 401, body={"flows": [{"stages": ["m.login.dummy"]}]})
    res = srv.client().request("POST", "/register", body={
        "username": "plain", "password": "sekrit-1234",
        "auth": {"type": "m.login.registration_token", "token": "x", "session": res.json["session"]}})
    ctx.expect(res, 401, "M_FORBIDDEN")


def test_pending_use_is_given_back_at_restart(ctx):
    srv, admin = token_server(ctx)
    ctx.expect(admin.request("POST", "/_synapse/admin/v1/registration_tokens/new",
                             body={"token": "one", "uses_allowed": 1}))
    client = srv.client()
    session = ctx.expect(client.request("POST", "/register", body={"username": "held", "password": "sekrit-1234"}),
                         401)["session"]
    ctx.expect(client.request("POST", "/register", body={
        "auth": {"type": "m.login.registration_token", "token": "one", "session": session}}), 401,
        body={"completed": ["m.login.registration_token"]})
    ctx.expect(admin.request("GET", "/_synapse/admin/v1/registration_tokens/one"), body={"pending": 1, "completed": 0})
    ctx.expect(srv.client().request("GET", VALIDITY, query={"token": "one"}), body={"valid": False})
    srv.stop()
    srv.start()
    # The session died with the process: its hold is gone and the token is free again.
    ctx.expect(admin.request("GET", "/_synapse/admin/v1/registration_tokens/one"), body={"pending": 0, "completed": 0})
    ctx.expect(srv.client().request("GET", VALIDITY, query={"token": "one"}), body={"valid": True})
    res = srv.client().request("POST", "/register", body={
        "username": "held", "password": "sekrit-1234",
        "auth": {"type": "m.login.registration_token", "token": "one", "session": session}})
    ctx.expect(res, 400, "M_UNKNOWN")  # the old session is unknown now


def test_validity_is_rate_limited_per_address(ctx):
    srv = ctx.server(config={"rc_registration_token_validity": {"per_second": 0.01, "burst_count": 3}})
    for _ in range(3):
        ctx.expect(srv.client().request("GET", VALIDITY, query={"token": "abc"}), body={"valid": False})
    res = srv.client().request("GET", VALIDITY, query={"token": "abc"})
    ctx.expect(res, 429, "M_LIMIT_EXCEEDED", body={"retry_after_ms": "$int"})


def test_validity_without_registration_is_403(ctx):
    srv = ctx.server(config={"enable_registration": False})
    res = srv.client().request("GET", VALIDITY, query={"token": "abc"})
    ctx.expect(res, 403, "M_FORBIDDEN")


def test_generated_config_documents_the_setting(ctx):
    srv = ctx.server(start=False)
    import subprocess
    done = subprocess.run([srv.binary, "generate-config", "--server-name", "example.org", "--data-dir", srv.data_dir],
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise TestFailure(f"generate-config failed: {done.stderr}")
    for needle in ("registration_requires_token", "rc_registration_token_validity"):
        if needle not in done.stdout:
            raise TestFailure(f"the generated config does not mention {needle}")


def test_setting_is_a_known_key(ctx):
    srv = ctx.server(config={"registration_requires_token": True, "rc_registration_token_validity":
                             {"per_second": 1, "burst_count": 2}})
    srv.stop()
    _, err = srv.log_paths()
    with open(err, encoding="utf-8", errors="replace") as f:
        log = f.read()
    with open(srv.log_paths()[0], encoding="utf-8", errors="replace") as f:
        log += f.read()
    if "unknown config key" in log:
        raise TestFailure("registration_requires_token or rc_registration_token_validity warned as unknown:\n" + log[-2000:])


def test_a_guest_upgrade_needs_a_token_too(ctx):
    """As in Synapse, upgrading a guest goes through the registration flows."""
    srv, admin = token_server(ctx, allow_guest_access=True)
    ctx.expect(admin.request("POST", "/_synapse/admin/v1/registration_tokens/new", body={"token": "g", "uses_allowed": 1}))
    c = srv.client()
    guest = ctx.expect(c.request("POST", "/register", query={"kind": "guest"}, body={}))
    localpart = guest["user_id"][1:].split(":")[0]
    body = {"username": localpart, "password": "sekrit-1234", "guest_access_token": guest["access_token"],
            "auth": {"type": "m.login.dummy"}}
    first = ctx.expect(c.request("POST", "/register", body=body), 401,
                       body={"flows": [{"stages": ["m.login.registration_token", "m.login.dummy"]}],
                             "completed": ["m.login.dummy"]})
    body["auth"] = {"type": "m.login.registration_token", "token": "g", "session": first["session"]}
    ctx.expect(c.request("POST", "/register", body=body), body={"user_id": guest["user_id"], "access_token": "$string"})
    ctx.expect(admin.request("GET", "/_synapse/admin/v1/registration_tokens/g"), body={"pending": 0, "completed": 1})
    ctx.expect(c.request("GET", "/account/whoami", token=guest["access_token"]), body={"is_guest": False})
