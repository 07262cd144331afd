"""Long-polling /sync: a waiting request answers as soon as something arrives for it, and an idle
one answers empty when its timeout runs out."""

import threading
import time

from harness import TestFailure, show


def shared_room(ctx, srv):
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    res = alice.request("POST", "/createRoom", body={"preset": "public_chat"})
    room = ctx.expect(res)["room_id"]
    ctx.expect(bob.request("POST", f"/join/{room}", body={}))
    return alice, bob, room


def since_of(ctx, user):
    return ctx.expect(user.request("GET", "/sync", query={"timeout": 0}))["next_batch"]


class BackgroundSync(threading.Thread):
    """A /sync running on its own thread; .result is the Response, .finished the monotonic time."""

    def __init__(self, user, **query):
        super().__init__(daemon=True)
        self.user = user
        self.query = query
        self.result = None
        self.error = None
        self.finished = None

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


def test_sync_wakes_on_a_message(ctx):
    srv = ctx.server()
    alice, bob, room = shared_room(ctx, srv)
    since = since_of(ctx, bob)
    waiting = BackgroundSync(bob, since=since, timeout=10000)
    waiting.start()
    time.sleep(0.5)  # let it park in the server
    if not waiting.is_alive():
        raise TestFailure(f"/sync with nothing new returned at once: {waiting.result and waiting.result.describe()}")
    sent_at = time.monotonic()
    event_id = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/lp1",
                                        body={"msgtype": "m.text", "body": "wake up"}))["event_id"]
    res = waiting.wait(15)
    latency = waiting.finished - sent_at
    ctx.expect(res, 200, body={"rooms": {"join": {room: {"timeline": {"events": {"$contains": [{"event_id": event_id}]}}}}}})
    if latency > 1.0:
        raise TestFailure(f"/sync answered {latency:.2f}s after the message was sent (want well under a second)")


def test_sync_times_out_empty(ctx):
    srv = ctx.server()
    alice, bob, room = shared_room(ctx, srv)
    since = since_of(ctx, bob)
    started = time.monotonic()
    res = bob.request("GET", "/sync", query={"since": since, "timeout": 500})
    took = time.monotonic() - started
    body = ctx.expect(res, 200, body={"$all": ["$shape:sync", {"rooms?": {"join": {"$keys": []}, "invite": {"$keys": []},
                                                                           "leave": {"$keys": []}}}]})
    if not 0.45 <= took <= 2.5:
        raise TestFailure(f"/sync with timeout=500 and nothing new took {took:.2f}s (want about 0.5s)")
    if "next_batch" not in body:
        raise TestFailure("no next_batch")


def test_sync_without_timeout_answers_at_once(ctx):
    srv = ctx.server()
    alice, bob, room = shared_room(ctx, srv)
    since = since_of(ctx, bob)
    res = bob.request("GET", "/sync", query={"since": since})
    ctx.expect(res, 200, body={"rooms": {"join": {"$keys": []}}})
    if res.elapsed > 2:  # no timeout means no waiting (a long-poll would take its full timeout)
        raise TestFailure(f"/sync without timeout took {res.elapsed:.2f}s")


def test_an_invite_wakes_the_invitee(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    carol = ctx.register(srv, "carol")
    room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
    waiting = BackgroundSync(carol, since=since_of(ctx, carol), timeout=10000)
    waiting.start()
    time.sleep(0.3)
    sent_at = time.monotonic()
    ctx.expect(alice.request("POST", f"/rooms/{room}/invite", body={"user_id": carol.user_id}))
    res = waiting.wait(15)
    ctx.expect(res, 200, body={"rooms": {"invite": {room: "$shape:invited_room"}}})
    if waiting.finished - sent_at > 1.0:
        raise TestFailure(f"the invitee's /sync answered {waiting.finished - sent_at:.2f}s after the invite")


def test_typing_wakes_sync(ctx):
    srv = ctx.server()
    alice, bob, room = shared_room(ctx, srv)
    waiting = BackgroundSync(bob, since=since_of(ctx, bob), timeout=10000)
    waiting.start()
    time.sleep(0.3)
    ctx.expect(alice.request("PUT", f"/rooms/{room}/typing/{alice.user_id}", body={"typing": True, "timeout": 10000}))
    res = waiting.wait(15)
    ctx.expect(res, 200, body={"rooms": {"join": {room: {"ephemeral": {"events": {"$contains": [
        {"type": "m.typing", "content": {"user_ids": [alice.user_id]}}]}}}}}})


def test_many_waiters_all_wake(ctx):
    srv = ctx.server()
    alice, bob, room = shared_room(ctx, srv)
    since = since_of(ctx, bob)
    waiters = [BackgroundSync(bob, since=since, timeout=10000) for _ in range(20)]
    for w in waiters:
        w.start()
    time.sleep(0.5)
    early = [w for w in waiters if not w.is_alive()]
    if early:
        raise TestFailure(f"{len(early)} waiting /syncs returned before anything happened")
    event_id = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/many",
                                        body={"msgtype": "m.text", "body": "everyone"}))["event_id"]
    for w in waiters:
        res = w.wait(15)
        ctx.expect(res, 200, body={"rooms": {"join": {room: {"timeline": {"events": [{"event_id": event_id}]}}}}})


def test_a_sync_is_not_woken_by_another_users_room(ctx):
    srv = ctx.server()
    alice, bob, room = shared_room(ctx, srv)
    carol = ctx.register(srv, "carol")
    other = ctx.expect(carol.request("POST", "/createRoom", body={}))["room_id"]
    waiting = BackgroundSync(bob, since=since_of(ctx, bob), timeout=1500)
    waiting.start()
    time.sleep(0.3)
    ctx.expect(carol.request("PUT", f"/rooms/{other}/send/m.room.message/x", body={"msgtype": "m.text", "body": "elsewhere"}))
    res = waiting.wait(15)
    body = ctx.expect(res, 200)
    if body.get("rooms", {}).get("join"):
        raise TestFailure(f"bob's /sync carried rooms he is not in: {show(body['rooms']['join'])}")
    if res.elapsed < 1.2:
        raise TestFailure(f"bob's /sync returned after {res.elapsed:.2f}s, before its timeout, for another room's event")
