"""Effects of Synapse's admin API for users: a shadow-banned user's writes seem to succeed but reach
no one; a rate-limit override lifts rc_message for one user (and survives a restart); deactivation
with erase leaves rooms and ends logins; an account the admin creates can log in."""

import urllib.parse

from harness import TestFailure

SLOW = {"per_second": 0.1, "burst_count": 2}


def q(user_id):
    return urllib.parse.quote(user_id, safe="")


def msg(body):
    return {"msgtype": "m.text", "body": body}


def timeline_bodies(ctx, user, room):
    chunk = ctx.expect(user.request("GET", f"/rooms/{room}/messages", query={"dir": "b", "limit": 50}))["chunk"]
    return chunk


def test_shadow_banned_user_reaches_no_one(ctx):
    srv = ctx.server()
    admin = ctx.register(srv, "admin", admin=True)
    mallory = ctx.register(srv, "mallory")
    bob = ctx.register(srv, "bob")
    carol = ctx.register(srv, "carol")
    room = ctx.expect(mallory.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
    ctx.expect(bob.request("POST", f"/join/{room}", body={}))
    ctx.expect(mallory.request("PUT", f"/rooms/{room}/send/m.room.message/before", body=msg("before the ban")))
    ctx.expect(admin.request("POST", f"/_synapse/admin/v1/users/{q(mallory.user_id)}/shadow_ban"), body={})

    # Every write answers as if it worked...
    sent = ctx.expect(mallory.request("PUT", f"/rooms/{room}/send/m.room.message/spam1", body=msg("spam")),
                      body={"event_id": "$shape:event_id"})["event_id"]
    ctx.expect(mallory.request("PUT", f"/rooms/{room}/state/m.room.topic", body={"topic": "spam topic"}),
               body={"event_id": "$shape:event_id"})
    ctx.expect(mallory.request("POST", f"/rooms/{room}/invite", body={"user_id": carol.user_id}), body={})
    dm = ctx.expect(mallory.request("POST", "/createRoom", body={"invite": [carol.user_id]}))["room_id"]
    ctx.expect(mallory.request("PUT", f"/rooms/{room}/redact/$nothing/r1", body={}), body={"event_id": "$string"})

    # ...but nothing reached anyone: bob never sees the message or the topic, carol gets no invite.
    chunk = timeline_bodies(ctx, bob, room)
    bodies = [e.get("content", {}).get("body") for e in chunk if e["type"] == "m.room.message"]
    if bodies != ["before the ban"]:
        raise TestFailure(f"bob sees messages of the shadow-banned user: {bodies}")
    if any(e["type"] == "m.room.topic" for e in chunk):
        raise TestFailure("bob sees the shadow-banned user's topic")
    ctx.expect(bob.request("GET", f"/rooms/{room}/event/{urllib.parse.quote(sent)}"), 404, "M_NOT_FOUND")
    ctx.expect(bob.request("GET", f"/rooms/{room}/state/m.room.topic"), 404, "M_NOT_FOUND")
    sync = ctx.expect(carol.request("GET", "/sync", query={"timeout": 0}))
    invites = sync.get("rooms", {}).get("invite", {})
    if room in invites or dm in invites:
        raise TestFailure(f"carol got an invite from the shadow-banned user: {list(invites)}")

    # Lifted: messages reach the room again.
    ctx.expect(admin.request("DELETE", f"/_synapse/admin/v1/users/{q(mallory.user_id)}/shadow_ban"), body={})
    ctx.expect(mallory.request("PUT", f"/rooms/{room}/send/m.room.message/after", body=msg("after the ban")))
    bodies = [e.get("content", {}).get("body") for e in timeline_bodies(ctx, bob, room) if e["type"] == "m.room.message"]
    if bodies != ["after the ban", "before the ban"]:
        raise TestFailure(f"after the ban was lifted bob sees {bodies}")


def test_ratelimit_override_lifts_rc_message(ctx):
    srv = ctx.server(config={"rc_message": SLOW})
    admin = ctx.register(srv, "admin", admin=True)
    alice = ctx.register(srv, "alice")
    room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
    for i in range(2):
        ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/a{i}", body=msg("x")))
    ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/a2", body=msg("x")), 429, "M_LIMIT_EXCEEDED")

    ctx.expect(admin.request("POST", f"/_synapse/admin/v1/users/{q(alice.user_id)}/override_ratelimit",
                             body={"messages_per_second": 0, "burst_count": 0}),
               body={"messages_per_second": 0, "burst_count": 0})
    for i in range(6):
        ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/b{i}", body=msg("exempt")))

    # The override is stored: it still holds after a restart.
    srv.kill()
    srv.start()
    for i in range(4):
        ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/c{i}", body=msg("still exempt")))

    # A limit of its own (1 a second, burst 3) replaces the server's.
    ctx.expect(admin.request("POST", f"/_synapse/admin/v1/users/{q(alice.user_id)}/override_ratelimit",
                             body={"messages_per_second": 1, "burst_count": 3}))
    for i in range(3):
        ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/d{i}", body=msg("own limit")))
    ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/d3", body=msg("x")), 429, "M_LIMIT_EXCEEDED")

    # Deleted: rc_message applies again.
    ctx.expect(admin.request("DELETE", f"/_synapse/admin/v1/users/{q(alice.user_id)}/override_ratelimit"), body={})
    for i in range(2):
        ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/e{i}", body=msg("x")))
    ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/e2", body=msg("x")), 429, "M_LIMIT_EXCEEDED")


def test_deactivation_with_erase_leaves_rooms_and_ends_logins(ctx):
    srv = ctx.server()
    admin = ctx.register(srv, "admin", admin=True)
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    room = ctx.expect(bob.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
    ctx.expect(alice.request("POST", f"/join/{room}", body={}))
    ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/m1", body=msg("my words")))
    other = ctx.expect(bob.request("POST", "/createRoom", body={"invite": [alice.user_id]}))["room_id"]

    ctx.expect(admin.request("POST", f"/_synapse/admin/v1/deactivate/{q(alice.user_id)}", body={"erase": True}),
               body={"id_server_unbind_result": "success"})
    # She left the room and the pending invite was rejected.
    ctx.expect(bob.request("GET", f"/rooms/{room}/state/m.room.member/{q(alice.user_id)}"), body={"membership": "leave"})
    ctx.expect(bob.request("GET", f"/rooms/{other}/state/m.room.member/{q(alice.user_id)}"), body={"membership": "leave"})
    ctx.expect(alice.request("GET", "/account/whoami"), 401, "M_UNKNOWN_TOKEN")
    ctx.expect(srv.client().request("POST", "/login", body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.localpart},
        "password": alice.password}), 403, "M_FORBIDDEN")
    # Erased: someone joining later sees her message without its content.
    carol = ctx.register(srv, "carol")
    ctx.expect(carol.request("POST", f"/join/{room}", body={}))
    chunk = timeline_bodies(ctx, carol, room)
    mine = [e for e in chunk if e["type"] == "m.room.message" and e["sender"] == alice.user_id]
    if len(mine) != 1 or mine[0].get("content"):
        raise TestFailure(f"the erased user's message is not pruned for a later member: {mine}")
    ctx.expect(admin.request("GET", f"/_synapse/admin/v2/users/{q(alice.user_id)}"),
               body={"deactivated": True, "erased": True})


def test_created_account_logs_in_and_password_reset_logs_out(ctx):
    srv = ctx.server()
    admin = ctx.register(srv, "admin", admin=True)
    user_id = f"@created-{ctx.run_id}:localhost".lower()
    ctx.expect(admin.request("PUT", f"/_synapse/admin/v2/users/{q(user_id)}",
                             body={"password": "first-pw", "displayname": "Created"}), 201,
               body={"name": user_id, "displayname": "Created"})
    # Created again: a change now (200).
    ctx.expect(admin.request("PUT", f"/_synapse/admin/v2/users/{q(user_id)}", body={"displayname": "Again"}), 200,
               body={"displayname": "Again"})
    login = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id}, "password": "first-pw"}
    token = ctx.expect(srv.client().request("POST", "/login", body=login))["access_token"]
    ctx.expect(srv.client().request("GET", "/account/whoami", token=token), body={"user_id": user_id})
    ctx.expect(admin.request("POST", f"/_synapse/admin/v1/reset_password/{q(user_id)}", body={"new_password": "second-pw"}),
               body={})
    ctx.expect(srv.client().request("GET", "/account/whoami", token=token), 401, "M_UNKNOWN_TOKEN")
    ctx.expect(srv.client().request("POST", "/login", body=login), 403, "M_FORBIDDEN")
    login["password"] = "second-pw"
    ctx.expect(srv.client().request("POST", "/login", body=login))


def test_cas_users_are_found_by_their_external_id(ctx):
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from accounts_sso import CAS_FAIL, CAS_OK, FakeService, server_with

    def handler(method, path, query, body):
        if path == "/cas/proxyValidate" and query.get("ticket") == "t1":
            return 200, "text/plain", CAS_OK.format(user="jdoe")
        return 200, "text/plain", CAS_FAIL

    fake = FakeService(handler)
    try:
        srv = server_with(ctx, {"cas_config": {"server_url": fake.url + "/cas"}})
        admin = ctx.register(srv, "admin", admin=True)
        ctx.expect(srv.client().request("GET", "/login/cas/ticket",
                                        query={"redirectUrl": "https://client.example/", "ticket": "t1"}))
        ctx.expect(admin.request("GET", "/_synapse/admin/v1/auth_providers/cas/users/jdoe"),
                   body={"user_id": "@jdoe:localhost"})
        ctx.expect(admin.request("GET", f"/_synapse/admin/v2/users/{q('@jdoe:localhost')}"),
                   body={"external_ids": [{"auth_provider": "cas", "external_id": "jdoe"}]})
        ctx.expect(admin.request("GET", "/_synapse/admin/v1/auth_providers/cas/users/someone-else"), 404, "M_NOT_FOUND")
    finally:
        fake.close()
