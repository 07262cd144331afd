"""Appservices under trouble (issue 7, items 2, 6, 13): an event the sender cannot read is skipped
(logged, counted, shown in the status) instead of stopping delivery for good; a hung appservice
holds neither the workers nor more than a few outbound calls, so other clients are served at once
and the lookups waiting on it get 408 within the query budget; requests from a bridge during an
outage retry delivery without doubling the backoff, so delivery resumes soon after recovery."""

import json
import os
import statistics
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestFailure  # noqa: E402
from appservice_support import AsClient, AsEnv, registration, send_text, wait_for  # noqa: E402

SERVER = "localhost"


def failed_attempt_with(lst, event_id):
    return [r for r in lst.txn_requests()
            if r.status not in (None, 200) and event_id in [e.get("event_id") for e in (r.json or {}).get("events", [])]]


def test_an_unreadable_event_is_skipped_and_delivery_goes_on(ctx):
    with AsEnv(ctx) as env:
        reg = registration("skipper", None, "_sk_bot", users=[(True, "@_sk_.*")])
        lst = env.listener(reg)
        srv = env.server([reg])
        asc = AsClient(srv, reg)
        room = ctx.expect(asc.request("POST", "/createRoom", body={}))["room_id"]
        alice = ctx.register(srv, "alice")
        private = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "private_chat"}))["room_id"]
        # Hold the bridge's events in a failing transaction, so that what follows stays unread in
        # the stream until the restart.
        lst.failing = True
        first = send_text(asc, room, "before")
        wait_for(lambda: failed_attempt_with(lst, first), 5, "a failed transaction holding the first event")
        # Events of someone who has nothing to do with the bridge, in a private room: one nested
        # deeper than anything we parse (the stored-JSON reader takes 96 levels), one not JSON at all.
        deep_id = send_text(alice, private, "to be nested too deep")
        broken_id = send_text(alice, private, "to be cut short")
        later = send_text(asc, room, "after the unreadable events")
        srv.stop()

        ((text,),) = srv.sql("SELECT json FROM events WHERE event_id = ?", deep_id)
        pdu = json.loads(text)
        nested = "bottom"
        for _ in range(200):
            nested = {"n": nested}
        pdu["content"]["nested"] = nested
        srv.sql("UPDATE events SET json = ? WHERE event_id = ?", json.dumps(pdu), deep_id)
        srv.sql("UPDATE events SET json = ? WHERE event_id = ?", text[: len(text) // 2], broken_id)

        lst.failing = False
        srv.start()
        lst.wait_delivered([first, later], timeout=10)
        lst.wait_delivered([send_text(asc, room, "and after the restart")], timeout=5)
        status = asc.status()
        if (status.get("skipped_events") != 2 or broken_id not in status.get("last_skipped", "")
                or "unreadable" not in status["last_skipped"] or status.get("stream_lag", 99) > 5):
            raise TestFailure(f"the status does not show the two skipped events and why: {status}")
        logged = [line for line in srv.output().splitlines() if deep_id in line and "skipping" in line]
        if not logged:
            raise TestFailure(f"no log line names the skipped event {deep_id}")


def timed_get(srv, path, out, key, token=None):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    started = time.monotonic()
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        res = conn.getresponse()
        res.read()
        out[key] = (res.status, time.monotonic() - started)
    except Exception as e:  # reported by the caller
        out[key] = (f"no answer: {e!r}", time.monotonic() - started)
    finally:
        conn.close()


def test_a_hung_appservice_starves_nobody(ctx):
    with AsEnv(ctx) as env:
        reg = registration("hung", None, "_hu_bot", users=[(True, "@_hu_.*")], aliases=[(True, "#_hu_.*")])
        lst = env.listener(reg)

        def hang(rec):
            lst.released.wait(30)  # accepts, never answers (until the test ends)
            return 404, {"errcode": "M_NOT_FOUND", "error": "too late"}

        lst.on_user = hang
        lst.on_alias = hang
        srv = env.server([reg])
        results = {}
        threads = []
        started = time.monotonic()
        for i in range(40):
            path = f"/_matrix/client/v3/profile/{urllib.parse.quote(f'@_hu_{i}:{SERVER}')}"
            threads.append(threading.Thread(target=timed_get, args=(srv, path, results, f"profile {i}"), daemon=True))
        for i in range(20):
            path = f"/_matrix/client/v3/directory/room/{urllib.parse.quote(f'#_hu_{i}:{SERVER}')}"
            threads.append(threading.Thread(target=timed_get, args=(srv, path, results, f"alias {i}"), daemon=True))
        for t in threads:
            t.start()
        wait_for(lambda: [r for r in lst.snapshot() if r.path.startswith("/_matrix/app/v1/")], 5,
                 "the first query to reach the appservice")
        time.sleep(0.3)  # every lookup has reached the server by now
        versions = {}
        for i in range(5):
            timed_get(srv, "/_matrix/client/versions", versions, i)
            time.sleep(0.05)
        took = sorted(v[1] for v in versions.values())
        if any(v[0] != 200 for v in versions.values()) or statistics.median(took) > 0.1 or took[-1] > 1.0:
            raise TestFailure(f"GET /versions while the appservice hangs: {versions} (expected 200 within 100 ms)")
        for t in threads:
            t.join(15)
        total = time.monotonic() - started
        late = {k: v for k, v in results.items() if v[1] > 9.5}
        if len(results) != len(threads) or late or total > 12:
            raise TestFailure(f"lookups waiting on a hung appservice: {len(results)} of {len(threads)} answered, "
                              f"late: {late}")
        wrong = {k: v for k, v in results.items() if v[0] != 408}
        if wrong:
            raise TestFailure(f"lookups the appservice never answered did not get 408: {wrong}")
        queries = [r for r in lst.snapshot() if r.path.startswith("/_matrix/app/v1/")]
        # At most 4 at once, each retried once within the 8 s budget.
        if len(queries) > 8:
            raise TestFailure(f"the hung appservice got {len(queries)} queries: no per-appservice limit")
        # Right after, the breaker answers at once instead of asking again.
        quick = {}
        timed_get(srv, f"/_matrix/client/v3/profile/{urllib.parse.quote(f'@_hu_new:{SERVER}')}", quick, "p")
        if quick["p"][0] != 408 or quick["p"][1] > 1.0:
            raise TestFailure(f"a lookup just after the appservice timed out: {quick['p']} (expected 408 at once)")


def test_requests_during_an_outage_do_not_push_the_backoff_to_its_cap(ctx):
    with AsEnv(ctx) as env:
        reg = registration("flaky", None, "_fl_bot", users=[(True, "@_fl_.*")], rooms=[(False, "!.*")])
        lst = env.listener(reg)
        srv = env.server([reg])
        asc = AsClient(srv, reg)
        alice = ctx.register(srv, "alice")
        room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
        lst.wait_delivered([send_text(alice, room, "healthy")])

        lst.failing = True
        during = send_text(alice, room, "during the outage")
        wait_for(lambda: failed_attempt_with(lst, during), 5, "a failed transaction")
        # The bridge polls its status ten times (any request of its own would do the same).
        for _ in range(10):
            asc.status()
            time.sleep(0.2)
        time.sleep(0.3)
        status = asc.status()
        if not 1000 <= status.get("backoff_ms", 0) <= 4000:
            raise TestFailure(f"after ten requests during the outage the backoff is {status.get('backoff_ms')} ms "
                              "(expected a few seconds at most: a request retries, it does not double the delay)")

        # Back: delivery resumes within the (short) backoff, without any request from the bridge.
        lst.failing = False
        lst.wait_delivered([during], timeout=5)
        after = send_text(alice, room, "after recovery")
        lst.wait_delivered([after], timeout=3)
        final = wait_for(lambda: (lambda s: s if s.get("backoff_ms") == 0 else None)(asc.status()), 3,
                         "the backoff to end")
        if final.get("last_error"):
            raise TestFailure(f"status after recovery still has an error: {final}")
