"""The event writers topology itself (run.py --topology writers; skipped otherwise): main and
writer1 both write events (stream_writers: {events: [main, writer1]}), reader1 reads; nginx with
deploy/nginx/trestle-workers.conf sends the room writes that create events to main and writer1 in
turn, the reads to reader1 and every other write to main. Events written by both writers at once
form one stream that the reader's /sync and long-polls follow."""

import importlib.util
import json
import os
import threading
import time

import harness
from harness import TestFailure, TestSkipped


# workers_topology.py's served_by (nginx's access log) and long_poll.
_spec = importlib.util.spec_from_file_location(
    "writers_topology_workers", os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers_topology.py"))
_workers_topology = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_workers_topology)
served_by, long_poll = _workers_topology.served_by, _workers_topology.long_poll


def writers_server(ctx):
    if not ctx.writers:
        raise TestSkipped("needs --topology writers (main and writer1 writing events, reader1, behind nginx)")
    return ctx.server()


def expect_served(srv, method, path_start, allowed):
    got = served_by(srv, method, path_start)
    if not got:
        raise TestFailure(f"no {method} {path_start}... in nginx's access log:\n{srv.routes()}")
    if not set(got) <= set(allowed):
        raise TestFailure(f"{method} {path_start}... was served by {sorted(set(got))}, expected only {sorted(allowed)}")
    return got


def timeline(body, room):
    return body["rooms"]["join"].get(room, {}).get("timeline", {}).get("events", [])


def test_room_writes_go_to_both_writers_reads_to_the_reader_the_rest_to_main(ctx):
    srv = writers_server(ctx)
    writers = harness.EVENT_WRITERS
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    # Creates in a row: nginx's round-robin gives them to main and writer1 in turn.
    rooms = [ctx.expect(alice.request("POST", "/createRoom", body={"name": f"r{i}"}))["room_id"] for i in range(4)]
    sent = {}
    for room in rooms:
        sent[room] = [ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/t{i}",
                                               body={"msgtype": "m.text", "body": f"m{i}"}))["event_id"]
                      for i in range(2)]
        ctx.expect(alice.request("PUT", f"/rooms/{room}/state/m.room.topic", body={"topic": "t"}))
        ctx.expect(alice.request("POST", f"/rooms/{room}/invite", body={"user_id": bob.user_id}))
    ctx.expect(bob.request("POST", f"/join/{rooms[0]}", body={}))
    ctx.expect(bob.request("POST", f"/rooms/{rooms[1]}/join", body={}))
    ctx.expect(bob.request("POST", f"/rooms/{rooms[1]}/leave", body={}))
    ctx.expect(alice.request("PUT", f"/rooms/{rooms[2]}/redact/{sent[rooms[2]][0]}/x1", body={}))
    # Writes of other streams: main's.
    ctx.expect(alice.request("PUT", f"/rooms/{rooms[0]}/typing/{alice.user_id}", body={"typing": True, "timeout": 5000}))
    ctx.expect(alice.request("POST", f"/rooms/{rooms[0]}/receipt/m.read/{sent[rooms[0]][1]}", body={}))
    ctx.expect(alice.request("PUT", f"/user/{alice.user_id}/account_data/m.example", body={"a": 1}))
    ctx.expect(alice.request("PUT", f"/profile/{alice.user_id}/displayname", body={"displayname": "Alice"}))
    # Reads: reader1's, and they see what both writers wrote.
    body = ctx.expect(bob.request("GET", "/sync", query={"timeout": 0}))
    if rooms[0] not in body["rooms"]["join"] or rooms[2] not in body["rooms"].get("invite", {}):
        raise TestFailure(f"bob's /sync on the reader lacks a room joined or invited to: {body['rooms']}")
    for room in rooms:
        chunk = ctx.expect(alice.request("GET", f"/rooms/{room}/messages", query={"dir": "b", "limit": 30}))["chunk"]
        missing = [e for e in sent[room] if e not in [ev["event_id"] for ev in chunk]]
        if missing:
            raise TestFailure(f"the reader's /messages of {room} lacks {missing}")

    creates = expect_served(srv, "POST", "/_matrix/client/v3/createRoom", writers)
    if set(creates) != set(writers):
        raise TestFailure(f"4 createRoom in a row went to {creates}: nginx should take the event writers in turn")
    for method, path in (("PUT", "/_matrix/client/v3/rooms/"), ("POST", "/_matrix/client/v3/join/")):
        expect_served(srv, method, path, writers)
    for verb in ("invite", "join", "leave"):
        got = [who for m, p, _, who in srv.routes() if m == "POST" and p.endswith(f"/{verb}")]
        if not got or not set(got) <= set(writers):
            raise TestFailure(f"POST .../{verb} was served by {got}, expected the event writers {writers}")
    typing = [who for m, p, _, who in srv.routes() if "/typing/" in p]
    if typing != ["main"]:
        raise TestFailure(f"PUT .../typing was served by {typing}, expected main")
    for method, path in (("POST", f"/_matrix/client/v3/rooms/{rooms[0]}/receipt/"),
                         ("PUT", "/_matrix/client/v3/user/"), ("PUT", "/_matrix/client/v3/profile/"),
                         ("POST", "/_matrix/client/v3/register")):
        expect_served(srv, method, path, ["main"])
    for method, path in (("GET", "/_matrix/client/v3/sync"), ("GET", "/_matrix/client/v3/rooms/")):
        expect_served(srv, method, path, harness.READERS)


def test_a_long_poll_on_the_reader_wakes_for_either_writer(ctx):
    srv = writers_server(ctx)
    alice = ctx.register(srv, "alice")
    room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
    since = ctx.expect(alice.request("GET", "/sync", query={"timeout": 0}))["next_batch"]
    writers_seen = set()
    for i in range(4):  # sends in turn to main and writer1
        out = {}
        waiter = threading.Thread(target=long_poll, args=(alice, since, room, f"wake {i}", out))
        waiter.start()
        time.sleep(0.3)  # the long-poll is waiting on reader1
        sent_at = time.monotonic()
        event = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/w{i}",
                                         body={"msgtype": "m.text", "body": f"wake {i}"}))["event_id"]
        writer = served_by(srv, "PUT", f"/_matrix/client/v3/rooms/{room}/send/")[-1]
        writers_seen.add(writer)
        waiter.join(45)
        body = ctx.expect(out["res"])
        if event not in [e["event_id"] for e in timeline(body, room)]:
            raise TestFailure(f"round {i}: the long-poll answered without the message {writer} wrote: {body}")
        if out["at"] - sent_at > 2:
            raise TestFailure(f"round {i}: the reader's long-poll answered {out['at'] - sent_at:.1f}s after the send "
                              f"to {writer}")
        since = body["next_batch"]
    if writers_seen != set(harness.EVENT_WRITERS):
        raise TestFailure(f"the sends were answered by {sorted(writers_seen)} only, expected every event writer")


def test_sends_on_both_writers_at_once_form_one_stream(ctx):
    """Clients send to several rooms at once through nginx (main and writer1 write concurrently);
    the reader's incremental /sync chain sees every acknowledged event exactly once, in the stream's
    order, and each room's /messages holds them all."""
    srv = writers_server(ctx)
    alice = ctx.register(srv, "alice")
    rooms = [ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"] for _ in range(4)]
    since = ctx.expect(alice.request("GET", "/sync", query={"timeout": 0}))["next_batch"]
    acked, errors = {}, []

    def sender(t):
        user = ctx.register(srv, f"s{t}")
        for room in rooms:
            ctx.expect(alice.request("POST", f"/rooms/{room}/invite", body={"user_id": user.user_id}))
            ctx.expect(user.request("POST", f"/rooms/{room}/join", body={}))
        for i in range(12):
            room = rooms[(t + i) % len(rooms)]
            res = user.request("PUT", f"/rooms/{room}/send/m.room.message/c{t}-{i}",
                               body={"msgtype": "m.text", "body": f"c{t}-{i}"})
            if res.status != 200:
                errors.append(f"{user.user_id} send {i}: {res.describe()}")
                return
            acked[res.json["event_id"]] = room

    threads = [threading.Thread(target=sender, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise TestFailure("sends failed:\n" + "\n".join(errors))
    seen, order, deadline = [], {room: [] for room in rooms}, time.monotonic() + 30
    big = json.dumps({"room": {"timeline": {"limit": 200}}})
    while not set(acked) <= set(seen) and time.monotonic() < deadline:
        body = ctx.expect(alice.request("GET", "/sync", query={"since": since, "timeout": 2000, "filter": big},
                                        timeout=30))
        for room in rooms:
            got = [e["event_id"] for e in timeline(body, room) if e["type"] == "m.room.message"]
            seen += got
            order[room] += got
            if body["rooms"]["join"].get(room, {}).get("timeline", {}).get("limited"):
                raise TestFailure(f"an incremental sync of {room} was limited: {body['rooms']['join'][room]}")
        since = body["next_batch"]
    missing = set(acked) - set(seen)
    dupes = {e for e in seen if seen.count(e) > 1}
    if missing or dupes:
        raise TestFailure(f"the reader's /sync chain: {len(missing)} acknowledged events missing {sorted(missing)[:5]}, "
                          f"duplicates {sorted(dupes)[:5]}")
    for room in rooms:
        chunk = ctx.expect(alice.request("GET", f"/rooms/{room}/messages", query={"dir": "b", "limit": 100}))["chunk"]
        ids = [e["event_id"] for e in reversed(chunk) if e["type"] == "m.room.message"]
        lost = [e for e, r in acked.items() if r == room and e not in ids]
        if lost:
            raise TestFailure(f"/messages of {room} lacks acknowledged events {lost}")
        if ids != order[room]:
            raise TestFailure(f"{room}: /sync gave the messages in the order {order[room]}, /messages in {ids}")
    writers = set(w for w in served_by(srv, "PUT", "/_matrix/client/v3/rooms/"))
    if writers != set(harness.EVENT_WRITERS):
        raise TestFailure(f"the sends were served by {sorted(writers)}, expected every event writer")
