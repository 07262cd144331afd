"""What a reply says is done survives kill -9; a restart keeps the identity of the server."""

import os

from harness import TestFailure

MESSAGES = 60


def all_messages(ctx, user, room):
    """Every m.room.message in the room, oldest first, paging backwards through /messages."""
    events, token = [], None
    while True:
        query = {"dir": "b", "limit": 25}
        if token:
            query["from"] = token
        body = ctx.expect(user.request("GET", f"/rooms/{room}/messages", query=query))
        events += [e for e in body["chunk"] if e["type"] == "m.room.message"]
        token = body.get("end")
        if not token or not body["chunk"]:
            return list(reversed(events))


def test_acknowledged_messages_survive_kill_9(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
    acknowledged = []
    for i in range(MESSAGES):
        res = alice.request("PUT", f"/rooms/{room}/send/m.room.message/d{i}", body={"msgtype": "m.text", "body": f"n{i}"})
        acknowledged.append(ctx.expect(res)["event_id"])
    srv.kill()
    srv.start()
    # The same access token still works after the crash.
    ctx.expect(alice.request("GET", "/account/whoami"), body={"user_id": alice.user_id, "device_id": alice.device_id})
    found = [e["event_id"] for e in all_messages(ctx, alice, room)]
    missing = [e for e in acknowledged if e not in found]
    if missing:
        raise TestFailure(f"{len(missing)} of {MESSAGES} acknowledged events are gone after kill -9, e.g. {missing[:3]}")
    if found != acknowledged:
        raise TestFailure("events came back in another order or with extras after the restart")
    # And the room carries on: a new message after the old ones.
    new_id = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/after", body={"msgtype": "m.text", "body": "after"}))["event_id"]
    found = [e["event_id"] for e in all_messages(ctx, alice, room)]
    if found[-1] != new_id or len(found) != MESSAGES + 1:
        raise TestFailure("a message sent after the restart is not the newest one")


def test_interleaved_messages_and_account_data_survive_kill_9(ctx):
    """Two users' sends and account data writes, interleaved; kill -9 right after the last."""
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
    ctx.expect(bob.request("POST", f"/join/{room}", body={}))
    acknowledged = []
    for i in range(20):
        sender = alice if i % 2 else bob
        res = sender.request("PUT", f"/rooms/{room}/send/m.room.message/x{i}", body={"msgtype": "m.text", "body": str(i)})
        acknowledged.append(ctx.expect(res)["event_id"])
        ctx.expect(sender.request("PUT", f"/user/{sender.user_id}/account_data/org.example.counter", body={"n": i}))
    srv.kill()
    srv.start()
    found = [e["event_id"] for e in all_messages(ctx, bob, room)]
    if found != acknowledged:
        raise TestFailure(f"after kill -9 /messages has {len(found)} messages, {len(acknowledged)} were acknowledged")
    ctx.expect(alice.request("GET", f"/user/{alice.user_id}/account_data/org.example.counter"), body={"n": 19})
    ctx.expect(bob.request("GET", f"/user/{bob.user_id}/account_data/org.example.counter"), body={"n": 18})


def test_a_retried_transaction_after_a_crash_is_not_sent_twice(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
    body = {"msgtype": "m.text", "body": "exactly once"}
    first = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/retry-me", body=body))["event_id"]
    srv.kill()
    srv.start()
    again = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/retry-me", body=body))["event_id"]
    if again != first:
        raise TestFailure(f"the retried transaction made a second event ({again}, first was {first})")
    if len(all_messages(ctx, alice, room)) != 1:
        raise TestFailure("the room has more than one message after the retry")


def test_restart_keeps_the_signing_key_and_server_name(ctx):
    srv = ctx.server()
    key_path = srv.config(srv.port)["signing_key_path"]
    if not os.path.exists(key_path):
        raise TestFailure(f"no signing key was generated at {key_path}")
    with open(key_path, "rb") as f:
        key_before = f.read()
    if not key_before.startswith(b"ed25519 "):
        raise TestFailure(f"the signing key file is not in Synapse's format: {key_before[:40]!r}")
    alice = ctx.register(srv, "alice")
    srv.stop()
    srv.start()
    with open(key_path, "rb") as f:
        if f.read() != key_before:
            raise TestFailure("the signing key file changed across a restart")
    ctx.expect(alice.request("GET", "/account/whoami"), body={"user_id": alice.user_id})
    if not alice.user_id.endswith(":localhost"):
        raise TestFailure(f"unexpected server name in {alice.user_id}")
    bob = ctx.register(srv, "bob")
    if not bob.user_id.endswith(":localhost"):
        raise TestFailure(f"a user registered after the restart is {bob.user_id}")
    srv.kill()
    srv.start()
    with open(key_path, "rb") as f:
        if f.read() != key_before:
            raise TestFailure("the signing key file changed across a kill -9 and restart")
    ctx.expect(bob.request("GET", "/account/whoami"), body={"user_id": bob.user_id})
