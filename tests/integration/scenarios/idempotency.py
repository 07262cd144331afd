"""PUT /send with the same transaction ID: one event, however the retries arrive."""

import threading

from harness import TestFailure


def room_messages(ctx, user, room):
    body = ctx.expect(user.request("GET", f"/rooms/{room}/messages", query={"dir": "b", "limit": 100}))
    return [e for e in body["chunk"] if e["type"] == "m.room.message"]


def test_same_txn_id_twice_is_one_event(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
    path = f"/rooms/{room}/send/m.room.message/txn-1"
    first = ctx.expect(alice.request("PUT", path, body={"msgtype": "m.text", "body": "hi"}))["event_id"]
    second = ctx.expect(alice.request("PUT", path, body={"msgtype": "m.text", "body": "hi"}))["event_id"]
    if first != second:
        raise TestFailure(f"the retry got a new event ID: {first} then {second}")
    messages = room_messages(ctx, alice, room)
    if [m["event_id"] for m in messages] != [first]:
        raise TestFailure(f"expected exactly one message, found {len(messages)}")


def test_concurrent_retries_are_one_event(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
    path = f"/rooms/{room}/send/m.room.message/racing"
    answers = []
    lock = threading.Lock()
    start = threading.Barrier(12)

    def send():
        start.wait()
        res = alice.request("PUT", path, body={"msgtype": "m.text", "body": "race"})
        with lock:
            answers.append(res)

    threads = [threading.Thread(target=send) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = set()
    for res in answers:
        ids.add(ctx.expect(res)["event_id"])
    if len(answers) != 12 or len(ids) != 1:
        raise TestFailure(f"{len(answers)} answers naming {len(ids)} different events: {sorted(ids)}")
    if len(room_messages(ctx, alice, room)) != 1:
        raise TestFailure("the racing retries made more than one message")
