"""Who an event notifies (GET /notifications), now that an event stores one row for the room
and rows only for the members whose push rules decide otherwise (storage/push_store, migration
26): the room's row reaches the members joined when the event was sent, never its sender, never a
member who joined later or had left, never a user an appservice owns exclusively (as Synapse);
a mention, a member's own room rule and an invite each give that member their own answer."""

import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestFailure  # noqa: E402
from appservice_support import AsClient, AsEnv, registration  # noqa: E402


def q(s):
    return urllib.parse.quote(s, safe="")


def send(ctx, user, room, body, txn, mentions=None):
    content = {"msgtype": "m.text", "body": body}
    if mentions is not None:
        content["m.mentions"] = {"user_ids": mentions}
    return ctx.expect(user.request("PUT", f"/rooms/{q(room)}/send/m.room.message/{txn}", body=content))["event_id"]


def notified(ctx, request):
    """[(event_id, highlight)] newest first."""
    body = ctx.expect(request("GET", "/notifications"))
    return [(n["event"]["event_id"], any(a == {"set_tweak": "highlight"} or
                                         (isinstance(a, dict) and a.get("set_tweak") == "highlight" and
                                          a.get("value", True)) for a in n["actions"]))
            for n in body["notifications"]]


def wait_until(ctx, request, event_id, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        got = notified(ctx, request)
        if any(e == event_id for e, _ in got):
            return got
        if time.monotonic() > deadline:
            raise TestFailure(f"{event_id} never reached GET /notifications: {got}")
        time.sleep(0.05)


def bridged_room(ctx, env, bridged_localpart):
    """bob's public room, joined by alice, dave and an exclusive appservice user; carol registered
    but outside. (srv, appservice client, bob, alice, dave, carol, room_id, bridged user_id)"""
    reg = registration("bridge", None, "_bridge_bot", users=((True, "@_br_.*"),))
    srv = env.server([reg])
    asc = AsClient(srv, reg)
    bob, alice, dave, carol = (ctx.register(srv, n) for n in ("bob", "alice", "dave", "carol"))
    room = ctx.expect(bob.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
    for u in (alice, dave):
        ctx.expect(u.request("POST", f"/join/{q(room)}", body={}))
    bridged = asc.register(bridged_localpart)
    ctx.expect(asc.request("POST", f"/join/{q(room)}", user_id=bridged, body={}))
    return srv, asc, bob, alice, dave, carol, room, bridged


def test_the_room_row_reaches_the_members_joined_at_the_event(ctx):
    with AsEnv(ctx) as env:
        srv, asc, bob, alice, dave, carol, room, bridged = bridged_room(ctx, env, "_br_x")
        # dave silences the room with a room rule: his own answer, "not notified".
        ctx.expect(dave.request("PUT", f"/pushrules/global/room/{q(room)}", body={"actions": []}))

        m1 = send(ctx, bob, room, "one", "m1")
        wait_until(ctx, alice.request, m1)
        ctx.expect(carol.request("POST", f"/join/{q(room)}", body={}))
        m2 = send(ctx, bob, room, "two", "m2", mentions=[alice.user_id])
        got = wait_until(ctx, carol.request, m2)
        if got != [(m2, False)]:
            raise TestFailure(f"carol joined after m1: she should have m2 only, not highlighted: {got}")
        got = notified(ctx, alice.request)
        if got[:2] != [(m2, True), (m1, False)]:
            raise TestFailure(f"alice: the mention highlighted, then m1: {got}")
        ctx.expect(alice.request("POST", f"/rooms/{q(room)}/leave", body={}))
        m3 = send(ctx, bob, room, "three", "m3")
        wait_until(ctx, carol.request, m3)
        got = notified(ctx, alice.request)
        if got[:1] != [(m2, True)]:
            raise TestFailure(f"alice left before m3, which must not reach her: {got}")
        for who, request in (("the sender", bob.request), ("dave (room rule: no actions)", dave.request)):
            got = notified(ctx, request)
            if got:
                raise TestFailure(f"{who} has notifications: {got}")
        as_notes = ctx.expect(asc.request("GET", "/notifications", user_id=bridged))["notifications"]
        if as_notes:
            raise TestFailure(f"a user the appservice owns exclusively has notifications: {as_notes}")
        # An invite reaches its invitee, who is not a member.
        erin = ctx.register(srv, "erin")
        ctx.expect(bob.request("POST", f"/rooms/{q(room)}/invite", body={"user_id": erin.user_id}))
        invite_id = ctx.expect(bob.request("GET", f"/rooms/{q(room)}/state/m.room.member/{q(erin.user_id)}",
                                           query={"format": "event"}), 200)
        got = wait_until(ctx, erin.request, invite_id["event_id"])
        if len(got) != 1:
            raise TestFailure(f"erin was only invited: {got}")


def test_a_notification_is_stored_with_its_event(ctx):
    """The event's push rules are evaluated in the transaction that stores it: once the send has
    answered, GET /notifications and /sync's notification counts already include it (before, a
    thread evaluated it after the commit, and a read right after the send could miss it)."""
    srv = ctx.server()
    bob = ctx.register(srv, "bob")
    alice = ctx.register(srv, "alice")
    room = ctx.expect(bob.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
    ctx.expect(alice.request("POST", f"/join/{q(room)}", body={}))
    since = ctx.expect(alice.request("GET", "/sync", query={"timeout": "0"}))["next_batch"]
    for i in range(20):
        event_id = send(ctx, bob, room, f"m{i}", f"now{i}", mentions=[alice.user_id])
        got = notified(ctx, alice.request)
        if not got or got[0] != (event_id, True):
            raise TestFailure(f"send {i}: the answered send's notification is not the newest one: {got[:3]}")
    body = ctx.expect(alice.request("GET", "/sync", query={"timeout": "0", "since": since}))
    counts = body["rooms"]["join"][room]["unread_notifications"]
    if counts != {"notification_count": 20, "highlight_count": 20}:
        raise TestFailure(f"20 mentions: unread_notifications {counts}")


def unread(ctx, request, room, thread_counts=False):
    query = {"timeout": "0"}
    if thread_counts:
        query["filter"] = '{"room":{"timeline":{"unread_thread_notifications":true}}}'
    body = ctx.expect(request("GET", "/sync", query=query))
    r = body["rooms"]["join"][room]
    n = r["unread_notifications"]
    return (n["notification_count"], n["highlight_count"]), r.get("unread_thread_notifications")


def test_unread_counts_read_the_stored_rows(ctx):
    """Once the push evaluator has passed the events, /sync's unread counts come from its rows
    (service/unread_counts), with the same answers as evaluating each event: the room's row for the
    members joined at the event, a mention's and a room rule's own rows, threads apart, the user's
    own message reading the room; a user an appservice owns exclusively (no rows) is evaluated."""
    with AsEnv(ctx) as env:
        srv, asc, bob, alice, dave, carol, room, bridged = bridged_room(ctx, env, "_br_y")
        ctx.expect(dave.request("PUT", f"/pushrules/global/room/{q(room)}", body={"actions": []}))

        m1 = send(ctx, bob, room, "one", "u1")
        wait_until(ctx, alice.request, m1)
        ctx.expect(carol.request("POST", f"/join/{q(room)}", body={}))
        send(ctx, bob, room, "two", "u2", mentions=[alice.user_id])
        reply = {"msgtype": "m.text", "body": "in the thread",
                 "m.relates_to": {"rel_type": "m.thread", "event_id": m1, "is_falling_back": True,
                                  "m.in_reply_to": {"event_id": m1}}}
        r1 = ctx.expect(bob.request("PUT", f"/rooms/{q(room)}/send/m.room.message/u3", body=reply))["event_id"]
        wait_until(ctx, alice.request, r1)
        wait_until(ctx, carol.request, r1)

        expected = [("alice", alice.request, (3, 1)), ("carol (joined after m1)", carol.request, (2, 0)),
                    ("dave (room rule: no actions)", dave.request, (0, 0)), ("bob (the sender)", bob.request, (0, 0)),
                    ("the bridged user (evaluated)", lambda *a, **k: asc.request(*a, user_id=bridged, **k), (3, 0))]
        for who, request, want in expected:
            got, _ = unread(ctx, request, room)
            if got != want:
                raise TestFailure(f"{who}: unread (notifications, highlights) {got}, expected {want}")
        got, threads = unread(ctx, alice.request, room, thread_counts=True)
        if got != (2, 1) or threads != {m1: {"notification_count": 1, "highlight_count": 0}}:
            raise TestFailure(f"alice with thread counts: main {got}, threads {threads}")
        # Her own message in the main timeline reads the room (evaluated or read from the rows).
        mine = send(ctx, alice, room, "mine", "u4")
        wait_until(ctx, bob.request, mine)
        got, _ = unread(ctx, alice.request, room)
        if got != (0, 0):
            raise TestFailure(f"alice after her own message: {got}, expected (0, 0)")


def test_the_room_facts_follow_rules_members_and_power_levels(ctx):
    """The evaluator keeps what it reads about a room (its joined count, the members with their own
    rules or a pusher, the power levels) from one event to the next instead of reading every member
    again: each must still follow a push rule written after the room's events were evaluated, a
    member joining (the one-to-one rule stops matching) and a power level change."""
    srv = ctx.server()
    bob, alice, carol = (ctx.register(srv, n) for n in ("bob", "alice", "carol"))
    room = ctx.expect(bob.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
    ctx.expect(alice.request("POST", f"/join/{q(room)}", body={}))

    def actions_of(user, event_id):
        got = wait_until(ctx, user.request, event_id)
        for n in ctx.expect(user.request("GET", "/notifications"))["notifications"]:
            if n["event"]["event_id"] == event_id:
                return n["actions"]
        raise TestFailure(f"{event_id} not in {user.user_id}'s notifications: {got}")

    m1 = send(ctx, bob, room, "one", "f1")
    one_to_one = ["notify", {"set_tweak": "sound", "value": "default"}]
    if actions_of(alice, m1) != one_to_one:
        raise TestFailure(f"two members: the one-to-one rule's actions, got {actions_of(alice, m1)}")
    send(ctx, bob, room, "warm", "f2")  # the room's facts are read and kept
    ctx.expect(alice.request("PUT", f"/pushrules/global/room/{q(room)}", body={"actions": []}))
    ctx.expect(carol.request("POST", f"/join/{q(room)}", body={}))
    m3 = send(ctx, bob, room, "three", "f3")
    if actions_of(carol, m3) != ["notify"]:
        raise TestFailure(f"three members: .m.rule.message's actions, got {actions_of(carol, m3)}")
    if any(e == m3 for e, _ in notified(ctx, alice.request)):
        raise TestFailure("alice silenced the room (a room rule written after its events were evaluated)")

    def at_room(txn):
        content = {"msgtype": "m.text", "body": "everyone", "m.mentions": {"room": True}}
        return ctx.expect(alice.request("PUT", f"/rooms/{q(room)}/send/m.room.message/{txn}", body=content))["event_id"]

    r1 = at_room("f4")
    if {"set_tweak": "highlight"} in actions_of(carol, r1):
        raise TestFailure("alice (power 0) may not notify the room: no highlight")
    pl = ctx.expect(bob.request("GET", f"/rooms/{q(room)}/state/m.room.power_levels"))
    pl.setdefault("users", {})[alice.user_id] = 50
    ctx.expect(bob.request("PUT", f"/rooms/{q(room)}/state/m.room.power_levels", body=pl))
    r2 = at_room("f5")
    if {"set_tweak": "highlight"} not in actions_of(carol, r2):
        raise TestFailure(f"alice at power 50 notifies the room: highlighted, got {actions_of(carol, r2)}")
    # dave silences the room before he joins, and joins after the room's facts were read again:
    # his join must add him to the members with their own rules (else the room's row reaches him).
    dave = ctx.register(srv, "dave")
    ctx.expect(dave.request("PUT", f"/pushrules/global/room/{q(room)}", body={"actions": []}))
    send(ctx, bob, room, "warm again", "f6")
    ctx.expect(dave.request("POST", f"/join/{q(room)}", body={}))
    m7 = send(ctx, bob, room, "seven", "f7")
    wait_until(ctx, carol.request, m7)
    if notified(ctx, dave.request):
        raise TestFailure(f"dave's room rule (no actions) must hold from his join on: {notified(ctx, dave.request)}")
