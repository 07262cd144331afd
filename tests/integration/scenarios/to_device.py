"""To-device messages where a case file cannot say it: paging a backlog, long-poll wake-ups, the
per-device bound, the sender rate limit, and durability across kill -9."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestFailure, User  # noqa: E402
from appservice_support import AsClient, AsEnv, registration  # noqa: E402

FAST = {"rc_to_device": {"per_second": 10000, "burst_count": 10000}}


def second_device(ctx, srv, user):
    res = srv.client().request("POST", "/login", body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.localpart},
        "password": user.password})
    return User(srv, user.localpart, user.password, ctx.expect(res))


def send(ctx, sender, target, txn, content, status=200, errcode=None, device=None):
    res = sender.request("PUT", f"/sendToDevice/m.test/{txn}",
                         body={"messages": {target.user_id: {device or target.device_id: content}}})
    return ctx.expect(res, status, errcode)


def sync(ctx, user, since=None, timeout=0):
    query = {"timeout": timeout}
    if since:
        query["since"] = since
    return ctx.expect(user.request("GET", "/sync", query=query, timeout=30))


def numbers(body):
    return [e["content"]["n"] for e in body["to_device"]["events"]]


class BackgroundSync(threading.Thread):
    def __init__(self, user, since, timeout_ms):
        super().__init__(daemon=True)
        self.user, self.query = user, {"since": since, "timeout": timeout_ms}
        self.result = self.error = self.finished = None

    def run(self):
        try:
            self.result = self.user.request("GET", "/sync", query=self.query, timeout=60)
        except Exception as e:  # reported by the test thread
            self.error = e
        self.finished = time.monotonic()

    def wait(self, timeout):
        self.join(timeout)
        if self.is_alive():
            raise TestFailure(f"/sync {self.query} did not return within {timeout}s")
        if self.error:
            raise self.error
        return self.result


def test_a_backlog_is_handed_out_in_pages_in_order_exactly_once(ctx):
    srv = ctx.server(config=FAST)
    alice, bob = ctx.register(srv, "alice"), ctx.register(srv, "bob")
    for n in range(250):
        send(ctx, alice, bob, f"p{n}", {"n": n})
    got, pages, since = [], [], None
    for _ in range(10):
        started = time.monotonic()
        # With messages still queued a long-poll must answer at once.
        body = sync(ctx, bob, since, timeout=10000 if since and len(got) < 250 else 0)
        took = time.monotonic() - started
        page = numbers(body)
        if not page:
            break
        if took > 2:
            raise TestFailure(f"a sync with {250 - len(got)} messages waiting took {took:.1f}s")
        pages.append(len(page))
        got += page
        since = body["next_batch"]
    if max(pages) > 100:
        raise TestFailure(f"pages of {pages} messages: want at most 100 each")
    if got != list(range(250)):
        raise TestFailure(f"delivered {len(got)} messages, out of order or repeated: pages {pages}")
    # The last token acknowledged everything: nothing comes back.
    if numbers(sync(ctx, bob, since)):
        raise TestFailure("messages came back after the last page was acknowledged")


def test_a_waiting_sync_wakes_when_a_message_arrives_for_its_device(ctx):
    srv = ctx.server()
    alice, bob = ctx.register(srv, "alice"), ctx.register(srv, "bob")
    bob2 = second_device(ctx, srv, bob)
    waiting = BackgroundSync(bob, sync(ctx, bob)["next_batch"], 10000)
    other = BackgroundSync(bob2, sync(ctx, bob2)["next_batch"], 2500)
    waiting.start()
    other.start()
    time.sleep(0.5)  # let both park in the server
    if not waiting.is_alive():
        raise TestFailure(f"/sync with nothing new returned at once: {waiting.result and waiting.result.describe()}")
    sent_at = time.monotonic()
    send(ctx, alice, bob, "wake", {"n": 1})
    res = waiting.wait(15)
    latency = waiting.finished - sent_at
    ctx.expect(res, 200, body={"to_device": {"events": [{"sender": alice.user_id, "type": "m.test", "content": {"n": 1}}]}})
    if latency > 1.0:
        raise TestFailure(f"/sync answered {latency:.2f}s after the message was sent (want well under a second)")
    ctx.expect(other.wait(15), 200, body={"to_device": {"events": []}})


def test_a_full_inbox_refuses_new_messages_until_the_device_syncs(ctx):
    srv = ctx.server(config={"max_to_device_queue": 5})
    alice, bob = ctx.register(srv, "alice"), ctx.register(srv, "bob")
    since = sync(ctx, bob)["next_batch"]
    for n in range(5):
        send(ctx, alice, bob, f"f{n}", {"n": n})
    err = send(ctx, alice, bob, "f5", {"n": 5}, status=429, errcode="M_LIMIT_EXCEEDED")
    if bob.device_id not in err.get("error", ""):
        raise TestFailure(f"the error does not say which device is full: {err}")
    body = sync(ctx, bob, since)
    if numbers(body) != [0, 1, 2, 3, 4]:
        raise TestFailure(f"the queued messages were not kept intact: {numbers(body)}")
    sync(ctx, bob, body["next_batch"])  # acknowledges them
    send(ctx, alice, bob, "f5", {"n": 5})  # the refused txnId was not recorded: it can be retried


def test_a_flooding_sender_is_rate_limited(ctx):
    srv = ctx.server(config={"rc_to_device": {"per_second": 0.1, "burst_count": 3}})
    alice, bob, carol = ctx.register(srv, "alice"), ctx.register(srv, "bob"), ctx.register(srv, "carol")
    for n in range(3):
        send(ctx, alice, bob, f"r{n}", {"n": n})
    err = send(ctx, alice, bob, "r3", {"n": 3}, status=429, errcode="M_LIMIT_EXCEEDED")
    if not isinstance(err.get("retry_after_ms"), int):
        raise TestFailure(f"no retry_after_ms in {err}")
    send(ctx, carol, bob, "c0", {"n": 100})  # another sender is not affected
    if numbers(sync(ctx, bob)) != [0, 1, 2, 100]:
        raise TestFailure("the refused message was queued anyway")


def test_acknowledged_sends_survive_kill_9(ctx):
    srv = ctx.server(config=FAST)
    alice, bob = ctx.register(srv, "alice"), ctx.register(srv, "bob")
    since = sync(ctx, bob)["next_batch"]
    for n in range(30):
        send(ctx, alice, bob, f"k{n}", {"n": n})
    srv.kill()
    srv.start()
    send(ctx, alice, bob, "k0", {"n": 0})  # a retry after the restart is still recognised
    body = sync(ctx, bob, since)
    if numbers(body) != list(range(30)):
        raise TestFailure(f"after kill -9 and restart the device got {numbers(body)}")


def test_appservices_send_and_receive_as_their_users_devices(ctx):
    with AsEnv(ctx) as env:
        reg = registration("bridge", None, "_td_bot", users=[(True, "@_td_.*")])
        srv = env.server([reg])
        br = AsClient(srv, reg)
        alice = ctx.register(srv, "alice")
        u = br.register("_td_alice")
        ctx.expect(br.request("PUT", "/devices/TDDEV", user_id=u, body={}), 201)
        since = ctx.expect(br.request("GET", "/sync", user_id=u, device_id="TDDEV", query={"timeout": 0}))["next_batch"]
        # To the masqueraded user's device.
        ctx.expect(alice.request("PUT", "/sendToDevice/m.test/as1", body={"messages": {u: {"TDDEV": {"n": 1}}}}))
        # From the user without a device: idempotency keys on the appservice's token and the user.
        for _ in range(2):
            ctx.expect(br.request("PUT", "/sendToDevice/m.test/as2", user_id=u,
                                  body={"messages": {alice.user_id: {alice.device_id: {"n": 2}}}}))
        # The same txnId from the bridge's own user is a different request.
        ctx.expect(br.request("PUT", "/sendToDevice/m.test/as2",
                              body={"messages": {alice.user_id: {alice.device_id: {"n": 3}}}}))
        ctx.expect(br.request("GET", "/sync", user_id=u, device_id="TDDEV", query={"timeout": 0, "since": since}),
                   body={"to_device": {"events": [{"sender": alice.user_id, "content": {"n": 1}}]}})
        ctx.expect(alice.request("GET", "/sync", query={"timeout": 0}),
                   body={"to_device": {"events": [{"sender": u, "content": {"n": 2}},
                                                  {"sender": br.sender, "content": {"n": 3}}]}})
        # Without a device there is no inbox to read; the rest of /sync still works.
        ctx.expect(br.request("GET", "/sync", user_id=u, query={"timeout": 0}), body={"to_device": {"events": []}})
