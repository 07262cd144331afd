"""Pushing events to appservices: who is interested in what, the transaction format, ordering,
batches of at most 100, retries with the same txn id and body under exponential backoff, the
backlog in full batches, ending the backoff on a request from the appservice, a durable queue
across kill -9, url: null, ephemeral data (MSC2409), and the delivery status endpoint."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestFailure  # noqa: E402
from appservice_support import (AsClient, AsEnv, registration, send_text, wait_for)  # noqa: E402

SERVER = "localhost"
TXN_SHAPE = {"events": {"$each": "$shape:client_event"}}


def room_events(ctx, user, room):
    """Every event of the room in stream order (forwards /messages from the start)."""
    chunk = ctx.expect(user.request("GET", f"/rooms/{room}/messages", query={"dir": "f", "limit": 200}))["chunk"]
    return [e["event_id"] for e in chunk]


def check_subsequence(delivered, expected, what):
    """`expected` appears in `delivered` exactly once each and in this order."""
    positions = []
    for ev in expected:
        count = delivered.count(ev)
        if count != 1:
            raise TestFailure(f"{what}: event {ev} was delivered {count} times")
        positions.append(delivered.index(ev))
    if positions != sorted(positions):
        raise TestFailure(f"{what}: events were not delivered in stream order")


def check_txns(ctx, lst):
    """Every transaction: PUT with the hs_token, a body of at most 100 client events; a txn id
    always carries the same body."""
    lst.check_auth()
    bodies = {}
    for r in lst.txn_requests():
        if r.json is None or not isinstance(r.json.get("events"), list):
            raise TestFailure(f"transaction {r.txn_id} has no events list: {r.raw[:200]!r}")
        errors = ctx_match(ctx, TXN_SHAPE, r.json)
        if errors:
            raise TestFailure(f"transaction {r.txn_id}: " + "; ".join(errors))
        if len(r.json["events"]) > 100:
            raise TestFailure(f"transaction {r.txn_id} has {len(r.json['events'])} events (at most 100)")
        if r.headers.get("content-type", "").split(";")[0] != "application/json":
            raise TestFailure(f"transaction {r.txn_id} Content-Type is {r.headers.get('content-type')}")
        if bodies.setdefault(r.txn_id, r.raw) != r.raw:
            raise TestFailure(f"txn id {r.txn_id} was sent with two different bodies")
    ids = [r.txn_id for r in lst.accepted_txns()]
    if len(ids) != len(set(ids)):
        raise TestFailure(f"a txn id was accepted twice: {ids}")


def ctx_match(ctx, expected, actual):
    from harness import Matcher
    return Matcher({}, ctx.shapes).match(expected, actual)


def test_interest_rules_format_order_ephemeral_and_url_null(ctx):
    with AsEnv(ctx) as env:
        # First run without appservices: the rooms exist before the registration names them.
        srv = ctx.server()
        alice = ctx.register(srv, "alice")
        bob = ctx.register(srv, "bob")
        rooms = {}
        for name in ("a_unused", "b", "c", "d", "e", "f"):
            rooms[name] = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
        srv.stop()

        reg = registration("pusher", None, "_px_bot", users=[(True, "@_px_.*")], aliases=[(True, "#_px_.*")],
                           rooms=[(False, rooms["c"])], receive_ephemeral=True)
        quiet = registration("quiet", None, "_quiet_bot", users=[(False, "@.*")], rooms=[(False, "!.*")],
                             aliases=[(False, "#.*")])
        plain = registration("plain", None, "_pl_bot", users=[(True, "@_pl_.*")], rooms=[(False, rooms["c"])])
        lst = env.listener(reg)
        plain_lst = env.listener(plain)
        srv.config_overrides = {"app_service_config_files": env.write_registrations(srv, [reg, quiet, plain])}
        srv.start()
        asc = AsClient(srv, reg)
        u = asc.register("_px_user")
        u2 = asc.register("_px_user2")
        sent = []  # what must be pushed, in stream order

        # (a) the sender is in the user namespace.
        room_a = ctx.expect(asc.request("POST", "/createRoom", user_id=u, body={"preset": "public_chat"}))["room_id"]
        sent += room_events(ctx, acting_as(asc, u), room_a)
        # (b) a membership event whose state_key is in the namespace.
        ctx.expect(alice.request("POST", f"/rooms/{rooms['b']}/invite", body={"user_id": u2}))
        sent.append(last_event(ctx, alice, rooms["b"]))
        # (c) the room is in the rooms namespace.
        m_c = send_text(alice, rooms["c"], "in the rooms namespace")
        sent.append(m_c)
        # (d) the room has an alias in the aliases namespace.
        ctx.expect(asc.request("PUT", f"/directory/room/%23_px_d:{SERVER}", body={"room_id": rooms["d"]}))
        sent.append(send_text(alice, rooms["d"], "room with a namespaced alias"))
        # (e) one of the appservice's users is a member.
        ctx.expect(asc.request("POST", f"/join/{rooms['e']}", user_id=u, body={}))
        sent.append(last_event(ctx, alice, rooms["e"]))
        m_e = send_text(bob_in(ctx, bob, rooms["e"]), rooms["e"], "a room with an appservice member")
        sent.append(m_e)
        # (f) nothing to do with the appservice.
        unrelated = send_text(alice, rooms["f"], "unrelated")
        ctx.expect(bob.request("POST", f"/join/{rooms['f']}", body={}))
        unrelated_join = last_event(ctx, bob, rooms["f"])
        sentinel = send_text(alice, rooms["c"], "sentinel")
        sent.append(sentinel)

        lst.wait_delivered(sent, timeout=10)
        delivered = lst.delivered_ids()
        for ev in (unrelated, unrelated_join):
            if ev in delivered:
                raise TestFailure(f"an event of an unrelated room was pushed: {ev}")
        check_subsequence(delivered, sent, "interest rules")
        if len(delivered) != len(set(delivered)):
            raise TestFailure("an event was pushed twice")
        for r in lst.txn_requests():
            if not r.raw_path.startswith("/_matrix/app/v1/transactions/"):
                raise TestFailure(f"transaction on an unexpected path: {r.raw_path}")
        check_txns(ctx, lst)
        by_id = {e["event_id"]: e for e in lst.delivered_events()}
        errors = ctx_match(ctx, {"room_id": rooms["c"], "sender": alice.user_id, "type": "m.room.message",
                                 "content": {"body": "in the rooms namespace", "msgtype": "m.text"}}, by_id[m_c])
        if errors:
            raise TestFailure("the pushed event is not the client event: " + "; ".join(errors))

        # Ephemeral data: typing and receipts in interesting rooms, under both names.
        ctx.expect(alice.request("PUT", f"/rooms/{rooms['f']}/typing/{alice.user_id}",
                                 body={"typing": True, "timeout": 30000}))
        ctx.expect(alice.request("PUT", f"/rooms/{rooms['c']}/typing/{alice.user_id}",
                                 body={"typing": True, "timeout": 30000}))
        ctx.expect(alice.request("POST", f"/rooms/{rooms['c']}/receipt/m.read/{m_c}", body={}))

        def ephemeral():
            out = []
            for r in lst.accepted_txns():
                out += (r.json or {}).get("ephemeral", [])
            return out

        def found():
            eph = ephemeral()
            typing = [e for e in eph if e.get("type") == "m.typing" and e.get("room_id") == rooms["c"]
                      and alice.user_id in e.get("content", {}).get("user_ids", [])]
            receipt = [e for e in eph if e.get("type") == "m.receipt" and e.get("room_id") == rooms["c"]
                       and alice.user_id in e.get("content", {}).get(m_c, {}).get("m.read", {})]
            return typing and receipt

        wait_for(found, 10, "typing and a read receipt under 'ephemeral'")

        # Private read receipts: only the appservice's own users'.
        ctx.expect(alice.request("POST", f"/rooms/{rooms['c']}/receipt/m.read.private/{sentinel}", body={}))
        ctx.expect(asc.request("POST", f"/rooms/{rooms['e']}/receipt/m.read.private/{m_e}", user_id=u, body={}))

        def private_receipts():
            return [(e["room_id"], user) for e in ephemeral() if e.get("type") == "m.receipt"
                    for ev, types in e.get("content", {}).items() for user in types.get("m.read.private", {})]

        wait_for(lambda: (rooms["e"], u) in private_receipts(), 10, "the appservice user's private read receipt")
        if (rooms["c"], alice.user_id) in private_receipts():
            raise TestFailure("another user's private read receipt was pushed to the appservice")
        for r in lst.accepted_txns():
            body = r.json or {}
            if "ephemeral" in body and body.get("de.sorunome.msc2409.ephemeral") != body["ephemeral"]:
                raise TestFailure("'de.sorunome.msc2409.ephemeral' differs from 'ephemeral'")
        for e in ephemeral():
            if e.get("room_id") == rooms["f"]:
                raise TestFailure(f"ephemeral data of an unrelated room was pushed: {e}")
        check_txns(ctx, lst)
        # Without receive_ephemeral: the events, never ephemeral data.
        plain_lst.wait_delivered([m_c, sentinel, send_text(alice, rooms["c"], "after the receipts")])
        for r in plain_lst.txn_requests():
            if "ephemeral" in r.json or "de.sorunome.msc2409.ephemeral" in r.json:
                raise TestFailure(f"ephemeral data pushed to an appservice without receive_ephemeral: {r.json}")
        check_txns(ctx, plain_lst)

        # url: null: nothing is pushed, nothing is queued, and nothing goes wrong.
        q = AsClient(srv, quiet)
        status = q.status()
        if status.get("queued_txns", 0) != 0 or status.get("delivered_txns", 0) != 0:
            raise TestFailure(f"an appservice without a URL has transactions: {status}")
        logged = [line for line in srv.output().splitlines() if "appservice quiet" in line]
        if logged:
            raise TestFailure(f"the server logged about the appservice without a URL: {logged[:3]}")


def acting_as(asc, user_id):
    """The appservice acting as `user_id`, with the User-like request() room_events() uses."""
    class View:
        def request(self, method, path, **kw):
            return asc.request(method, path, user_id=user_id, **kw)
    return View()


def bob_in(ctx, bob, room):
    ctx.expect(bob.request("POST", f"/join/{room}", body={}))
    return bob


def last_event(ctx, user, room):
    chunk = ctx.expect(user.request("GET", f"/rooms/{room}/messages", query={"dir": "b", "limit": 1}))["chunk"]
    return chunk[0]["event_id"]


def bulk_setup(ctx, env, config=None):
    reg = registration("bulk", None, "_bk_bot", users=[(True, "@_bk_.*")], rooms=[(False, "!.*")])
    lst = env.listener(reg)
    srv = env.server([reg], config=config)
    alice = ctx.register(srv, "alice")
    room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
    lst.wait_delivered(room_events(ctx, alice, room))
    return reg, lst, srv, alice, room


def attempts_of(lst, txn_id):
    return [r for r in lst.txn_requests() if r.txn_id == txn_id]


def test_retries_backoff_backlog_in_full_batches_and_status(ctx):
    with AsEnv(ctx) as env:
        reg, lst, srv, alice, room = bulk_setup(ctx, env)
        asc = AsClient(srv, reg)
        # (the listener records a 200 just before the homeserver reads it: poll)
        wait_for(lambda: (lambda st: st.get("queued_txns") == 0 and st.get("stream_lag") == 0
                          and st.get("backoff_ms") == 0 and st.get("delivered_txns", 0) >= 1)(asc.status()),
                 5, "the status of a healthy, caught-up appservice")
        already = len(lst.accepted_txns())

        lst.failing = True
        primer = send_text(alice, room, "primer")
        first = wait_for(lambda: [r for r in lst.txn_requests()[already:] if r.status is not None], 5,
                         "the transaction with the primer")[0]
        txn_id = first.txn_id
        if [e["event_id"] for e in first.json["events"]] != [primer]:
            raise TestFailure(f"the first transaction is not just the primer: {first.json}")
        backlog = [send_text(alice, room, f"backlog {i}", txn=f"b{i}") for i in range(250)]
        wait_for(lambda: len([r for r in attempts_of(lst, txn_id) if r.status]) >= 3, 8, "three attempts")
        tries = attempts_of(lst, txn_id)
        if any(r.raw != first.raw for r in tries):
            raise TestFailure("a retry changed the transaction body")
        gaps = [b.time - a.time for a, b in zip(tries, tries[1:])]
        if not (0.8 <= gaps[0] <= 2.5 and gaps[1] >= 1.7 and gaps[1] >= gaps[0] * 1.5):
            raise TestFailure(f"retries are not an exponential backoff from 1 s: gaps {[round(g, 2) for g in gaps]}")
        others = {r.txn_id for r in lst.txn_requests()[already:]} - {txn_id}
        if others:
            raise TestFailure(f"other transactions were sent while {txn_id} was failing: {others}")

        # The status of a stuck appservice; reading it is a request from the appservice, which
        # ends the backoff: the next attempt comes at once, not after the pending delay.
        before = len(attempts_of(lst, txn_id))
        asked = time.monotonic()
        stuck = asc.status()
        errors = ctx_match(ctx, {"queued_txns": {"$ge": 1}, "stream_lag": {"$ge": 250}, "backoff_ms": {"$ge": 1000},
                                 "last_error": "$nonempty"}, stuck)
        if errors:
            raise TestFailure(f"status of a stuck appservice {stuck}: " + "; ".join(errors))
        wait_for(lambda: len([r for r in attempts_of(lst, txn_id) if r.status]) > before, 5, "a retry after a request")
        retry = attempts_of(lst, txn_id)[before]
        if retry.time - asked > 1.0:
            raise TestFailure(f"the retry came {retry.time - asked:.2f}s after the request: the backoff did not end")
        still = asc.status()
        if still.get("backoff_ms", 0) < 1000 or still.get("queued_txns", 0) < 1:
            raise TestFailure(f"status while still failing: {still}")

        # The appservice comes back and pings: everything goes out at once, in full batches.
        lst.failing = False
        pinged = time.monotonic()
        ctx.expect(asc.ping("back"), body={"duration_ms": "$int"})
        lst.wait_delivered([primer] + backlog, timeout=15)
        accepted = lst.accepted_txns()
        primer_txn = [r for r in accepted if r.txn_id == txn_id][0]
        if primer_txn.time - pinged > 1.5:
            raise TestFailure(f"the primer was accepted {primer_txn.time - pinged:.2f}s after the ping")
        after = accepted[accepted.index(primer_txn) + 1:]
        sizes = [len(r.json["events"]) for r in after]
        if sizes != [100, 100, 50]:
            raise TestFailure(f"the backlog of 250 went out in transactions of {sizes}, not 100, 100, 50")
        check_subsequence(lst.delivered_ids(), [primer] + backlog, "backlog")
        check_txns(ctx, lst)
        final = wait_for(lambda: (lambda s: s if s.get("queued_txns") == 0 and s.get("stream_lag") == 0 else None)(
            asc.status()), 5, "the status to show the appservice caught up")
        if final.get("backoff_ms") != 0:
            raise TestFailure(f"status after recovery: {final}")


def test_kill_9_with_pending_transactions_loses_and_duplicates_nothing(ctx):
    with AsEnv(ctx) as env:
        reg, lst, srv, alice, room = bulk_setup(ctx, env)
        asc = AsClient(srv, reg)
        everything = room_events(ctx, alice, room)
        before_kill_txns = {r.txn_id for r in lst.accepted_txns()}
        lst.failing = True
        batch1 = [send_text(alice, room, f"before {i}", txn=f"k{i}") for i in range(30)]
        pending = wait_for(lambda: [r for r in lst.txn_requests() if r.status is not None and r.status != 200], 5,
                           "a failed transaction")[0]
        srv.kill()
        count = len(lst.txn_requests())
        srv.start()
        # The same transaction, same id and same body, is the first thing sent after the restart.
        wait_for(lambda: len([r for r in lst.txn_requests()[count:] if r.status]) >= 1, 5, "a retry after the restart")
        again = lst.txn_requests()[count]
        if again.txn_id != pending.txn_id or again.raw != pending.raw:
            raise TestFailure(f"after kill -9 the first transaction is {again.txn_id}, "
                              f"not the pending {pending.txn_id} with the same body")
        batch2 = [send_text(alice, room, f"after {i}", txn=f"a{i}") for i in range(20)]
        lst.failing = False
        ctx.expect(asc.ping(), body={"duration_ms": "$int"})
        lst.wait_delivered(batch1 + batch2, timeout=10)
        everything += batch1 + batch2
        delivered = lst.delivered_ids()
        check_subsequence(delivered, everything, "across kill -9")
        if len(delivered) != len(set(delivered)):
            raise TestFailure("an event was delivered twice across kill -9")
        check_txns(ctx, lst)

        # A restart with an empty queue: new transactions get ids never used before.
        seen = {r.txn_id for r in lst.txn_requests()}
        wait_for(lambda: asc.status().get("queued_txns") == 0, 5, "an empty queue")
        srv.kill()
        srv.start()
        late = send_text(alice, room, "after the second restart")
        lst.wait_delivered([late])
        new_txn = [r for r in lst.accepted_txns() if late in [e["event_id"] for e in r.json["events"]]][0]
        if new_txn.txn_id in seen:
            raise TestFailure(f"txn id {new_txn.txn_id} was used again after a restart")
        if before_kill_txns & {new_txn.txn_id}:
            raise TestFailure("a txn id from before the first kill was reused")
        check_txns(ctx, lst)


def test_a_stuck_appservice_slows_neither_clients_nor_other_appservices(ctx):
    with AsEnv(ctx) as env:
        stuck = registration("stuck", None, "_st_bot", users=[(True, "@_st_.*")], rooms=[(False, "!.*")])
        fine = registration("fine", None, "_fi_bot", users=[(True, "@_fi_.*")], rooms=[(False, "!.*")])
        down = registration("down", None, "_dn_bot", users=[(True, "@_dn_.*")], rooms=[(False, "!.*")])
        stuck_lst = env.listener(stuck)
        fine_lst = env.listener(fine)
        down_lst = env.listener(down)
        down_lst.stop()  # connection refused
        hanging = threading.Event()

        def hang(rec):
            hanging.set()
            stuck_lst.released.wait(20)
            return 200, {}

        stuck_lst.on_txn = hang
        srv = env.server([stuck, fine, down])
        alice = ctx.register(srv, "alice")
        room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
        wait_for(hanging.is_set, 5, "the stuck appservice to receive a transaction")
        started = time.monotonic()
        ids = [send_text(alice, room, f"m{i}") for i in range(20)]
        took = time.monotonic() - started
        fine_lst.wait_delivered(ids, timeout=5)
        if took > 5:
            raise TestFailure(f"20 sends took {took:.1f}s while an appservice was stuck")
        # The stuck one is still on its first transaction; release it and it catches up.
        if len(stuck_lst.txn_requests()) != 1:
            raise TestFailure("the stuck appservice got a second transaction while the first was in flight")
        stuck_lst.on_txn = None
        stuck_lst.released.set()
        stuck_lst.wait_delivered(ids, timeout=10)
        check_txns(ctx, fine_lst)
        check_txns(ctx, stuck_lst)


def test_interest_is_judged_at_the_event_not_when_a_backlog_is_sent(ctx):
    """Events from while the appservice's user was in the room are its business even when they
    are sent after the user left (the appservice was down meanwhile): nothing is skipped."""
    with AsEnv(ctx) as env:
        reg = registration("leaver", None, "_lv_bot", users=[(True, "@_lv_.*")])
        lst = env.listener(reg)
        srv = env.server([reg])
        asc = AsClient(srv, reg)
        alice = ctx.register(srv, "alice")
        u = asc.register("_lv_user")
        room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
        ctx.expect(asc.request("POST", f"/join/{room}", user_id=u, body={}))
        join = last_event(ctx, alice, room)
        lst.wait_delivered([join])
        lst.failing = True
        during = [send_text(alice, room, "while the bridge is down 0")]
        wait_for(lambda: [r for r in lst.txn_requests() if r.status and r.status != 200], 5, "a failed transaction")
        during += [send_text(alice, room, f"while the bridge is down {i}") for i in range(1, 4)]
        ctx.expect(asc.request("POST", f"/rooms/{room}/leave", user_id=u, body={}))
        leave = last_event(ctx, alice, room)
        after = send_text(alice, room, "after the bridge's user left")
        lst.failing = False
        ctx.expect(asc.ping(), body={"duration_ms": "$int"})
        lst.wait_delivered(during + [leave], timeout=6)
        check_subsequence(lst.delivered_ids(), [join] + during + [leave], "backlog across a leave")
        # The appservice has no business with what happens after its last user left.
        sentinel_room = ctx.expect(asc.request("POST", "/createRoom", user_id=u, body={}))["room_id"]
        lst.wait_delivered([last_event(ctx, acting_as(asc, u), sentinel_room)])
        if after in lst.delivered_ids():
            raise TestFailure("an event from after the appservice's last user left the room was pushed")
        check_txns(ctx, lst)


def send_then_status(srv, user, room, text, asc):
    """PUT a message and GET the appservice's delivery status pipelined on one connection: the
    status is read the moment the send has answered. Returns (event id, status)."""
    import json
    import socket
    import urllib.parse
    body = json.dumps({"msgtype": "m.text", "body": text}).encode()
    txn = f"p{time.monotonic_ns()}"
    status_path = f"/_trestle/admin/v1/appservices/{urllib.parse.quote(asc.reg['id'])}/status"
    reqs = (f"PUT /_matrix/client/v3/rooms/{urllib.parse.quote(room)}/send/m.room.message/{txn} HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: Bearer {user.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body + \
           (f"GET {status_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {asc.token}\r\n"
            f"Connection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(reqs)
        buf = b""
        answers = []
        while len(answers) < 2:
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise TestFailure(f"the connection closed after {len(answers)} of 2 answers")
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode().split("\r\n")
            length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
            while len(buf) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    raise TestFailure("the connection closed inside an answer")
                buf += chunk
            if " 200 " not in lines[0] + " ":
                raise TestFailure(f"answer {len(answers) + 1}: {lines[0]} {buf[:length]!r}")
            answers.append(json.loads(buf[:length]))
            buf = buf[length:]
    return answers[0]["event_id"], answers[1]


def test_a_caught_up_appservices_transaction_is_stored_with_the_event(ctx):
    """A healthy appservice that is caught up gets each event in a transaction stored by the
    event's own commit: the moment the send has answered, the delivery cursor is already past it
    (no second write behind it, which a crash between the two would have to redo)."""
    with AsEnv(ctx) as env:
        reg, lst, srv, alice, room = bulk_setup(ctx, env)
        asc = AsClient(srv, reg)
        wait_for(lambda: (lambda st: st.get("queued_txns") == 0 and st.get("stream_lag") == 0)(asc.status()),
                 5, "a caught-up appservice")
        sent, behind = [], []
        for i in range(20):
            event_id, st = send_then_status(srv, alice, room, f"stored with its event {i}", asc)
            sent.append(event_id)
            if st.get("stream_lag") != 0:
                behind.append((i + 1, st))
            lst.wait_delivered([event_id])
        if behind:
            raise TestFailure(f"{len(behind)} of 20 answered sends had the delivery cursor behind them: {behind[:3]}")
        check_subsequence(lst.delivered_ids(), sent, "stored with the event")
        check_txns(ctx, lst)
