"""Encrypted bridges (issue 8): to-device messages for an appservice's users in its transactions
(MSC4203, under MSC2409's `de.sorunome.msc2409.to_device`), kept out of the devices' /sync, and
MSC3202's device lists and one-time / fallback key counts, delivered durably (an appservice that
is down gets everything, exactly once and in order, when it comes back, even across kill -9)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestFailure  # noqa: E402
from appservice_support import AsClient, AsEnv, registration, wait_for  # noqa: E402

SERVER = "localhost"
TO_DEVICE = "de.sorunome.msc2409.to_device"


def setup(ctx, env, **extra):
    reg = registration("bridge", None, "_br_bot", users=[(True, "@_br_.*"), (False, "@_sh_.*")], receive_ephemeral=True,
                       **{"org.matrix.msc3202": True, "io.element.msc4190": True}, **extra)
    lst = env.listener(reg)
    srv = env.server([reg])
    asc = AsClient(srv, reg)
    bridged = asc.register("_br_alice")
    ctx.expect(asc.request("PUT", "/devices/BRDEV", user_id=bridged, body={"display_name": "bridge"}), 201)
    alice = ctx.register(srv, "alice")
    return reg, lst, srv, asc, bridged, alice


def delivered_to_device(lst):
    return [m for r in lst.accepted_txns() for m in (r.json or {}).get(TO_DEVICE, [])]


def send_to_device(ctx, user, target, device, txn, n):
    ctx.expect(user.request("PUT", f"/sendToDevice/m.test/{txn}",
                            body={"messages": {target: {device: {"n": n}}}}))


def device_keys(user_id, device):
    return {"user_id": user_id, "device_id": device, "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
            "keys": {f"curve25519:{device}": "c" * 43, f"ed25519:{device}": "e" * 43},
            "signatures": {user_id: {f"ed25519:{device}": "s" * 86}}}


def otk(user_id, device, n):
    return {f"signed_curve25519:K{i}": {"key": f"k{i}" + "x" * 40, "signatures": {user_id: {f"ed25519:{device}": "s" * 86}}}
            for i in range(n)}


def test_to_device_goes_in_transactions_not_sync(ctx):
    with AsEnv(ctx) as env:
        reg, lst, srv, asc, bridged, alice = setup(ctx, env)
        send_to_device(ctx, alice, bridged, "BRDEV", "t1", 1)
        msgs = wait_for(lambda: delivered_to_device(lst), 5, "a to-device message in a transaction")
        want = {"type": "m.test", "sender": alice.user_id, "to_user_id": bridged, "to_device_id": "BRDEV",
                "content": {"n": 1}}
        if msgs != [want]:
            raise TestFailure(f"to-device in transactions: {msgs}, want [{want}]")
        # The device's (masqueraded) /sync does not get it too.
        res = ctx.expect(asc.request("GET", "/sync", user_id=bridged, device_id="BRDEV", query={"timeout": "0"}))
        if res.get("to_device", {}).get("events"):
            raise TestFailure(f"/sync of the bridged device also got the message: {res['to_device']}")
        # Messages to users outside the namespace stay for their /sync, not the appservice.
        bob = ctx.register(srv, "bob")
        send_to_device(ctx, alice, bob.user_id, bob.device_id, "t2", 2)
        got = ctx.expect(bob.request("GET", "/sync", query={"timeout": "0"}))["to_device"]["events"]
        if [e["content"] for e in got] != [{"n": 2}]:
            raise TestFailure(f"bob's /sync: {got}")
        # A user in the shared (non-exclusive) namespace syncs their own devices: theirs stay too.
        shared = ctx.register(srv, "_sh_dave")
        send_to_device(ctx, alice, shared.user_id, shared.device_id, "t4", 4)
        got = ctx.expect(shared.request("GET", "/sync", query={"timeout": "0"}))["to_device"]["events"]
        if [e["content"] for e in got] != [{"n": 4}]:
            raise TestFailure(f"the non-exclusive user's /sync: {got}")
        send_to_device(ctx, alice, bridged, "BRDEV", "t3", 3)
        wait_for(lambda: len(delivered_to_device(lst)) == 2, 5, "the second bridged message")
        if [m["content"]["n"] for m in delivered_to_device(lst)] != [1, 3]:
            raise TestFailure(f"the appservice got {delivered_to_device(lst)}")


def test_msc3202_key_counts_and_device_lists(ctx):
    with AsEnv(ctx) as env:
        reg, lst, srv, asc, bridged, alice = setup(ctx, env)
        ctx.expect(asc.request("POST", "/keys/upload", user_id=bridged, device_id="BRDEV",
                               body={"one_time_keys": otk(bridged, "BRDEV", 3)}))

        def counts():
            for r in reversed(lst.accepted_txns()):
                c = (r.json or {}).get("org.matrix.msc3202.device_one_time_keys_count")
                if c:
                    return r.json
            return None
        body = wait_for(counts, 5, "one-time key counts in a transaction")
        got = body["org.matrix.msc3202.device_one_time_keys_count"]
        if got.get(bridged, {}).get("BRDEV", {}).get("signed_curve25519") != 3:
            raise TestFailure(f"counts: {got}")
        if body["events"]:
            raise TestFailure("expected a transaction with counts and no events")
        if body.get("org.matrix.msc3202.device_unused_fallback_key_types", {}).get(bridged, {}).get("BRDEV") != []:
            raise TestFailure(f"fallback key types: {body}")
        # A claim changes the count: the next transaction says 2; only changed devices are listed.
        before = len(lst.accepted_txns())
        ctx.expect(alice.request("POST", "/keys/claim", body={"one_time_keys": {bridged: {"BRDEV": "signed_curve25519"}}}))
        wait_for(lambda: len(lst.accepted_txns()) > before and counts()["org.matrix.msc3202.device_one_time_keys_count"]
                 [bridged]["BRDEV"]["signed_curve25519"] == 2, 5, "the count after a claim")

        # alice shares a room with the bridged user and uploads device keys: device_lists.changed.
        room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
        ctx.expect(asc.request("POST", f"/join/{room}", user_id=bridged, body={}))
        ctx.expect(alice.request("POST", "/keys/upload", body={"device_keys": device_keys(alice.user_id, alice.device_id)}))

        def changed():
            return [u for r in lst.accepted_txns()
                    for u in (r.json or {}).get("org.matrix.msc3202.device_lists", {}).get("changed", [])]
        wait_for(lambda: alice.user_id in changed(), 5, "alice in device_lists.changed")
        # A stranger's keys are none of the bridge's business.
        carol = ctx.register(srv, "carol")
        ctx.expect(carol.request("POST", "/keys/upload", body={"device_keys": device_keys(carol.user_id, carol.device_id)}))
        # A marker after carol's upload: once it arrives, carol's change would have too.
        send_to_device(ctx, alice, bridged, "BRDEV", "after", 1)
        wait_for(lambda: delivered_to_device(lst), 5, "the marker message")
        if carol.user_id in changed():
            raise TestFailure("a stranger's device-list change was sent to the appservice")

        # carol joins the room: now she shares it (changed); alice leaves it: she shares none (left).
        ctx.expect(carol.request("POST", f"/join/{room}", body={}))
        ctx.expect(alice.request("POST", f"/rooms/{room}/leave", body={}))

        def left():
            return [u for r in lst.accepted_txns()
                    for u in (r.json or {}).get("org.matrix.msc3202.device_lists", {}).get("left", [])]
        wait_for(lambda: alice.user_id in left() and carol.user_id in changed(), 5,
                 "carol in device_lists.changed and alice in left")
        if carol.user_id in left():
            raise TestFailure(f"carol in device_lists.left: {left()}")


def test_key_counts_of_several_devices_merge_while_down(ctx):
    with AsEnv(ctx) as env:
        reg, lst, srv, asc, bridged, alice = setup(ctx, env)
        for dev in ("D2", "D3"):
            ctx.expect(asc.request("PUT", f"/devices/{dev}", user_id=bridged, body={}), 201)
        # The new devices' device-list transactions first, so the failing one is BRDEV's counts.
        wait_for(lambda: (lambda s: s.get("queued_txns") == 0 and s.get("stream_lag") == 0)(asc.status()), 5,
                 "the device-list transactions to be delivered")
        lst.failing = True
        ctx.expect(asc.request("POST", "/keys/upload", user_id=bridged, device_id="BRDEV",
                               body={"one_time_keys": otk(bridged, "BRDEV", 1)}))
        wait_for(lambda: [r for r in lst.txn_requests() if r.status not in (None, 200) and
                          "org.matrix.msc3202.device_one_time_keys_count" in (r.json or {})], 5,
                 "a failed transaction with BRDEV's counts")
        for dev, n in (("D2", 2), ("D3", 3)):
            ctx.expect(asc.request("POST", "/keys/upload", user_id=bridged, device_id=dev,
                                   body={"one_time_keys": otk(bridged, dev, n)}))
        lst.failing = False
        ctx.expect(asc.ping(), body={"duration_ms": "$int"})

        def merged():
            out = {}
            for r in lst.accepted_txns():
                for dev, c in (r.json or {}).get("org.matrix.msc3202.device_one_time_keys_count", {}).get(bridged, {}).items():
                    out[dev] = c.get("signed_curve25519")
            return out
        try:
            wait_for(lambda: merged() == {"BRDEV": 1, "D2": 2, "D3": 3}, 5, "counts of all three devices")
        except TestFailure as e:
            raise TestFailure(f"{e}; got {merged()}") from None
        last = lst.accepted_txns()[-1].json["org.matrix.msc3202.device_one_time_keys_count"][bridged]
        if set(last) != {"D2", "D3"}:
            raise TestFailure(f"the transaction after the outage has the counts of {sorted(last)}, want D2 and D3")


def test_to_device_burst_while_down_and_kill_9(ctx):
    with AsEnv(ctx) as env:
        reg, lst, srv, asc, bridged, alice = setup(ctx, env)
        lst.failing = True
        for i in range(25):
            send_to_device(ctx, alice, bridged, "BRDEV", f"a{i}", i)
        wait_for(lambda: [r for r in lst.txn_requests() if r.status not in (None, 200)], 5, "a failed transaction")
        srv.kill()
        srv.start()
        for i in range(25, 50):
            send_to_device(ctx, alice, bridged, "BRDEV", f"a{i}", i)
        lst.failing = False
        ctx.expect(asc.ping(), body={"duration_ms": "$int"})
        wait_for(lambda: len(delivered_to_device(lst)) >= 50, 10, "50 to-device messages")
        got = [m["content"]["n"] for m in delivered_to_device(lst)]
        if got != list(range(50)):
            raise TestFailure(f"to-device messages not each once in order: {got}")
        res = ctx.expect(asc.request("GET", "/sync", user_id=bridged, device_id="BRDEV", query={"timeout": "0"}))
        if res.get("to_device", {}).get("events"):
            raise TestFailure("the bridged device's /sync also got messages")


def test_presence_of_bridged_users_and_their_contacts_goes_in_transactions(ctx):
    """MSC2409's m.presence: the appservice's own users and the users who share a room with one of
    them; a stranger's presence is not sent, and a repeated unchanged presence is not resent."""
    with AsEnv(ctx) as env:
        reg, lst, srv, asc, bridged, alice = setup(ctx, env)
        stranger = ctx.register(srv, "stranger")
        room = ctx.expect(alice.request("POST", "/createRoom", body={"invite": [bridged]}))["room_id"]
        ctx.expect(asc.request("POST", f"/join/{room}", user_id=bridged, body={}))

        def presence():
            return [(e["sender"], e["content"]) for r in lst.accepted_txns()
                    for e in (r.json or {}).get("ephemeral", []) if e.get("type") == "m.presence"]

        ctx.expect(stranger.request("PUT", f"/presence/{stranger.user_id}/status", body={"presence": "online"}))
        ctx.expect(alice.request("PUT", f"/presence/{alice.user_id}/status",
                                 body={"presence": "unavailable", "status_msg": "at lunch"}))
        ctx.expect(asc.request("PUT", f"/presence/{bridged}/status", user_id=bridged, body={"presence": "online"}))
        got = wait_for(lambda: len(presence()) >= 2 and presence(), 5, "two m.presence in transactions")
        senders = sorted(s for s, _ in got)
        if senders != sorted([alice.user_id, bridged]):
            raise TestFailure(f"m.presence senders {senders}: want alice (a contact) and the bridged user only")
        content = dict(got)[alice.user_id]
        if content.get("presence") != "unavailable" or content.get("status_msg") != "at lunch" \
                or not isinstance(content.get("last_active_ago"), int):
            raise TestFailure(f"alice's presence content: {content}")
        # The same presence again is no change: nothing new is sent.
        ctx.expect(alice.request("PUT", f"/presence/{alice.user_id}/status",
                                 body={"presence": "unavailable", "status_msg": "at lunch"}))
        ctx.expect(alice.request("PUT", f"/presence/{alice.user_id}/status", body={"presence": "online"}))
        wait_for(lambda: len(presence()) == 3, 5, "alice's change to online")
        if presence()[-1][0] != alice.user_id or presence()[-1][1]["presence"] != "online":
            raise TestFailure(f"the last m.presence: {presence()[-1]}")
