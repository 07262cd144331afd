"""Token lifetimes (access tokens that expire with soft_logout, refresh token and session
lifetimes), login tokens that expire, and server admins locking and suspending accounts (spec
v1.18 admin lock/suspend; `trestle set-admin` makes the admin)."""

import os
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestFailure, default_config, to_yaml  # noqa: E402


def login(ctx, srv, user, **extra):
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.localpart},
            "password": user.password}
    body.update(extra)
    res = srv.client().request("POST", "/login", body=body)
    ctx.expect(res, 200)
    return res.json


def whoami(srv, token):
    return srv.client().request("GET", "/account/whoami", token=token)


def wait_past(ms):
    time.sleep(ms / 1000 + 0.15)


def test_refreshable_access_tokens_expire_with_soft_logout_and_refresh_works(ctx):
    srv = ctx.server(config={"refreshable_access_token_lifetime": "1200ms",
                             "nonrefreshable_access_token_lifetime": "1200ms"})
    alice = ctx.register(srv, "alice")
    session = login(ctx, srv, alice, refresh_token=True)
    plain = login(ctx, srv, alice)
    if not 0 < session["expires_in_ms"] <= 1200 or not 0 < plain["expires_in_ms"] <= 1200:
        raise TestFailure(f"expires_in_ms not within the configured lifetime: {session} {plain}")
    ctx.expect(whoami(srv, session["access_token"]), 200, body={"user_id": alice.user_id})
    wait_past(1200)
    for token in (session["access_token"], plain["access_token"]):
        ctx.expect(whoami(srv, token), 401, "M_UNKNOWN_TOKEN", body={"soft_logout": True})
    res = srv.client().request("POST", "/refresh", body={"refresh_token": session["refresh_token"]})
    ctx.expect(res, 200, body={"access_token": "$nonempty", "refresh_token": "$nonempty", "expires_in_ms": {"$le": 1200}})
    ctx.expect(whoami(srv, res.json["access_token"]), 200, body={"device_id": session["device_id"]})
    # A non-refreshable session comes back by logging in again to the same device.
    again = login(ctx, srv, alice, device_id=plain["device_id"])
    ctx.expect(whoami(srv, again["access_token"]), 200, body={"device_id": plain["device_id"]})


def test_refresh_token_lifetime(ctx):
    srv = ctx.server(config={"refresh_token_lifetime": "1s"})
    alice = ctx.register(srv, "alice")
    session = login(ctx, srv, alice, refresh_token=True)
    wait_past(1000)
    res = srv.client().request("POST", "/refresh", body={"refresh_token": session["refresh_token"]})
    ctx.expect(res, 401, "M_UNKNOWN_TOKEN", body={"soft_logout": True})


def test_session_lifetime_caps_every_token(ctx):
    srv = ctx.server(config={"session_lifetime": "1s"})
    alice = ctx.register(srv, "alice")
    session = login(ctx, srv, alice, refresh_token=True)
    plain = login(ctx, srv, alice)
    if not 0 < session["expires_in_ms"] <= 1000 or not 0 < plain["expires_in_ms"] <= 1000:
        raise TestFailure(f"expires_in_ms not capped by session_lifetime: {session} {plain}")
    res = srv.client().request("POST", "/refresh", body={"refresh_token": session["refresh_token"]})
    ctx.expect(res, 200, body={"expires_in_ms": {"$le": 1000}})
    wait_past(1000)
    res = srv.client().request("POST", "/refresh", body={"refresh_token": res.json["refresh_token"]})
    ctx.expect(res, 401, "M_UNKNOWN_TOKEN", body={"soft_logout": True})
    ctx.expect(whoami(srv, plain["access_token"]), 401, "M_UNKNOWN_TOKEN", body={"soft_logout": True})


def test_refresh_tokens_off(ctx):
    # refreshable_access_token_lifetime: null turns refresh tokens off (Synapse): a client asking
    # for one gets a plain, non-expiring access token.
    srv = ctx.server(start=False)
    cfg = default_config(srv.data_dir, "${port}")
    cfg["refreshable_access_token_lifetime"] = None
    srv.raw_config = to_yaml(cfg).replace('"${port}"', "${port}")
    srv.start()
    alice = ctx.register(srv, "alice")
    session = login(ctx, srv, alice, refresh_token=True)
    if "refresh_token" in session or "expires_in_ms" in session:
        raise TestFailure(f"refresh token issued although refreshable_access_token_lifetime is null: {session}")


def test_login_token_expires_and_needs_no_ui_auth_when_configured(ctx):
    srv = ctx.server(config={"login_via_existing_session": {"enabled": True, "require_ui_auth": False,
                                                            "token_timeout": "1s"}})
    alice = ctx.register(srv, "alice")
    res = alice.request("POST", "/_matrix/client/v1/login/get_token", body={})
    ctx.expect(res, 200, body={"login_token": "$nonempty", "expires_in_ms": 1000})
    first = res.json["login_token"]
    res = alice.request("POST", "/_matrix/client/v1/login/get_token", body={})
    ctx.expect(res, 200)
    second = res.json["login_token"]
    res = srv.client().request("POST", "/login", body={"type": "m.login.token", "token": first})
    ctx.expect(res, 200, body={"user_id": alice.user_id})
    wait_past(1000)
    res = srv.client().request("POST", "/login", body={"type": "m.login.token", "token": second})
    ctx.expect(res, 403, "M_FORBIDDEN")


def set_admin(ctx, srv, user_id):
    out = subprocess.run([ctx.binary, "--config", srv.config_path, "set-admin", user_id],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise TestFailure(f"set-admin failed ({out.returncode}): {out.stdout} {out.stderr}")


def admin_path(kind, user_id):
    return f"/_matrix/client/v1/admin/{kind}/{urllib.parse.quote(user_id, safe='')}"


def test_set_admin_refuses_an_unknown_user(ctx):
    srv = ctx.server()
    out = subprocess.run([ctx.binary, "--config", srv.config_path, "set-admin", "@nobody:localhost"],
                         capture_output=True, text=True, timeout=30)
    if out.returncode == 0:
        raise TestFailure("set-admin accepted an unknown user")


def test_admin_lock_errors(ctx):
    srv = ctx.server()
    admin, bob, other_admin = (ctx.register(srv, n) for n in ("admin", "bob", "other"))
    set_admin(ctx, srv, admin.user_id)
    set_admin(ctx, srv, other_admin.user_id)
    res = admin.request("GET", "/capabilities")
    ctx.expect(res, 200, body={"capabilities": {"m.account_moderation": {"lock": True, "suspend": True}}})
    ctx.expect(bob.request("GET", "/capabilities"), 200, body={"capabilities": {"m.account_moderation": "$absent"}})
    for kind, key in (("lock", "locked"), ("suspend", "suspended")):
        ctx.expect(admin.request("GET", admin_path(kind, bob.user_id)), 200, body={key: False})
        ctx.expect(admin.request("PUT", admin_path(kind, admin.user_id), body={key: True}), 403, "M_FORBIDDEN")
        ctx.expect(admin.request("PUT", admin_path(kind, other_admin.user_id), body={key: True}), 403, "M_FORBIDDEN")
        ctx.expect(admin.request("GET", admin_path(kind, other_admin.user_id)), 403, "M_FORBIDDEN")
        ctx.expect(admin.request("GET", admin_path(kind, "@nobody-here:" + bob.user_id.split(":", 1)[1])), 404, "M_NOT_FOUND")
        ctx.expect(admin.request("PUT", admin_path(kind, "@someone:elsewhere.example"), body={key: True}),
                   400, "M_INVALID_PARAM")
        ctx.expect(admin.request("GET", admin_path(kind, "not-a-user-id")), 400, "M_INVALID_PARAM")
        ctx.expect(admin.request("PUT", admin_path(kind, bob.user_id), body={}), 400)
        ctx.expect(admin.request("PUT", admin_path(kind, bob.user_id), body={key: "yes"}), 400)
        ctx.expect(bob.request("PUT", admin_path(kind, admin.user_id), body={key: True}), 403, "M_FORBIDDEN")
    # A deactivated user is not found.
    carol = ctx.register(srv, "carol")
    res = carol.request("POST", "/account/deactivate", body={"auth": {"type": "m.login.password", "password": carol.password,
                                                                     "identifier": {"type": "m.id.user", "user": carol.user_id}}})
    ctx.expect(res, 200)
    ctx.expect(admin.request("GET", admin_path("lock", carol.user_id)), 404, "M_NOT_FOUND")


def test_locked_account_may_only_log_out(ctx):
    srv = ctx.server()
    admin, bob = ctx.register(srv, "admin"), ctx.register(srv, "bob")
    set_admin(ctx, srv, admin.user_id)
    refreshable = login(ctx, srv, bob, refresh_token=True)
    second = login(ctx, srv, bob)
    ctx.expect(admin.request("PUT", admin_path("lock", bob.user_id), body={"locked": True}), 200, body={"locked": True})
    ctx.expect(admin.request("GET", admin_path("lock", bob.user_id)), 200, body={"locked": True})
    for method, path, body in (("GET", "/account/whoami", None), ("GET", "/sync", None),
                               ("POST", "/createRoom", {}), ("GET", "/capabilities", None),
                               ("PUT", f"/profile/{bob.user_id}/displayname", {"displayname": "x"})):
        ctx.expect(bob.request(method, path, body=body), 401, "M_USER_LOCKED", body={"soft_logout": True})
    res = srv.client().request("POST", "/login", body={"type": "m.login.password", "password": bob.password,
                                                       "identifier": {"type": "m.id.user", "user": bob.localpart}})
    ctx.expect(res, 401, "M_USER_LOCKED", body={"soft_logout": True})
    res = srv.client().request("POST", "/refresh", body={"refresh_token": refreshable["refresh_token"]})
    ctx.expect(res, 401, "M_USER_LOCKED", body={"soft_logout": True})
    # Logging out is allowed, and the session is not otherwise ended by the lock.
    ctx.expect(srv.client().request("POST", "/logout", token=second["access_token"], body={}), 200)
    ctx.expect(admin.request("PUT", admin_path("lock", bob.user_id), body={"locked": False}), 200, body={"locked": False})
    ctx.expect(bob.request("GET", "/account/whoami"), 200, body={"user_id": bob.user_id})
    ctx.expect(whoami(srv, second["access_token"]), 401, "M_UNKNOWN_TOKEN")
    res = srv.client().request("POST", "/refresh", body={"refresh_token": refreshable["refresh_token"]})
    ctx.expect(res, 200)


def test_locked_account_logout_all(ctx):
    srv = ctx.server()
    admin, bob = ctx.register(srv, "admin"), ctx.register(srv, "bob")
    set_admin(ctx, srv, admin.user_id)
    ctx.expect(admin.request("PUT", admin_path("lock", bob.user_id), body={"locked": True}), 200)
    ctx.expect(bob.request("POST", "/logout/all", body={}), 200)
    ctx.expect(bob.request("GET", "/account/whoami"), 401, "M_UNKNOWN_TOKEN")


def test_suspended_account(ctx):
    srv = ctx.server()
    admin, bob, carol, dave = (ctx.register(srv, n) for n in ("admin", "bob", "carol", "dave"))
    set_admin(ctx, srv, admin.user_id)
    # Before the suspension: bob is in carol's room and wrote there; carol invited him to another.
    res = carol.request("POST", "/createRoom", body={"preset": "public_chat"})
    ctx.expect(res, 200)
    room = res.json["room_id"]
    ctx.expect(bob.request("POST", f"/join/{room}", body={}), 200)
    res = bob.request("PUT", f"/rooms/{room}/send/m.room.message/b1", body={"msgtype": "m.text", "body": "mine"})
    ctx.expect(res, 200)
    own_event = res.json["event_id"]
    res = carol.request("PUT", f"/rooms/{room}/send/m.room.message/c1", body={"msgtype": "m.text", "body": "hers"})
    ctx.expect(res, 200)
    carols_event = res.json["event_id"]
    res = carol.request("POST", "/createRoom", body={"preset": "private_chat", "invite": [bob.user_id]})
    ctx.expect(res, 200)
    invited_room = res.json["room_id"]
    res = carol.request("POST", "/createRoom", body={"preset": "public_chat"})
    ctx.expect(res, 200)
    other_room = res.json["room_id"]
    # bob is made a moderator so that only the suspension stops him redacting carol's event.
    res = carol.request("GET", f"/rooms/{room}/state/m.room.power_levels/")
    ctx.expect(res, 200)
    levels = res.json
    levels["users"][bob.user_id] = 50
    ctx.expect(carol.request("PUT", f"/rooms/{room}/state/m.room.power_levels/", body=levels), 200)

    ctx.expect(admin.request("PUT", admin_path("suspend", bob.user_id), body={"suspended": True}), 200,
               body={"suspended": True})
    ctx.expect(admin.request("GET", admin_path("suspend", bob.user_id)), 200, body={"suspended": True})
    forbidden = [
        ("PUT", f"/rooms/{room}/send/m.room.message/b2", {"msgtype": "m.text", "body": "no"}),
        ("PUT", f"/rooms/{room}/state/m.room.topic/", {"topic": "no"}),
        ("POST", "/createRoom", {}),
        ("POST", f"/join/{other_room}", {}),
        ("POST", f"/rooms/{other_room}/join", {}),
        ("POST", f"/rooms/{invited_room}/join", {}),
        ("POST", f"/rooms/{room}/invite", {"user_id": dave.user_id}),
        ("POST", f"/rooms/{room}/kick", {"user_id": carol.user_id}),
        ("PUT", f"/profile/{bob.user_id}/displayname", {"displayname": "new name"}),
        ("PUT", f"/profile/{bob.user_id}/avatar_url", {"avatar_url": "mxc://example.org/abc"}),
        ("PUT", f"/rooms/{room}/redact/{carols_event}/r1", {}),
    ]
    for method, path, body in forbidden:
        ctx.expect(bob.request(method, path, body=body), 403, "M_USER_SUSPENDED")
    # What a suspended user may still do: read, redact their own events, leave, reject invites,
    # log in again.
    ctx.expect(bob.request("GET", "/sync", query={"timeout": 0}), 200)
    ctx.expect(bob.request("GET", f"/rooms/{room}/messages", query={"dir": "b", "limit": 5}), 200)
    ctx.expect(bob.request("PUT", f"/rooms/{room}/redact/{own_event}/r2", body={}), 200,
               body={"event_id": "$nonempty"})
    ctx.expect(bob.request("POST", f"/rooms/{invited_room}/leave", body={}), 200)
    ctx.expect(bob.request("POST", f"/rooms/{room}/leave", body={}), 200)
    login(ctx, srv, bob)
    # Others still write to him and about him.
    ctx.expect(carol.request("POST", f"/rooms/{other_room}/invite", body={"user_id": bob.user_id}), 200)
    # Lifted: he may act again.
    ctx.expect(admin.request("PUT", admin_path("suspend", bob.user_id), body={"suspended": False}), 200,
               body={"suspended": False})
    ctx.expect(bob.request("POST", f"/join/{other_room}", body={}), 200)
    ctx.expect(bob.request("PUT", f"/profile/{bob.user_id}/displayname", body={"displayname": "back"}), 200)
