"""Threaded read receipts and the push gateway's badge (task threadrx): the badge stays the total
of unread notifications over all threads, and a threaded receipt clears only its thread's share
of it. GET /notifications marks each notification read by the receipt of its own thread."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestFailure  # noqa: E402
from push_gateway import Gateway, room_with, send, set_pusher  # noqa: E402


def send_reply(ctx, user, room, root, text):
    txn = f"t{time.monotonic_ns()}"
    return ctx.expect(user.request("PUT", f"/rooms/{room}/send/m.room.message/{txn}", body={
        "msgtype": "m.text", "body": text,
        "m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
                         "m.in_reply_to": {"event_id": root}}}))["event_id"]


def badges(gw):
    with gw.lock:
        return [r[2]["notification"] for r in gw.requests if "event_id" not in r[2].get("notification", {})]


def wait_badge(gw, count):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        got = badges(gw)
        if len(got) >= count:
            return got[count - 1]
        time.sleep(0.02)
    raise TestFailure(f"no badge-only push number {count}; got {badges(gw)}")


def test_a_threaded_receipt_lowers_the_badge_by_its_thread(ctx):
    gw = Gateway()
    try:
        srv = ctx.server()
        alice, bob = ctx.register(srv, "alice"), ctx.register(srv, "bob")
        room = room_with(ctx, alice, bob)
        set_pusher(ctx, alice, gw.url)
        root = send(ctx, bob, room, "thread root")
        send_reply(ctx, bob, room, root, "first reply")
        last = send_reply(ctx, bob, room, root, "second reply")
        (_, _, body), = gw.wait_for_event(last)
        before = body["notification"]["counts"]["unread"]  # the invite, the root and two replies
        if before != 4:
            raise TestFailure(f"badge before any receipt: {body['notification']}")

        # Reading the thread leaves the invite and the root (main timeline) unread: 2, not 0.
        ctx.expect(alice.request("POST", f"/rooms/{room}/receipt/m.read/{last}", body={"thread_id": root}))
        n = wait_badge(gw, 1)
        if n.get("counts") != {"unread": 2}:
            raise TestFailure(f"badge after the threaded receipt: {n}")
        ctx.expect(alice.request("GET", "/notifications"), body={"notifications": {"$starts_with": [
            {"event": {"event_id": last}, "read": True}, {"read": True},
            {"event": {"event_id": root}, "read": False}]}})

        # Then the main timeline: nothing is left.
        ctx.expect(alice.request("POST", f"/rooms/{room}/receipt/m.read/{root}", body={"thread_id": "main"}))
        n = wait_badge(gw, 2)
        if n.get("counts") != {"unread": 0}:
            raise TestFailure(f"badge after the main receipt: {n}")
        ctx.expect(alice.request("GET", "/notifications"), body={"notifications": {"$each": {"read": True}}})
    finally:
        gw.close()
