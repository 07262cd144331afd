"""The workers topology itself (run.py --topology workers; skipped otherwise): nginx with
deploy/nginx/trestle-workers.conf sends reads to the readers and writes to main, keeps a user on one
reader, wakes a reader's long-poll for a message sent to main, routes around a dead reader, and
the readers keep serving while main is down and catch up when it is back."""

import threading
import time

from harness import READERS, TestFailure, TestSkipped


def workers_server(ctx):
    if not ctx.workers:
        raise TestSkipped("needs --topology workers (main and readers behind nginx)")
    return ctx.server()


def served_by(srv, method, path_start):
    """The processes that answered requests `method path_start...` so far (nginx's access log)."""
    time.sleep(0.05)  # nginx writes its log line once the answer is out
    return [who for m, p, _, who in srv.routes() if m == method and p.startswith(path_start)]


def expect_served(srv, method, path_start, where):
    got = served_by(srv, method, path_start)
    if not got:
        raise TestFailure(f"no {method} {path_start}... in nginx's access log:\n{srv.routes()}")
    wrong = [w for w in got if (w not in READERS if where == "reader" else w != where)]
    if wrong:
        raise TestFailure(f"{method} {path_start}... was served by {sorted(set(got))}, expected {where}")
    return got


def test_reads_go_to_a_reader_and_writes_to_main(ctx):
    srv = workers_server(ctx)
    alice = ctx.register(srv, "alice")
    room = ctx.expect(alice.request("POST", "/createRoom", body={"name": "routing"}))["room_id"]
    event = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/t1",
                                     body={"msgtype": "m.text", "body": "hi"}))["event_id"]
    ctx.expect(alice.request("PUT", f"/profile/{alice.user_id}/displayname", body={"displayname": "Alice"}))
    # The reads see what main wrote.
    body = ctx.expect(alice.request("GET", f"/rooms/{room}/messages", query={"dir": "b", "limit": 5}))
    if event not in [e["event_id"] for e in body["chunk"]]:
        raise TestFailure(f"the reader's /messages lacks the event main wrote: {body}")
    sync = ctx.expect(alice.request("GET", "/sync", query={"timeout": 0}))
    if room not in sync["rooms"]["join"]:
        raise TestFailure(f"the reader's /sync lacks the room: {sync}")
    ctx.expect(alice.request("GET", f"/rooms/{room}/event/{event}"))
    ctx.expect(alice.request("GET", f"/rooms/{room}/state/m.room.name"), body={"name": "routing"})
    ctx.expect(alice.request("GET", f"/profile/{alice.user_id}"), body={"displayname": "Alice"})
    ctx.expect(alice.request("POST", "/keys/query", body={"device_keys": {alice.user_id: []}}))
    ctx.expect(alice.request("GET", "/joined_rooms"), body={"joined_rooms": [room]})
    ctx.expect(alice.request("GET", "/account/whoami"), body={"user_id": alice.user_id})

    expect_served(srv, "POST", "/_matrix/client/v3/register", "main")
    expect_served(srv, "POST", "/_matrix/client/v3/createRoom", "main")
    expect_served(srv, "PUT", f"/_matrix/client/v3/rooms/{room}/send/", "main")
    expect_served(srv, "PUT", "/_matrix/client/v3/profile/", "main")
    readers = set()
    for method, path in (("GET", f"/_matrix/client/v3/rooms/{room}/messages"), ("GET", "/_matrix/client/v3/sync"),
                         ("GET", f"/_matrix/client/v3/rooms/{room}/event/"), ("GET", f"/_matrix/client/v3/rooms/{room}/state/"),
                         ("GET", "/_matrix/client/v3/profile/"), ("POST", "/_matrix/client/v3/keys/query"),
                         ("GET", "/_matrix/client/v3/joined_rooms"), ("GET", "/_matrix/client/v3/account/whoami")):
        readers.update(expect_served(srv, method, path, "reader"))
    if len(readers) != 1:
        raise TestFailure(f"one user's reads went to {sorted(readers)}: nginx should keep a user on one reader")


def test_users_spread_over_the_readers(ctx):
    srv = workers_server(ctx)
    seen = {}
    for i in range(12):  # 12 users on 2 readers: all on one would be a broken hash (odds 2 ** -11)
        user = ctx.register(srv, f"u{i}")
        ctx.expect(user.request("GET", "/account/whoami"))
        seen[user.user_id] = served_by(srv, "GET", "/_matrix/client/v3/account/whoami")[-1]
    if set(seen.values()) != set(READERS):
        raise TestFailure(f"nginx sent every user to {sorted(set(seen.values()))}: {seen}")


def long_poll(user, since, room, body, out):
    """Long-polls /sync from `since` until an m.room.message with this body comes (other news, such as
    the user's own presence going online, wakes a poll too: it polls again), for at most 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        res = user.request("GET", "/sync", query={"since": since, "timeout": 20000}, timeout=40)
        out["res"], out["at"] = res, time.monotonic()
        if res.status != 200:
            return
        since = res.json["next_batch"]
        events = res.json["rooms"]["join"].get(room, {}).get("timeline", {}).get("events", [])
        if any(e.get("content", {}).get("body") == body for e in events):
            return


def test_a_long_poll_on_a_reader_wakes_for_a_message_sent_to_main(ctx):
    srv = workers_server(ctx)
    alice = ctx.register(srv, "alice")
    room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
    since = ctx.expect(alice.request("GET", "/sync", query={"timeout": 0}))["next_batch"]
    for i in range(3):
        out = {}
        waiter = threading.Thread(target=long_poll, args=(alice, since, room, f"wake {i}", out))
        waiter.start()
        time.sleep(0.3)  # the long-poll is waiting on its reader
        sent_at = time.monotonic()
        event = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/w{i}",
                                         body={"msgtype": "m.text", "body": f"wake {i}"}))["event_id"]
        waiter.join(45)
        body = ctx.expect(out["res"])
        events = body["rooms"]["join"].get(room, {}).get("timeline", {}).get("events", [])
        if event not in [e["event_id"] for e in events]:
            raise TestFailure(f"round {i}: the long-poll answered without the message: {body}")
        if out["at"] - sent_at > 2:
            raise TestFailure(f"round {i}: the reader's long-poll answered {out['at'] - sent_at:.1f}s after the send")
        since = body["next_batch"]
    expect_served(srv, "GET", "/_matrix/client/v3/sync", "reader")
    expect_served(srv, "PUT", f"/_matrix/client/v3/rooms/{room}/send/", "main")


def test_a_dead_reader_is_routed_around(ctx):
    srv = workers_server(ctx)
    alice = ctx.register(srv, "alice")
    room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
    ctx.expect(alice.request("GET", "/sync", query={"timeout": 0}))
    home = served_by(srv, "GET", "/_matrix/client/v3/sync")[-1]
    srv.kill_process(home)
    event = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/after",
                                     body={"msgtype": "m.text", "body": "after"}))["event_id"]
    body = ctx.expect(alice.request("GET", "/sync", query={"timeout": 0}))
    events = body["rooms"]["join"].get(room, {}).get("timeline", {}).get("events", [])
    if event not in [e["event_id"] for e in events]:
        raise TestFailure(f"the other reader's /sync lacks the message: {body}")
    now = served_by(srv, "GET", "/_matrix/client/v3/sync")[-1]
    if now == home or now not in READERS:
        raise TestFailure(f"with {home} dead, alice's /sync was served by {now}")
    srv.start_process(home)


def test_readers_serve_while_main_is_down_and_catch_up(ctx):
    srv = workers_server(ctx)
    alice = ctx.register(srv, "alice")
    room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
    sent = [ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/k{i}",
                                     body={"msgtype": "m.text", "body": f"k{i}"}))["event_id"] for i in range(5)]
    since = ctx.expect(alice.request("GET", "/sync", query={"timeout": 0}))["next_batch"]
    srv.kill_process("main")
    # Reads go on: every acknowledged message is there.
    body = ctx.expect(alice.request("GET", f"/rooms/{room}/messages", query={"dir": "b", "limit": 20}))
    missing = [e for e in sent if e not in [ev["event_id"] for ev in body["chunk"]]]
    if missing:
        raise TestFailure(f"with main down, a reader's /messages lacks acknowledged events {missing}")
    # A long-poll waits on its reader across main's restart and wakes for the new main's message.
    out = {}
    waiter = threading.Thread(target=long_poll, args=(alice, since, room, "back", out))
    waiter.start()
    srv.start_process("main")
    time.sleep(0.3)
    event = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/back",
                                     body={"msgtype": "m.text", "body": "back"}))["event_id"]
    waiter.join(45)
    body = ctx.expect(out["res"])
    events = body["rooms"]["join"].get(room, {}).get("timeline", {}).get("events", [])
    if event not in [e["event_id"] for e in events]:
        raise TestFailure(f"the reader did not catch up with the restarted main: {body}")
