"""Push notifications to a push gateway (spec: push-gateway-api, POST /_matrix/push/v1/notify):
the request's body, retries after a failure, rejected pushkeys, a durable queue across a kill -9,
and GET /notifications. The gateway is a small plain-http server in this process."""

import http.server
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import ABSENT, Matcher, TestFailure  # noqa: E402

PATH = "/_matrix/push/v1/notify"


class Gateway:
    """Records every request; answers from `script` (a list of (status, body)) then `default`."""

    def __init__(self):
        self.requests = []  # (monotonic time, path, parsed body)
        self.script = []
        self.default = (200, {})
        self.lock = threading.Lock()
        gw = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with gw.lock:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = {"unparsable": raw.decode(errors="replace")}
                    gw.requests.append((time.monotonic(), self.path, body))
                    status, answer = gw.script.pop(0) if gw.script else gw.default
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{PATH}"

    def for_event(self, event_id):
        with self.lock:
            return [r for r in self.requests if r[2].get("notification", {}).get("event_id") == event_id]

    def wait_for_event(self, event_id, count=1, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.for_event(event_id)
            if len(got) >= count:
                return got
            time.sleep(0.02)
        with self.lock:
            seen = [r[2] for r in self.requests]
        raise TestFailure(f"gateway did not get {count} request(s) for {event_id} within {timeout}s; got {seen}")

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def set_pusher(ctx, user, url, pushkey="key-1", **data):
    ctx.expect(user.request("POST", "/pushers/set", body={
        "kind": "http", "app_id": "org.example.app", "pushkey": pushkey, "app_display_name": "Example",
        "device_display_name": "Phone", "lang": "en", "profile_tag": "tag", "data": dict(url=url, **data)}))


def room_with(ctx, alice, bob, name=None):
    body = {"preset": "private_chat", "invite": [alice.user_id]}
    if name:
        body["name"] = name
    room = ctx.expect(bob.request("POST", "/createRoom", body=body))["room_id"]
    ctx.expect(alice.request("POST", f"/join/{room}", body={}))
    return room


def send(ctx, user, room, text):
    txn = f"t{time.monotonic_ns()}"
    return ctx.expect(user.request("PUT", f"/rooms/{room}/send/m.room.message/{txn}",
                                   body={"msgtype": "m.text", "body": text}))["event_id"]


def test_a_message_is_pushed_with_the_spec_body(ctx):
    gw = Gateway()
    try:
        srv = ctx.server()
        alice, bob = ctx.register(srv, "alice"), ctx.register(srv, "bob")
        ctx.expect(bob.request("PUT", f"/profile/{bob.user_id}/displayname", body={"displayname": "Bob B"}))
        room = room_with(ctx, alice, bob, name="Tea room")
        set_pusher(ctx, alice, gw.url, extra="x")
        event_id = send(ctx, bob, room, "hello alice")
        (_, path, body), = gw.wait_for_event(event_id)
        if path != PATH:
            raise TestFailure(f"push went to {path}")
        n = body["notification"]
        want = {"event_id": event_id, "room_id": room, "type": "m.room.message", "sender": bob.user_id,
                "sender_display_name": "Bob B", "room_name": "Tea room", "prio": "high", "user_is_target": False,
                "content": {"msgtype": "m.text", "body": "hello alice"}, "counts": {"unread": {"$ge": 1}},
                "devices": [{"app_id": "org.example.app", "pushkey": "key-1", "pushkey_ts": "$int",
                             "data": {"$eq": {"extra": "x"}}, "tweaks": "$object"}]}
        problems = Matcher({}, ctx.shapes).match(want, n if n is not None else ABSENT)
        if problems:
            raise TestFailure(f"notification {n} does not match: {problems}")
        # event_id_only: just the ids, counts, devices and prio.
        set_pusher(ctx, alice, gw.url, pushkey="key-2", format="event_id_only")
        event_id = send(ctx, bob, room, "second")
        reqs = gw.wait_for_event(event_id, count=2)
        bodies = {r[2]["notification"]["devices"][0]["pushkey"]: r[2]["notification"] for r in reqs}
        slim = bodies.get("key-2")
        if slim is None or "content" in slim or "sender" in slim or slim.get("room_id") != room:
            raise TestFailure(f"event_id_only notification wrong: {slim}")
        if slim["devices"][0]["data"] != {}:
            raise TestFailure(f"format and url must not be in devices.data: {slim['devices'][0]}")
    finally:
        gw.close()


def test_invites_are_pushed(ctx):
    gw = Gateway()
    try:
        srv = ctx.server()
        alice, bob = ctx.register(srv, "alice"), ctx.register(srv, "bob")
        set_pusher(ctx, alice, gw.url)
        room = ctx.expect(bob.request("POST", "/createRoom", body={"preset": "private_chat"}))["room_id"]
        ctx.expect(bob.request("POST", f"/rooms/{room}/invite", body={"user_id": alice.user_id}))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with gw.lock:
                got = [r[2]["notification"] for r in gw.requests]
            if got:
                break
            time.sleep(0.02)
        if not got:
            raise TestFailure("no push for the invite")
        n = got[0]
        if (n.get("type"), n.get("membership"), n.get("user_is_target"), n.get("prio"), n.get("sender")) != \
                ("m.room.member", "invite", True, "high", bob.user_id):
            raise TestFailure(f"invite notification wrong: {n}")
    finally:
        gw.close()


def test_retry_after_a_500_and_rejected_pushkeys_remove_the_pusher(ctx):
    gw = Gateway()
    try:
        srv = ctx.server()
        alice, bob = ctx.register(srv, "alice"), ctx.register(srv, "bob")
        room = room_with(ctx, alice, bob)
        set_pusher(ctx, alice, gw.url)
        gw.script = [(500, {"error": "down"})]
        event_id = send(ctx, bob, room, "retry me")
        reqs = gw.wait_for_event(event_id, count=2, timeout=10)
        gap = reqs[1][0] - reqs[0][0]
        if not 0.5 <= gap <= 5:
            raise TestFailure(f"retry came {gap:.2f}s after the 500 (want the 1 s backoff)")
        if reqs[0][2] != reqs[1][2]:
            raise TestFailure("the retry's body differs from the first attempt's")
        # The gateway rejects the pushkey: the pusher goes.
        gw.default = (200, {"rejected": ["key-1"]})
        event_id = send(ctx, bob, room, "rejected")
        gw.wait_for_event(event_id)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pushers = ctx.expect(alice.request("GET", "/pushers"))["pushers"]
            if not pushers:
                break
            time.sleep(0.05)
        if pushers:
            raise TestFailure(f"pusher still there after its pushkey was rejected: {pushers}")
        gw.default = (200, {})
        event_id = send(ctx, bob, room, "after removal")
        time.sleep(0.5)
        if gw.for_event(event_id):
            raise TestFailure("a removed pusher was still pushed")
    finally:
        gw.close()


def test_the_queue_survives_a_kill_9(ctx):
    gw = Gateway()
    try:
        srv = ctx.server()
        alice, bob = ctx.register(srv, "alice"), ctx.register(srv, "bob")
        room = room_with(ctx, alice, bob)
        set_pusher(ctx, alice, gw.url)
        gw.default = (503, {})
        event_id = send(ctx, bob, room, "survive")
        gw.wait_for_event(event_id)
        srv.kill()
        gw.default = (200, {})
        srv.start()
        gw.wait_for_event(event_id, count=2, timeout=10)
        time.sleep(0.3)
        delivered = [r for r in gw.for_event(event_id)]
        if len(delivered) != 2:
            raise TestFailure(f"want exactly one retry after the restart, got {len(delivered)} requests")
    finally:
        gw.close()


def test_get_notifications(ctx):
    srv = ctx.server()
    alice, bob = ctx.register(srv, "alice"), ctx.register(srv, "bob")
    room = room_with(ctx, alice, bob)
    first = send(ctx, bob, room, "one")
    mention = ctx.expect(bob.request("PUT", f"/rooms/{room}/send/m.room.message/mention", body={
        "msgtype": "m.text", "body": "hey look", "m.mentions": {"user_ids": [alice.user_id]}}))["event_id"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        notes = ctx.expect(alice.request("GET", "/notifications"))["notifications"]
        if len(notes) >= 2:
            break
        time.sleep(0.05)
    ctx.expect(alice.request("GET", "/notifications"), body={"notifications": {"$starts_with": [
        {"event": {"event_id": mention}, "room_id": room, "read": False, "ts": "$int", "actions": "$array",
         "profile_tag": "$any"},
        {"event": {"event_id": first, "content": {"body": "one"}}, "read": False}]}})
    page = ctx.expect(alice.request("GET", "/notifications", query={"limit": 1}),
                      body={"notifications": [{"event": {"event_id": mention}}], "next_token": "$string"})
    ctx.expect(alice.request("GET", "/notifications", query={"limit": 1, "from": page["next_token"]}),
               body={"notifications": [{"event": {"event_id": first}}]})
    ctx.expect(alice.request("GET", "/notifications", query={"only": "highlight"}),
               body={"notifications": [{"event": {"event_id": mention}}]})
    ctx.expect(alice.request("POST", f"/rooms/{room}/receipt/m.read/{mention}", body={}))
    ctx.expect(alice.request("GET", "/notifications"),
               body={"notifications": {"$starts_with": [{"read": True}, {"read": True}]}})
    ctx.expect(bob.request("GET", "/notifications"), body={"notifications": []})
    ctx.expect(alice.request("GET", "/notifications", query={"from": "nope"}), 400)


def test_a_hung_gateway_holds_up_only_its_own_pushers(ctx):
    """A gateway that accepts a request and never answers (SyTest's does this for pushes nobody
    waits for) must not delay other pushers' notifications until its request times out."""
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    held = []
    stop = threading.Event()

    def accept_and_hold():
        hung.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(hung.accept()[0])
            except OSError:
                pass

    holder = threading.Thread(target=accept_and_hold, daemon=True)
    holder.start()
    gw = Gateway()
    try:
        srv = ctx.server()
        alice, bob = ctx.register(srv, "alice"), ctx.register(srv, "bob")
        room = room_with(ctx, alice, bob)
        set_pusher(ctx, alice, f"http://127.0.0.1:{hung.getsockname()[1]}{PATH}", pushkey="alice-key")
        set_pusher(ctx, bob, gw.url, pushkey="bob-key")
        first = send(ctx, alice, room, "to bob")  # notifies bob only
        send(ctx, bob, room, "to alice: her gateway hangs")
        time.sleep(0.3)
        start = time.monotonic()
        second = send(ctx, alice, room, "to bob again")
        gw.wait_for_event(first, timeout=5)
        gw.wait_for_event(second, timeout=3)
        took = time.monotonic() - start
        if took > 3:
            raise TestFailure(f"bob's push waited {took:.1f}s behind alice's hung gateway")
    finally:
        stop.set()
        holder.join()
        for s in held:
            s.close()
        hung.close()
        gw.close()


def test_a_read_receipt_pushes_the_new_badge(ctx):
    """After a read receipt the user's pushers get a badge-only notification (counts, no event),
    so a phone clears its badge (Synapse does this; SyTest's "Test that a message is pushed")."""
    gw = Gateway()
    try:
        srv = ctx.server()
        alice, bob = ctx.register(srv, "alice"), ctx.register(srv, "bob")
        room = room_with(ctx, alice, bob)
        set_pusher(ctx, alice, gw.url)
        event_id = send(ctx, bob, room, "read me")
        (_, _, body), = gw.wait_for_event(event_id)
        if body["notification"]["counts"]["unread"] < 1:
            raise TestFailure(f"unread before the receipt: {body}")
        ctx.expect(alice.request("POST", f"/rooms/{room}/receipt/m.read/{event_id}", body={}))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with gw.lock:
                badges = [r[2]["notification"] for r in gw.requests if "event_id" not in r[2].get("notification", {})]
            if badges:
                break
            time.sleep(0.02)
        else:
            raise TestFailure("no badge-only push after the read receipt")
        n = badges[0]
        if n.get("counts") != {"unread": 0} or n.get("devices", [{}])[0].get("pushkey") != "key-1":
            raise TestFailure(f"badge push wrong: {n}")
    finally:
        gw.close()


def test_the_badge_counts_unread_notifications_over_rooms(ctx):
    """counts.unread of each push: every unread notification of the user over the rooms they are in,
    this one included; a receipt lowers it, a room left drops its share."""
    gw = Gateway()
    try:
        srv = ctx.server()
        alice, bob = ctx.register(srv, "alice"), ctx.register(srv, "bob")
        room1, room2 = room_with(ctx, alice, bob), room_with(ctx, alice, bob)
        for room in (room1, room2):  # the invites read: the badge starts at 0
            joined = ctx.expect(alice.request("GET", f"/rooms/{room}/state/m.room.member/{alice.user_id}",
                                              query={"format": "event"}))["event_id"]
            ctx.expect(alice.request("POST", f"/rooms/{room}/receipt/m.read/{joined}", body={}))
        set_pusher(ctx, alice, gw.url)

        def badge_of(event_id):
            (_, _, body), = gw.wait_for_event(event_id)
            return body["notification"]["counts"]["unread"]

        seen = []
        for room, text in ((room1, "a"), (room1, "b"), (room2, "c")):
            seen.append(badge_of(send(ctx, bob, room, text)))
        if seen != [1, 2, 3]:
            raise TestFailure(f"badges of three unread messages in two rooms: {seen}, want [1, 2, 3]")
        last1 = send(ctx, bob, room1, "d")
        if badge_of(last1) != 4:
            raise TestFailure("the fourth unread message is not badge 4")
        ctx.expect(alice.request("POST", f"/rooms/{room1}/receipt/m.read/{last1}", body={}))
        got = badge_of(send(ctx, bob, room2, "e"))
        if got != 2:
            raise TestFailure(f"after reading room 1, two unread in room 2: badge {got}, want 2")
        ctx.expect(alice.request("POST", f"/rooms/{room2}/leave", body={}))
        got = badge_of(send(ctx, bob, room1, "f"))
        if got != 1:
            raise TestFailure(f"after leaving room 2, one unread in room 1: badge {got}, want 1")
    finally:
        gw.close()
