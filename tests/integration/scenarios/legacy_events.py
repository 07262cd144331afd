"""The r0 event stream (GET /events) long-polls like /sync: a waiting request answers as soon as
something arrives for it (also for a non-member watching a world_readable room with room_id),
and an idle one answers with an empty chunk when its timeout runs out."""

import threading
import time

from harness import TestFailure


class BackgroundEvents(threading.Thread):
    def __init__(self, user, **query):
        super().__init__(daemon=True)
        self.user, self.query = user, query
        self.result = self.error = self.finished = None

    def run(self):
        try:
            self.result = self.user.request("GET", "/events", query=self.query, timeout=60)
        except Exception as e:  # reported by the test thread
            self.error = e
        self.finished = time.monotonic()

    def wait(self, timeout):
        self.join(timeout)
        if self.is_alive():
            raise TestFailure(f"/events {self.query} did not return within {timeout}s")
        if self.error:
            raise self.error
        return self.result


def setup(ctx, srv, visibility="shared"):
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat", "initial_state": [
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": visibility}}]}))["room_id"]
    return alice, bob, room


def token_of(ctx, user, **query):
    return ctx.expect(user.request("GET", "/events", query={"timeout": 0, **query}))["end"]


def parked(waiting):
    time.sleep(0.4)  # let it park in the server
    if not waiting.is_alive():
        raise TestFailure(f"/events with nothing new returned at once: {waiting.result and waiting.result.describe()}")


def test_events_wakes_on_a_message(ctx):
    srv = ctx.server()
    alice, bob, room = setup(ctx, srv)
    waiting = BackgroundEvents(alice, **{"from": token_of(ctx, alice), "timeout": 10000})
    waiting.start()
    parked(waiting)
    sent_at = time.monotonic()
    event_id = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/e1",
                                        body={"msgtype": "m.text", "body": "wake up"}))["event_id"]
    res = waiting.wait(15)
    ctx.expect(res, 200, body={"chunk": [{"event_id": event_id, "room_id": room}], "end": "$nonempty"})
    if waiting.finished - sent_at > 1.0:
        raise TestFailure(f"/events answered {waiting.finished - sent_at:.2f}s after the message (want well under 1 s)")


def test_events_without_from_waits_for_the_next_event(ctx):
    srv = ctx.server()
    alice, bob, room = setup(ctx, srv)
    ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/old", body={"msgtype": "m.text", "body": "old"}))
    waiting = BackgroundEvents(alice, timeout=10000)
    waiting.start()
    parked(waiting)
    ctx.expect(alice.request("PUT", f"/rooms/{room}/typing/{alice.user_id}", body={"typing": True, "timeout": 10000}))
    res = waiting.wait(15)
    ctx.expect(res, 200, body={"chunk": [{"type": "m.typing", "room_id": room, "content": {"user_ids": [alice.user_id]}}]})


def test_events_times_out_empty(ctx):
    srv = ctx.server()
    alice, bob, room = setup(ctx, srv)
    tok = token_of(ctx, alice)
    started = time.monotonic()
    res = alice.request("GET", "/events", query={"from": tok, "timeout": 500})
    took = time.monotonic() - started
    ctx.expect(res, 200, body={"chunk": [], "start": tok, "end": "$nonempty"})
    if not 0.45 <= took <= 2.5:
        raise TestFailure(f"/events with timeout=500 and nothing new took {took:.2f}s (want about 0.5s)")


def test_a_non_member_watching_a_world_readable_room_is_woken(ctx):
    srv = ctx.server()
    alice, bob, room = setup(ctx, srv, "world_readable")
    waiting = BackgroundEvents(bob, **{"from": token_of(ctx, bob, room_id=room), "timeout": 10000, "room_id": room})
    waiting.start()
    parked(waiting)
    ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/w1", body={"msgtype": "m.text", "body": "mice"}))
    res = waiting.wait(15)
    ctx.expect(res, 200, body={"chunk": [{"type": "m.room.message", "room_id": room, "content": {"body": "mice"}}]})
