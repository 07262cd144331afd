"""Rate limits from rc_message and rc_login: over the burst, 429 M_LIMIT_EXCEEDED with retry_after_ms."""

from harness import TestFailure

SLOW = {"per_second": 0.1, "burst_count": 2}


def check_limited(ctx, res):
    body = ctx.expect(res, 429, "M_LIMIT_EXCEEDED", body={"retry_after_ms": "$int"})
    if body["retry_after_ms"] <= 0:
        raise TestFailure(f"retry_after_ms should be positive: {body}")
    return body


def test_the_third_message_is_rate_limited(ctx):
    srv = ctx.server(config={"rc_message": SLOW})
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
    ctx.expect(bob.request("POST", f"/join/{room}", body={}))
    for i in range(2):
        ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/ok{i}", body={"msgtype": "m.text", "body": "x"}))
    body = check_limited(ctx, alice.request("PUT", f"/rooms/{room}/send/m.room.message/third",
                                            body={"msgtype": "m.text", "body": "x"}))
    # At 0.1 per second the next message is about ten seconds away.
    if not 1000 <= body["retry_after_ms"] <= 10000:
        raise TestFailure(f"retry_after_ms {body['retry_after_ms']} does not fit per_second 0.1")
    # The limit is per user: bob still has his burst.
    ctx.expect(bob.request("PUT", f"/rooms/{room}/send/m.room.message/bob1", body={"msgtype": "m.text", "body": "y"}))
    # The limited message was not sent.
    chunk = ctx.expect(alice.request("GET", f"/rooms/{room}/messages", query={"dir": "b", "limit": 10}))["chunk"]
    if sum(1 for e in chunk if e["type"] == "m.room.message" and e["sender"] == alice.user_id) != 2:
        raise TestFailure("the rate-limited message was stored anyway")


def test_a_retried_transaction_is_not_rate_limited_twice(ctx):
    srv = ctx.server(config={"rc_message": SLOW})
    alice = ctx.register(srv, "alice")
    room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
    first = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/same", body={"msgtype": "m.text", "body": "x"}))
    ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/other", body={"msgtype": "m.text", "body": "x"}))
    retry = alice.request("PUT", f"/rooms/{room}/send/m.room.message/same", body={"msgtype": "m.text", "body": "x"})
    # A retry of an already-sent transaction is answered from the record, or limited: never a new event.
    if retry.status == 200 and retry.json.get("event_id") != first["event_id"]:
        raise TestFailure(f"the retry made a new event: {retry.describe()}")
    if retry.status not in (200, 429):
        raise TestFailure(f"unexpected answer to a retried transaction: {retry.describe()}")


def test_logins_are_rate_limited_per_address(ctx):
    srv = ctx.server(config={"rc_login": {"address": SLOW}})
    alice = ctx.register(srv, "alice")
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.localpart}, "password": alice.password}
    client = srv.client()
    for _ in range(2):
        ctx.expect(client.request("POST", "/login", body=body))
    check_limited(ctx, client.request("POST", "/login", body=body))


def test_registrations_are_rate_limited_per_address(ctx):
    srv = ctx.server(config={"rc_registration": SLOW})
    client = srv.client()
    for i in range(2):
        ctx.expect(client.request("POST", "/register", body={"username": f"r{i}-{ctx.run_id}", "password": "pw-12345",
                                                             "auth": {"type": "m.login.dummy"}}))
    check_limited(ctx, client.request("POST", "/register", body={"username": f"r3-{ctx.run_id}", "password": "pw-12345",
                                                                 "auth": {"type": "m.login.dummy"}}))
