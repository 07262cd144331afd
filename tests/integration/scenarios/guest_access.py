"""Guest accounts: the config switch, numeric guest IDs across a restart, upgrading a guest to a
full account (same user ID, rooms kept) and refusing to upgrade someone else."""

from harness import TestFailure

GUEST_ON = {"allow_guest_access": True}


def register_guest(ctx, srv):
    return ctx.expect(srv.client().request("POST", "/register", query={"kind": "guest"}, body={}),
                      body={"user_id": "$string", "access_token": "$string", "device_id": "$string"})


def test_guest_registration_is_refused_when_the_config_is_off(ctx):
    srv = ctx.server()  # allow_guest_access defaults to false, as in Synapse
    ctx.expect(srv.client().request("POST", "/register", query={"kind": "guest"}, body={}), 403,
               "M_GUEST_ACCESS_FORBIDDEN")


def test_guest_ids_are_numeric_and_never_reused(ctx):
    srv = ctx.server(config=GUEST_ON)
    first = register_guest(ctx, srv)["user_id"]
    srv.stop()
    srv.start()
    second = register_guest(ctx, srv)["user_id"]
    lp1, lp2 = first[1:].split(":")[0], second[1:].split(":")[0]
    if not (lp1.isdigit() and lp2.isdigit() and int(lp2) > int(lp1)):
        raise TestFailure(f"expected increasing numeric guest IDs, got {first} then {second}")


def test_a_guest_upgrades_to_a_full_account(ctx):
    srv = ctx.server(config=GUEST_ON)
    alice = ctx.register(srv, "alice")
    room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat", "initial_state": [
        {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "can_join"}}]}))["room_id"]
    closed = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
    guest = register_guest(ctx, srv)
    c = srv.client()
    ctx.expect(c.request("POST", f"/join/{room}", token=guest["access_token"], body={}))
    localpart = guest["user_id"][1:].split(":")[0]
    body = {"username": localpart, "password": "SIR_Arthur_David", "guest_access_token": guest["access_token"]}
    # First the user-interactive auth flows, as for any registration.
    ctx.expect(c.request("POST", "/register", body=body), 401, body={"flows": "$array", "session": "$string"})
    body["auth"] = {"type": "m.login.dummy"}
    upgraded = ctx.expect(c.request("POST", "/register", body=body),
                          body={"user_id": guest["user_id"], "access_token": "$string", "device_id": "$string"})
    token = upgraded["access_token"]
    ctx.expect(c.request("GET", "/account/whoami", token=token), body={"user_id": guest["user_id"], "is_guest": False})
    # Still in the room it joined as a guest; now free of the guest rules.
    ctx.expect(c.request("GET", "/joined_rooms", token=token), body={"joined_rooms": [room]})
    ctx.expect(c.request("POST", f"/join/{closed}", token=token, body={}))
    # The guest's own token is a full account's now too; the password logs in.
    ctx.expect(c.request("GET", "/joined_rooms", token=guest["access_token"]))
    ctx.expect(c.request("POST", "/login", body={"type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
                                                 "password": "SIR_Arthur_David"}), body={"user_id": guest["user_id"]})
    # Upgrading twice is refused.
    ctx.expect(c.request("POST", "/register", body=body), 403, "M_FORBIDDEN")


def test_a_guest_cannot_upgrade_another_user(ctx):
    srv = ctx.server(config=GUEST_ON)
    alice = ctx.register(srv, "alice")
    g1, g2 = register_guest(ctx, srv), register_guest(ctx, srv)
    c = srv.client()
    for username, token in ((g1["user_id"][1:].split(":")[0], g2["access_token"]),
                            (alice.localpart, g2["access_token"]),
                            (g1["user_id"][1:].split(":")[0], alice.token)):
        for auth in (None, {"type": "m.login.dummy"}):
            body = {"username": username, "password": "pw", "guest_access_token": token}
            if auth:
                body["auth"] = auth
            ctx.expect(c.request("POST", "/register", body=body), 403, "M_FORBIDDEN")
    ctx.expect(c.request("GET", "/account/whoami", token=g1["access_token"]), body={"is_guest": True})
    ctx.expect(c.request("POST", "/register", body={"username": "x", "guest_access_token": "nope",
                                                    "auth": {"type": "m.login.dummy"}}), 401, "M_UNKNOWN_TOKEN")
