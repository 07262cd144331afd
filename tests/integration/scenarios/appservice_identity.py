"""Appservices on the Client-Server API: identity assertion and device masquerading (MSC4326),
timestamp massaging, registration and login for appservice users (MSC2778), M_EXCLUSIVE for
users and aliases, rate-limit exemption, and device management without UIA (MSC4190)."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestFailure  # noqa: E402
from appservice_support import AsClient, AsEnv, registration, send_text  # noqa: E402

SERVER = "localhost"


def regs():
    """The bridge under test (exclusive users and aliases) and an unrelated appservice whose user
    namespace is not exclusive. Neither has a URL: nothing is pushed in these tests."""
    bridge = registration("bridge", None, "_bridge_bot",
                          users=[(True, "@_br_.*"), (True, "@_part_[a-z]+")],
                          aliases=[(True, "#_br_.*")])
    other = registration("other", None, "_ot_bot", users=[(False, "@_ot_.*"), (False, "@_br_shared.*")],
                         aliases=[(False, "#_ot_.*"), (False, "#_br_shared.*")])
    return bridge, other


def uid(localpart):
    return f"@{localpart}:{SERVER}"


def test_identity_assertion_and_device_masquerading(ctx):
    with AsEnv(ctx) as env:
        bridge, other = regs()
        srv = env.server([bridge, other])
        br = AsClient(srv, bridge)
        ot = AsClient(srv, other)
        alice = ctx.register(srv, "alice")
        u = br.register("_br_alice")
        u2 = br.register("_br_bob")
        ot_user = ot.register("_ot_carol")

        # The as_token alone is the sender, in the header or the access_token query parameter.
        ctx.expect(br.request("GET", "/account/whoami"), body={"user_id": br.sender, "device_id": "$absent"})
        ctx.expect(br.request("GET", "/account/whoami", token_in_query=True),
                   body={"user_id": br.sender, "device_id": "$absent"})
        # user_id in the namespace, both ways of passing the token.
        ctx.expect(br.request("GET", "/account/whoami", user_id=u), body={"user_id": u, "device_id": "$absent"})
        ctx.expect(br.request("GET", "/account/whoami", user_id=u, token_in_query=True), body={"user_id": u})
        # Outside the namespace: an ordinary user, another appservice's user.
        for outside in (alice.user_id, ot_user, uid("_ot_bot")):
            ctx.expect(br.request("GET", "/account/whoami", user_id=outside), 403, errcode="M_FORBIDDEN")
        # The other appservice's non-exclusive namespace does not let it act as the bridge's users.
        ctx.expect(ot.request("GET", "/account/whoami", user_id=u), 403, errcode="M_FORBIDDEN")
        # Regexes match the whole ID: "@_part_[a-z]+" covers no full user ID.
        ctx.expect(br.request("GET", "/account/whoami", user_id=uid("_part_abc")), 403, errcode="M_FORBIDDEN")
        # Malformed user IDs.
        for bad in ("not-a-user-id", "@nocolon", "_br_alice"):
            res = br.request("GET", "/account/whoami", user_id=bad)
            ctx.expect(res, 400, body={"errcode": "$string"})
        # An ordinary user's user_id parameter means nothing.
        ctx.expect(alice.request("GET", "/account/whoami", query={"user_id": u}),
                   body={"user_id": alice.user_id, "device_id": alice.device_id})
        ctx.expect(srv.client().request("GET", "/account/whoami", token="as-bridge-wrong", query={"user_id": u}),
                   401, errcode="M_UNKNOWN_TOKEN")

        # Device masquerading: the user's own device.
        ctx.expect(br.request("PUT", "/devices/BRDEV1", user_id=u, body={}), 201)
        ctx.expect(br.request("GET", "/account/whoami", user_id=u, device_id="BRDEV1"),
                   body={"user_id": u, "device_id": "BRDEV1"})
        # The unstable name alone, and both names together with the same value.
        ctx.expect(br.request("GET", "/account/whoami", user_id=u, query={"org.matrix.msc3202.device_id": "BRDEV1"}),
                   body={"user_id": u, "device_id": "BRDEV1"})
        ctx.expect(br.request("GET", "/account/whoami", user_id=u, device_id="BRDEV1",
                              query={"org.matrix.msc3202.device_id": "BRDEV1"}),
                   body={"user_id": u, "device_id": "BRDEV1"})
        ctx.expect(br.request("GET", "/account/whoami", user_id=u, device_id="BRDEV1",
                              query={"org.matrix.msc3202.device_id": "OTHER"}), 400)
        # Another user's device, an unknown one, the unstable name with a bad device.
        for who, dev in ((u, alice.device_id), (u2, "BRDEV1"), (u, "NOSUCHDEVICE")):
            ctx.expect(br.request("GET", "/account/whoami", user_id=who, device_id=dev), 400, errcode="M_UNKNOWN_DEVICE")
        ctx.expect(br.request("GET", "/account/whoami", user_id=u, query={"org.matrix.msc3202.device_id": "NOPE"}),
                   400, errcode="M_UNKNOWN_DEVICE")
        # Without user_id the device must be the sender's.
        ctx.expect(br.request("PUT", "/devices/BOTDEV", body={}), 201)
        ctx.expect(br.request("GET", "/account/whoami", device_id="BOTDEV"),
                   body={"user_id": br.sender, "device_id": "BOTDEV"})
        ctx.expect(br.request("GET", "/account/whoami", device_id="BRDEV1"), 400, errcode="M_UNKNOWN_DEVICE")

        # Acting as the user for real: the events carry the asserted user.
        room = ctx.expect(br.request("POST", "/createRoom", user_id=u, body={"preset": "public_chat"}))["room_id"]
        ev = send_text(br, room, "as alice", user_id=u, device_id="BRDEV1")
        ctx.expect(br.request("GET", f"/rooms/{room}/event/{ev}", user_id=u), body={"sender": u})
        ctx.expect(br.request("GET", "/joined_rooms", user_id=u), body={"joined_rooms": [room]})
        ctx.expect(br.request("GET", "/joined_rooms", user_id=u2), body={"joined_rooms": []})


def test_timestamp_massaging(ctx):
    with AsEnv(ctx) as env:
        bridge, other = regs()
        srv = env.server([bridge, other])
        br = AsClient(srv, bridge)
        alice = ctx.register(srv, "alice")
        u = br.register("_br_ts")
        room = ctx.expect(br.request("POST", "/createRoom", user_id=u, body={"preset": "public_chat"}))["room_id"]
        ctx.expect(alice.request("POST", f"/join/{room}", body={}))
        t1 = 1_600_000_000_000
        t2 = t1 - 86_400_000  # a day earlier, sent later
        e1 = send_text(br, room, "first", user_id=u, query={"ts": t1})
        e2 = send_text(br, room, "second, older ts", user_id=u, query={"ts": t2})
        state_ts = t1 + 5
        res = br.request("PUT", f"/rooms/{room}/state/m.room.topic", user_id=u, query={"ts": state_ts},
                         body={"topic": "massaged"})
        e3 = ctx.expect(res)["event_id"]
        for ev, ts in ((e1, t1), (e2, t2), (e3, state_ts)):
            ctx.expect(alice.request("GET", f"/rooms/{room}/event/{ev}"), body={"origin_server_ts": ts, "sender": u})
        ctx.expect(alice.request("GET", f"/rooms/{room}/state/m.room.topic", query={"format": "event"}),
                   body={"origin_server_ts": state_ts, "content": {"topic": "massaged"}, "sender": u})
        # Stream order is unchanged: the later send with the earlier ts still comes after.
        chunk = ctx.expect(alice.request("GET", f"/rooms/{room}/messages", query={"dir": "b", "limit": 10}))["chunk"]
        order = [e["event_id"] for e in reversed(chunk)]
        if not all(e in order for e in (e1, e2, e3)) or not order.index(e1) < order.index(e2) < order.index(e3):
            raise TestFailure(f"/messages order is not the send order: {order}")
        by_id = {e["event_id"]: e for e in chunk}
        if by_id[e1]["origin_server_ts"] != t1 or by_id[e2]["origin_server_ts"] != t2:
            raise TestFailure("/messages does not show the massaged origin_server_ts")
        fwd = ctx.expect(alice.request("GET", f"/rooms/{room}/messages", query={"dir": "f", "limit": 50}))["chunk"]
        fwd_ids = [e["event_id"] for e in fwd]
        if not fwd_ids.index(e1) < fwd_ids.index(e2) < fwd_ids.index(e3):
            raise TestFailure(f"/messages dir=f order is not the send order: {fwd_ids}")
        # The largest canonical JSON integer is fine.
        e4 = send_text(br, room, "max", user_id=u, query={"ts": 2**53 - 1})
        ctx.expect(alice.request("GET", f"/rooms/{room}/event/{e4}"), body={"origin_server_ts": 2**53 - 1})
        # Bad values are a bad request, on send and on state.
        for bad in ("-1", "abc", "1.5", str(2**53), str(2**64), "", "1e3"):
            res = br.request("PUT", f"/rooms/{room}/send/m.room.message/bad{abs(hash(bad))}", user_id=u,
                             query={"ts": bad}, body={"msgtype": "m.text", "body": "bad ts"})
            ctx.expect(res, 400, body={"errcode": "$string"})
            res = br.request("PUT", f"/rooms/{room}/state/org.example.ts/{abs(hash(bad))}", user_id=u,
                             query={"ts": bad}, body={"x": 1})
            ctx.expect(res, 400, body={"errcode": "$string"})
        # An ordinary user's ts is ignored, even a bad one.
        before = int(time.time() * 1000) - 60_000
        e5 = send_text(alice, room, "human", query={"ts": 1000})
        e6 = send_text(alice, room, "human bad ts", query={"ts": "abc"})
        for ev in (e5, e6):
            got = ctx.expect(alice.request("GET", f"/rooms/{room}/event/{ev}"))["origin_server_ts"]
            if got < before:
                raise TestFailure(f"an ordinary user's ts was used: origin_server_ts {got}")


def test_registration_of_appservice_users_and_exclusive_namespaces(ctx):
    with AsEnv(ctx) as env:
        bridge, other = regs()
        srv = env.server([bridge, other])
        br = AsClient(srv, bridge)
        c = srv.client()
        alice = ctx.register(srv, "alice")

        # Registered with a login: access token and device, and the token works.
        res = br.request("POST", "/register", body={"type": "m.login.application_service", "username": "_br_u1"})
        body = ctx.expect(res, body={"user_id": uid("_br_u1"), "access_token": "$nonempty", "device_id": "$nonempty"})
        ctx.expect(c.request("GET", "/account/whoami", token=body["access_token"]),
                   body={"user_id": uid("_br_u1"), "device_id": body["device_id"]})
        # The type inside `auth`, and a device id of our choosing.
        res = br.request("POST", "/register", body={"auth": {"type": "m.login.application_service"},
                                                    "username": "_br_u2", "device_id": "REGDEV"})
        ctx.expect(res, body={"user_id": uid("_br_u2"), "device_id": "REGDEV", "access_token": "$nonempty"})
        # inhibit_login: no token, no device.
        res = br.request("POST", "/register", body={"type": "m.login.application_service", "username": "_br_u3",
                                                    "inhibit_login": True})
        ctx.expect(res, body={"user_id": uid("_br_u3"), "access_token": "$absent", "device_id": "$absent"})
        ctx.expect(br.request("GET", "/account/whoami", user_id=uid("_br_u3")), body={"user_id": uid("_br_u3")})
        # Taken.
        res = br.request("POST", "/register", body={"type": "m.login.application_service", "username": "_br_u3"})
        ctx.expect(res, 400, errcode="M_USER_IN_USE")
        # No password: password logins fail.
        for pw in ("", "anything"):
            res = c.request("POST", "/login", body={"type": "m.login.password", "password": pw,
                                                    "identifier": {"type": "m.id.user", "user": "_br_u1"}})
            if res.status not in (400, 403):
                raise TestFailure(f"password login of a password-less appservice user: {res.describe()}")

        # Outside the namespace (plain names, another appservice's namespace, whole-ID matching).
        for name in ("plainname", "_ot_dave", "_part_abc"):
            res = br.request("POST", "/register", body={"type": "m.login.application_service", "username": name})
            ctx.expect(res, 400, errcode="M_EXCLUSIVE")
        # Another appservice's non-exclusive namespace overlapping the bridge's exclusive one
        # does not let it create users (or aliases, below) there; the bridge can.
        ot = AsClient(srv, other)
        res = ot.request("POST", "/register", body={"type": "m.login.application_service", "username": "_br_shared1"})
        ctx.expect(res, 400, errcode="M_EXCLUSIVE")
        ctx.expect(ot.request("POST", "/register", body={"type": "m.login.application_service",
                                                         "username": "_ot_fine", "inhibit_login": True}), 200)
        ctx.expect(br.request("POST", "/register", body={"type": "m.login.application_service",
                                                         "username": "_br_shared1", "inhibit_login": True}), 200)
        # Missing or wrong token.
        body = {"type": "m.login.application_service", "username": "_br_u9"}
        ctx.expect(c.request("POST", "/register", body=body), 401, errcode="M_MISSING_TOKEN")
        ctx.expect(c.request("POST", "/register", body=body, token="not-an-as-token"), 401, errcode="M_UNKNOWN_TOKEN")
        ctx.expect(c.request("POST", "/register", body=body, token=alice.token), 401, errcode="M_UNKNOWN_TOKEN")
        ctx.expect(br.request("GET", "/account/whoami", user_id=uid("_br_u9")), 403, errcode="M_FORBIDDEN")

        # Ordinary users: not inside an exclusive namespace (before and after UIA), fine in a
        # non-exclusive one, and fine where a whole-ID regex does not match.
        for auth in (None, {"type": "m.login.dummy"}):
            req = {"username": "_br_human", "password": "pw-human-1"}
            if auth:
                req["auth"] = auth
            ctx.expect(c.request("POST", "/register", body=req), 400, errcode="M_EXCLUSIVE")
        ctx.expect(c.request("GET", "/register/available", query={"username": "_br_human"}), 400, errcode="M_EXCLUSIVE")
        for name in ("_ot_human", "_part_human"):
            res = c.request("POST", "/register", body={"username": name, "password": "pw-human-1",
                                                       "auth": {"type": "m.login.dummy"}})
            ctx.expect(res, 200, body={"user_id": uid(name)})

        # Aliases.
        room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
        ctx.expect(alice.request("PUT", f"/directory/room/%23_br_room:{SERVER}", body={"room_id": room}),
                   400, errcode="M_EXCLUSIVE")
        ctx.expect(alice.request("POST", "/createRoom", body={"room_alias_name": "_br_made"}), 400, errcode="M_EXCLUSIVE")
        ctx.expect(alice.request("PUT", f"/directory/room/%23_ot_room:{SERVER}", body={"room_id": room}), 200)
        ctx.expect(alice.request("PUT", f"/directory/room/%23alices:{SERVER}", body={"room_id": room}), 200)
        as_room = ctx.expect(br.request("POST", "/createRoom", body={}))["room_id"]
        ctx.expect(br.request("PUT", f"/directory/room/%23elsewhere:{SERVER}", body={"room_id": as_room}),
                   400, errcode="M_EXCLUSIVE")
        ctx.expect(br.request("POST", "/createRoom", body={"room_alias_name": "elsewhere2"}), 400, errcode="M_EXCLUSIVE")
        ctx.expect(br.request("PUT", f"/directory/room/%23_br_room:{SERVER}", body={"room_id": as_room}), 200)
        ctx.expect(ot.request("PUT", f"/directory/room/%23_br_shared_room:{SERVER}", body={"room_id": as_room}),
                   400, errcode="M_EXCLUSIVE")
        ctx.expect(ot.request("PUT", f"/directory/room/%23_ot_room2:{SERVER}", body={"room_id": as_room}), 200)
        made = ctx.expect(br.request("POST", "/createRoom", user_id=uid("_br_u3"),
                                     body={"room_alias_name": "_br_made"}))["room_id"]
        ctx.expect(c.request("GET", f"/directory/room/%23_br_made:{SERVER}"), body={"room_id": made})
        ctx.expect(c.request("GET", f"/directory/room/%23_br_room:{SERVER}"), body={"room_id": as_room})


def test_appservice_login(ctx):
    with AsEnv(ctx) as env:
        bridge, other = regs()
        srv = env.server([bridge, other], config={"enable_registration": False})
        br = AsClient(srv, bridge)
        c = srv.client()
        flows = ctx.expect(c.request("GET", "/login"))["flows"]
        if "m.login.application_service" not in [f.get("type") for f in flows]:
            raise TestFailure(f"GET /login does not list m.login.application_service: {flows}")
        # Registration is closed to people, open to the appservice.
        ctx.expect(c.request("POST", "/register", body={"username": "human", "password": "pw-human-1",
                                                        "auth": {"type": "m.login.dummy"}}), 403)
        user = br.register("_br_l1")

        def login(ident_user, token=None, **extra):
            body = {"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": ident_user}}
            body.update(extra)
            return c.request("POST", "/login", body=body, token=token)

        first = ctx.expect(login("_br_l1", br.token),
                           body={"user_id": user, "access_token": "$nonempty", "device_id": "$nonempty"})
        ctx.expect(c.request("GET", "/account/whoami", token=first["access_token"]),
                   body={"user_id": user, "device_id": first["device_id"]})
        second = ctx.expect(login(user, br.token, device_id="LOGINDEV", initial_device_display_name="bridge"),
                            body={"user_id": user, "access_token": "$nonempty", "device_id": "LOGINDEV"})
        ctx.expect(c.request("GET", "/account/whoami", token=second["access_token"]),
                   body={"user_id": user, "device_id": "LOGINDEV"})
        if first["access_token"] == second["access_token"]:
            raise TestFailure("two logins returned the same access token")
        # The new device is the user's: the appservice can masquerade with it.
        ctx.expect(br.request("GET", "/account/whoami", user_id=user, device_id="LOGINDEV"),
                   body={"user_id": user, "device_id": "LOGINDEV"})
        # as_token in the query string works too.
        res = c.request("POST", "/login", query={"access_token": br.token},
                        body={"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": user}})
        ctx.expect(res, body={"user_id": user, "access_token": "$nonempty"})
        # Outside the namespace (existing users included), unregistered in it, no or wrong token.
        for outside in ("_ot_bot", "@_ot_bot:localhost", "someone", "_part_abc"):
            ctx.expect(login(outside, br.token), 400, errcode="M_EXCLUSIVE")
        ctx.expect(login("_br_nobody", br.token), 403, errcode="M_FORBIDDEN")
        ctx.expect(login("_br_l1"), 401, errcode="M_MISSING_TOKEN")
        ctx.expect(login("_br_l1", "wrong-token"), 401, errcode="M_UNKNOWN_TOKEN")
        ctx.expect(login("_br_l1", first["access_token"]), 401, errcode="M_UNKNOWN_TOKEN")


def test_appservice_users_are_not_rate_limited_unless_rate_limited_is_set(ctx):
    with AsEnv(ctx) as env:
        bridge, other = regs()
        limited = registration("limited", None, "_lim_bot", users=[(True, "@_lim_.*")], rate_limited=True)
        strict = {"per_second": 0.1, "burst_count": 1}
        srv = env.server([bridge, other, limited],
                         config={"rc_message": strict, "rc_registration": strict, "rc_login": {"address": strict}})
        br = AsClient(srv, bridge)
        lim = AsClient(srv, limited)
        # Registration and login: exempt.
        users = [br.register(f"_br_rl{i}") for i in range(4)]
        c = srv.client()
        for i in range(3):
            res = c.request("POST", "/login", token=br.token, body={
                "type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": users[0]}})
            ctx.expect(res, 200)
        room = ctx.expect(br.request("POST", "/createRoom", user_id=users[0], body={"preset": "public_chat"}))["room_id"]
        for u in users[1:]:
            ctx.expect(br.request("POST", f"/join/{room}", user_id=u, body={}))
        for i in range(8):
            for u in users:
                send_text(br, room, f"burst {i}", user_id=u)
        # rate_limited: true: the limits apply.
        lim_users = [lim.register("_lim_a")]
        res = lim.request("POST", "/register", body={"type": "m.login.application_service", "username": "_lim_b",
                                                     "inhibit_login": True})
        ctx.expect(res, 429, errcode="M_LIMIT_EXCEEDED")
        lim_room = ctx.expect(lim.request("POST", "/createRoom", user_id=lim_users[0], body={}))["room_id"]
        statuses = []
        for i in range(4):
            res = lim.request("PUT", f"/rooms/{lim_room}/send/m.room.message/lim{i}", user_id=lim_users[0],
                              body={"msgtype": "m.text", "body": str(i)})
            statuses.append(res.status)
            if res.status == 429:
                ctx.expect(res, 429, errcode="M_LIMIT_EXCEEDED")
        if 429 not in statuses:
            raise TestFailure(f"a rate_limited appservice's user was never limited: {statuses}")
        # "The sender is excluded": the appservice acting as itself is never limited.
        sender_room = ctx.expect(lim.request("POST", "/createRoom", body={}))["room_id"]
        for i in range(4):
            send_text(lim, sender_room, f"sender {i}")


def test_device_management_for_appservice_users(ctx):
    with AsEnv(ctx) as env:
        bridge, other = regs()
        srv = env.server([bridge, other])
        br = AsClient(srv, bridge)
        c = srv.client()
        u = br.register("_br_dev")
        u2 = br.register("_br_dev2")
        # Created (201, {}), then updated (200).
        res = br.request("PUT", "/devices/DEVX", user_id=u, body={"display_name": "Bridge phone"})
        ctx.expect(res, 201, body={})
        ctx.expect(br.request("PUT", "/devices/DEVX", user_id=u, body={"display_name": "Renamed"}), 200, body={})
        ctx.expect(br.request("PUT", "/devices/DEVX", user_id=u, body={}), 200)
        ctx.expect(br.request("GET", "/devices/DEVX", user_id=u), body={"device_id": "DEVX", "display_name": "Renamed"})
        ctx.expect(br.request("GET", "/devices/DEVX", user_id=u2), 404)
        # Masquerading with it: whoami and a real request.
        ctx.expect(br.request("GET", "/account/whoami", user_id=u, device_id="DEVX"),
                   body={"user_id": u, "device_id": "DEVX"})
        room = ctx.expect(br.request("POST", "/createRoom", user_id=u, device_id="DEVX", body={}))["room_id"]
        send_text(br, room, "from DEVX", user_id=u, device_id="DEVX")
        ctx.expect(br.request("GET", "/account/whoami", user_id=u2, device_id="DEVX"), 400, errcode="M_UNKNOWN_DEVICE")
        # DELETE needs no UIA, and the device's access tokens die with it.
        login = ctx.expect(c.request("POST", "/login", token=br.token, body={
            "type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": u},
            "device_id": "LOGDEV"}))
        ctx.expect(c.request("GET", "/account/whoami", token=login["access_token"]), body={"device_id": "LOGDEV"})
        ctx.expect(br.request("DELETE", "/devices/LOGDEV", user_id=u), 200)
        ctx.expect(c.request("GET", "/account/whoami", token=login["access_token"]), 401, errcode="M_UNKNOWN_TOKEN")
        ctx.expect(br.request("GET", "/account/whoami", user_id=u, device_id="LOGDEV"), 400, errcode="M_UNKNOWN_DEVICE")
        ctx.expect(br.request("DELETE", "/devices/LOGDEV", user_id=u), 404)
        # POST /delete_devices: no UIA either.
        ctx.expect(br.request("PUT", "/devices/DEVY", user_id=u, body={}), 201)
        ctx.expect(br.request("POST", "/delete_devices", user_id=u, body={"devices": ["DEVX", "DEVY"]}), 200)
        devices = ctx.expect(br.request("GET", "/devices", user_id=u))["devices"]
        if any(d["device_id"] in ("DEVX", "DEVY") for d in devices):
            raise TestFailure(f"devices still listed after /delete_devices: {devices}")
        ctx.expect(br.request("GET", "/account/whoami", user_id=u, device_id="DEVX"), 400, errcode="M_UNKNOWN_DEVICE")
        # Ordinary users still cannot create devices this way, and still need UIA to delete.
        alice = ctx.register(srv, "alice")
        ctx.expect(alice.request("PUT", "/devices/NEWDEV", body={}), 404)
        res = alice.request("DELETE", f"/devices/{alice.device_id}", body={})
        ctx.expect(res, 401, body={"flows": "$array"})
        res = alice.request("POST", "/delete_devices", body={"devices": [alice.device_id]})
        ctx.expect(res, 401, body={"flows": "$array"})
