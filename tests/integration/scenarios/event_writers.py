"""Several event writers on one PostgreSQL database (`stream_writers: {events: [main, writer1]}`):
every event of a room is built, authorised and persisted by the room's writer (Synapse's choice:
SHA-256 of the room ID, little-endian, modulo the writers), and by no other process. A process
that creates an event for another writer's room forwards it to that writer's `replication`
listener (instance_map) and answers once its own reads see it. Rooms created on a writer are its
own; a process that is not an event writer creates none. Needs the PostgreSQL run."""

import hashlib
import threading
import time

from harness import TestFailure, TestSkipped, Client, Server, free_port, to_yaml
from workers import Worker, as_user, sync, timeline_ids

WRITERS = ["main", "writer1"]
SECRET = "s3cret-between-processes"


def writer_of(room_id):
    digest = hashlib.sha256(room_id.encode()).digest()
    return WRITERS[int.from_bytes(digest, "little") % len(WRITERS)]


class Writer(Worker):
    """An event writer beside main, on a fixed port (instance_map names it; restarts keep it),
    its listener serving `replication` as well as `client`."""

    def __init__(self, main, name, port, resources=("client", "replication")):
        super().__init__(main, name)
        self.fixed_port = port
        self.resources = list(resources)

    def write_config(self, port):
        with open(self.config_path, "w") as f:
            f.write(to_yaml({"worker_app": "synapse.app.generic_worker", "worker_name": self.name,
                             "worker_listeners": [{"port": self.fixed_port, "bind_addresses": ["127.0.0.1"],
                                                   "type": "http", "resources": [{"names": self.resources}]}]}))

    def start(self):
        self.port = self.fixed_port
        self.write_config(self.port)
        self.spawn()
        if not Server._wait_listening(self.proc, self.port, time.monotonic() + 30):
            raise TestFailure(f"{self.name} did not start:\n{self.output()[-3000:]}")
        return self


def deployment(ctx, reader=False):
    """main + writer1 (both event writers; both listeners serve `replication`), and optionally
    reader1, a worker that is not an event writer."""
    if not ctx.postgres:
        raise TestSkipped("several processes share a PostgreSQL database (--database postgres)")
    main = ctx.server(start=False)
    ports = {"writer1": free_port(), "reader1": free_port()}
    main.config_overrides = {"instance_map": {"main": {"host": "127.0.0.1", "port": 1}},  # (the real one below)
                             "stream_writers": {"events": WRITERS},
                             "worker_replication_secret": SECRET}
    base_config = main.config

    def config(port):
        c = base_config(port)
        c["listeners"][0]["resources"] = [{"names": ["client", "replication"]}]
        c["instance_map"] = {"main": {"host": "127.0.0.1", "port": port},
                             **{name: {"host": "127.0.0.1", "port": p} for name, p in ports.items()}}
        return c

    main.config = config
    main.start()
    writer1 = Writer(main, "writer1", ports["writer1"])
    started = []
    try:
        started.append(writer1.start())
        if reader:
            started.append(Writer(main, "reader1", ports["reader1"], resources=("client",)).start())
    except Exception:
        for w in started:
            w.proc.kill()
        raise
    return main, started


def create_room(ctx, who, body=None):
    return ctx.expect(who.request("POST", "/createRoom", body=body or {}))["room_id"]


def send(ctx, who, room, txn, text, status=200, errcode=None):
    res = who.request("PUT", f"/rooms/{room}/send/m.room.message/{txn}", body={"msgtype": "m.text", "body": text})
    ctx.expect(res, status, errcode)
    return res.json


def stop_all(workers):
    for w in workers:
        w.stop()


def test_rooms_are_written_by_their_event_writer(ctx):
    main, (writer1,) = deployment(ctx)
    try:
        alice = ctx.register(main, "alice")
        on_writer1 = as_user(writer1.client(), alice)
        # Rooms created on a process are its own (v10 and v12, whose ID is the create event's).
        mains = [create_room(ctx, alice, {"room_version": v}) for v in ("10", "10", "12")]
        writers = [create_room(ctx, on_writer1, {"room_version": v}) for v in ("10", "10", "12")]
        for room in mains:
            if writer_of(room) != "main":
                raise TestFailure(f"room {room} created on main is written by {writer_of(room)}")
        for room in writers:
            if writer_of(room) != "writer1":
                raise TestFailure(f"room {room} created on writer1 is written by {writer_of(room)}")
        mine, theirs = mains[0], writers[0]

        # Sends into the other writer's rooms, both ways, are there at once on the sending process.
        for who, room, where in ((alice, theirs, "main"), (on_writer1, mine, "writer1")):
            event_id = send(ctx, who, room, f"cross-{where}", f"sent on {where}")["event_id"]
            ctx.expect(who.request("GET", f"/rooms/{room}/event/{event_id}"))
            page = ctx.expect(who.request("GET", f"/rooms/{room}/messages", query={"dir": "b", "limit": "1"}))
            if [e["event_id"] for e in page["chunk"]] != [event_id]:
                raise TestFailure(f"/messages on {where} right after a forwarded send: {page['chunk']}")
        # State through a forward (the writer authorises it: a 403 comes back as it was).
        ctx.expect(alice.request("PUT", f"/rooms/{theirs}/state/m.room.topic", body={"topic": "by forward"}))
        ctx.expect(alice.request("GET", f"/rooms/{theirs}/state/m.room.topic"), body={"topic": "by forward"})
        bob = ctx.register(main, "bob")
        ctx.expect(bob.request("PUT", f"/rooms/{theirs}/send/m.room.message/nope", body={"msgtype": "m.text", "body": "x"}),
                   403, "M_FORBIDDEN")

        # The same transaction twice through a forward, then on the writer itself: one event.
        first = send(ctx, alice, theirs, "idem", "once")["event_id"]
        again = send(ctx, alice, theirs, "idem", "once")["event_id"]
        direct = send(ctx, on_writer1, theirs, "idem", "once")["event_id"]
        if not first == again == direct:
            raise TestFailure(f"one transaction gave several events: {first}, {again}, {direct}")
        page = ctx.expect(alice.request("GET", f"/rooms/{theirs}/messages", query={"dir": "b", "limit": "10"}))
        if sum(1 for e in page["chunk"] if e.get("content", {}).get("body") == "once") != 1:
            raise TestFailure("a transaction retried through a forward was stored twice")

        # writer1 is down: sends into its rooms fail 503 naming it, main's rooms still work.
        writer1.proc.kill()
        writer1.proc.wait()
        writer1.proc = None
        res = alice.request("PUT", f"/rooms/{theirs}/send/m.room.message/down", body={"msgtype": "m.text", "body": "down"})
        ctx.expect(res, 503, "M_UNKNOWN")
        if "'writer1'" not in res.json.get("error", ""):
            raise TestFailure(f"the 503 does not name the writer: {res.json}")
        send(ctx, alice, mine, "while-down", "main's room works")
        create_room(ctx, alice)
        # Restarted, it writes its rooms again; the failed transaction goes through once.
        writer1.start()
        retried = send(ctx, alice, theirs, "down", "down")["event_id"]
        ctx.expect(alice.request("GET", f"/rooms/{theirs}/event/{retried}"))
    finally:
        stop_all([writer1])


def test_sync_on_main_sees_both_writers_rooms_in_order(ctx):
    main, (writer1,) = deployment(ctx)
    try:
        alice = ctx.register(main, "alice")
        on_writer1 = as_user(writer1.client(), alice)
        rooms = {"main": create_room(ctx, alice), "writer1": create_room(ctx, on_writer1)}
        since = sync(ctx, alice)["next_batch"]
        sent = {room: [] for room in rooms.values()}
        errors = []

        # Four senders at once: each process into each writer's rooms (two of them forwarding).
        def sender(who, where, room, n=15):
            try:
                for i in range(n):
                    res = who.request("PUT", f"/rooms/{room}/send/m.room.message/{where}-{i}",
                                      body={"msgtype": "m.text", "body": f"{where} {i}"})
                    if res.status != 200:
                        errors.append(f"{where} -> {room}: {res.status} {res.json}")
                        return
                    sent[room].append(res.json["event_id"])
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(f"{where}: {e}")

        threads = [threading.Thread(target=sender, args=(who, f"{where}-to-{owner}", room))
                   for who, where in ((alice, "main"), (on_writer1, "writer1")) for owner, room in rooms.items()]
        seen = {room: [] for room in rooms.values()}
        for t in threads:
            t.start()
        # main's incremental syncs meanwhile: every event once, in each room in sending order
        # (a timeline long enough never to be limited: a limited one leaves events out by design).
        deadline = time.monotonic() + 60
        whole = {"room": {"timeline": {"limit": 1000}}}
        while time.monotonic() < deadline:
            body = ctx.expect(alice.request("GET", "/sync", query={"since": since, "timeout": "500", "filter": whole}))
            since = body["next_batch"]
            for room in rooms.values():
                if body.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {}).get("limited"):
                    raise TestFailure(f"a limited timeline despite the filter: {body}")
                seen[room] += timeline_ids(body, room)
            if not any(t.is_alive() for t in threads) and all(len(seen[r]) >= len(sent[r]) for r in rooms.values()):
                break
        for t in threads:
            t.join(30)
        if errors:
            raise TestFailure("sends failed: " + "; ".join(errors[:5]))
        for owner, room in rooms.items():
            if sorted(seen[room]) != sorted(sent[room]):
                raise TestFailure(f"main's /sync of {owner}'s room: {len(seen[room])} events seen, {len(sent[room])} sent "
                                  f"(missing {set(sent[room]) - set(seen[room])}, repeated or extra "
                                  f"{[e for e in seen[room] if seen[room].count(e) > 1 or e not in sent[room]]})")
            # The order /sync gave is the room's order (/messages, the DAG's depth order).
            page = ctx.expect(alice.request("GET", f"/rooms/{room}/messages", query={"dir": "f", "limit": "100"}))
            ordered = [e["event_id"] for e in page["chunk"] if e["event_id"] in set(sent[room])]
            if ordered != seen[room]:
                raise TestFailure(f"{owner}'s room: /sync's order differs from /messages'")
    finally:
        stop_all([writer1])


def test_replication_endpoint_and_non_writers(ctx):
    main, (writer1, reader1) = deployment(ctx, reader=True)
    try:
        alice = ctx.register(main, "alice")
        theirs = create_room(ctx, as_user(writer1.client(), alice))
        mine = create_room(ctx, alice)
        path = "/_trestle/replication/v1/send_event"
        event = {"room_id": theirs, "sender": alice.user_id, "type": "m.room.message", "state_key": None,
                 "content": {"msgtype": "m.text", "body": "by hand"}, "redacts": None, "origin_server_ts": None,
                 "txn_id": None, "txn_device_id": None}
        w1 = Client(f"http://127.0.0.1:{writer1.port}")
        # Without the secret, or with a wrong one: 403, nothing stored.
        ctx.expect(w1.request("POST", path, body={"event": event}), 403, "M_FORBIDDEN")
        ctx.expect(w1.request("POST", path, body={"event": event}, headers={"Authorization": "Bearer wrong"}),
                   403, "M_FORBIDDEN")
        page = ctx.expect(alice.request("GET", f"/rooms/{theirs}/messages", query={"dir": "b", "limit": "5"}))
        if any(e.get("content", {}).get("body") == "by hand" for e in page["chunk"]):
            raise TestFailure("an unauthorised replication request was stored")
        # With it: written, and the answer carries the stored event.
        good = {"Authorization": f"Bearer {SECRET}"}
        answer = ctx.expect(w1.request("POST", path, body={"event": event}, headers=good))
        if not (answer.get("created") is True and answer["event"]["event_id"].startswith("$")
                and answer["event"]["stream_ordering"] > 0 and answer["event"]["pdu"]["content"]["body"] == "by hand"):
            raise TestFailure(f"the replication answer: {answer}")
        # A room the process does not write: 400, never forwarded on.
        ctx.expect(w1.request("POST", path, body={"event": dict(event, room_id=mine)}, headers=good), 400, "M_UNKNOWN")
        # Not served on a listener without the `replication` resource.
        ctx.expect(Client(f"http://127.0.0.1:{reader1.port}").request("POST", path, body={"event": event},
                                                                         headers=good), 404, "M_UNRECOGNIZED")

        # reader1 (not an event writer) creates no room, and forwards sends to each room's writer.
        on_reader = as_user(reader1.client(), alice)
        res = on_reader.request("POST", "/createRoom", body={})
        ctx.expect(res, 500, "M_UNKNOWN")
        if "event writer" not in res.json.get("error", ""):
            raise TestFailure(f"createRoom on a non-writer: {res.json}")
        for room in (mine, theirs):
            event_id = send(ctx, on_reader, room, "from-reader", "from reader1")["event_id"]
            ctx.expect(alice.request("GET", f"/rooms/{room}/event/{event_id}"))

        # Upgrading writer1's room on main: the tombstone goes to writer1, the new room is main's.
        upgraded = ctx.expect(alice.request("POST", f"/rooms/{theirs}/upgrade", body={"new_version": "10"}))["replacement_room"]
        if writer_of(upgraded) != "main":
            raise TestFailure(f"the room upgraded on main, {upgraded}, is written by {writer_of(upgraded)}")
        ctx.expect(alice.request("GET", f"/rooms/{theirs}/state/m.room.tombstone"), body={"replacement_room": upgraded})
        ctx.expect(as_user(writer1.client(), alice).request("GET", f"/rooms/{theirs}/state/m.room.tombstone"),
                   body={"replacement_room": upgraded})

        # A displayname change on main reaches the rooms of both writers.
        ctx.expect(alice.request("PUT", f"/profile/{alice.user_id}/displayname", body={"displayname": "Alice Everywhere"}))
        for room in (mine, theirs):
            member = ctx.expect(alice.request("GET", f"/rooms/{room}/state/m.room.member/{alice.user_id}"))
            if member.get("displayname") != "Alice Everywhere":
                raise TestFailure(f"{writer_of(room)}'s room kept the old displayname: {member}")
    finally:
        stop_all([writer1, reader1])
