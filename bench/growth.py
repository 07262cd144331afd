#!/usr/bin/python3
"""Growth benchmark (issue 12): the cost curve of sync, /messages and send as the database grows to
1,000,000 events, 10,000 users and 1,000 rooms. Stdlib only; run with Debian's /usr/bin/python3.

  growth.py [--binary /work/baseline-12/trestle] [--events 1000000] [--data /work/growth-data/NAME]
      Starts a fresh server with an appservice registered (namespace @g_.*, non-exclusive unless
      --exclusive, so push rules are evaluated for the users and they have unread counts), loads the
      database in stages through the server's own write path (appservice identity assertion,
      `?user_id=` and `?ts=`, over many keep-alive connections from several processes), and at each
      stage, with the load stopped, measures the probe user's initial and incremental sync,
      /messages 1,000 events deep, and a short wrk send burst. Prints the curve (stage x metric, and
      the ratio to the first stage) and writes JSON. The loaded data dir is kept for --reuse.
  growth.py --reuse /work/growth-data/NAME --binary A[,B] [--rounds 2]
      No loading: measures each binary on a private copy of the loaded data (alternating A, B; B, A;
      ...) and prints the medians and B/A ratios.

Stage 0 ("empty") holds only what the probe's view needs: the probe's 200 rooms with their members,
1,000 messages in the big room (so /messages has 1,000 events to page), 4 senders. The next stage
adds the other users and rooms; then messages, 5% to the big room and the rest spread over all
rooms, up to each stage's event count.

Only 127.0.0.1 is ever contacted. Every loop is bounded in count and time.
"""
import argparse
import http.client
import http.server
import json
import multiprocessing
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trestle_bench import (CLIENT, HOST, BenchError, Client, Server, log, proc_cpu_ms, proc_status, q,  # noqa: E402
                           run_wrk)

AS_ID = "growth-bench"
BIG_ROOM = 0       # the probe's room that /messages pages through
SEND_ROOM = 1      # wrk's send burst goes here (the probe is in it)
INCR_ROOM = 2      # incremental sync: one new event here per sample
N_SENDERS = 4      # wrk users (with access tokens), members of SEND_ROOM and INCR_ROOM
BIG_SHARE = 0.05   # share of loaded messages that go to the big room
BASE_TS = 1_700_000_000_000

LAZY_FILTER = q(json.dumps({"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 10}}},
                           separators=(",", ":")))


# ----------------------------------------------------------------------------- measuring

def cpu_ns(pid):
    """Server CPU time in ns: the sum over its threads of /proc/PID/task/TID/schedstat (ns
    resolution, unlike utime+stime's 10 ms ticks; a single sync is often under one tick)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def timed(pid, fn):
    """(result, wall ms, server CPU ms) of fn()."""
    c0, t0 = cpu_ns(pid), time.perf_counter()
    r = fn()
    t1, c1 = time.perf_counter(), cpu_ns(pid)
    return r, (t1 - t0) * 1000.0, (c1 - c0) / 1e6


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def raw_get(conn, path, token):
    conn.request("GET", path, headers={"Authorization": "Bearer " + token})
    r = conn.getresponse()
    raw = r.read()
    if r.status != 200:
        raise BenchError(f"GET {path[:80]}: HTTP {r.status}: {raw[:300]!r}")
    return raw


# ----------------------------------------------------------------------------- the appservice

class NullAppservice:
    """The appservice's URL: answers every transaction 200 {} without parsing it (a live bridge, as
    a dead URL would make the server retry on every as_token request)."""

    def __init__(self):
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_PUT(self):
                n = int(self.headers.get("Content-Length") or 0)
                while n > 0:
                    chunk = self.rfile.read(min(n, 1 << 16))
                    if not chunk:
                        break
                    n -= len(chunk)
                body = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_PUT

            def do_GET(self):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer((HOST, 0), H)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a peer closing early is not news
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def write_registration(workdir, state, as_port):
    """The users' namespace is non-exclusive unless the data was loaded with --exclusive: the push
    evaluator skips users an appservice owns exclusively (as Synapse does), so with an exclusive
    namespace the curve would hold no push evaluation and no unread counts."""
    path = os.path.join(workdir, "growth-appservice.yaml")
    exclusive = "true" if state.get("exclusive", False) else "false"
    with open(path, "w") as f:
        f.write(f"id: {AS_ID}\nurl: \"http://{HOST}:{as_port}\"\nas_token: \"{state['as_token']}\"\n"
                f"hs_token: \"{state['hs_token']}\"\nsender_localpart: g_bot\nrate_limited: false\n"
                f"receive_ephemeral: false\nnamespaces:\n  users:\n    - exclusive: {exclusive}\n"
                "      regex: \"@g_.*:localhost\"\n  aliases: []\n  rooms: []\n")
    return path


def wait_as_caught_up(port, as_token, timeout_s=300):
    c = Client(port, as_token, timeout=30)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            c.send_request("GET", f"/_trestle/admin/v1/appservices/{q(AS_ID)}/status")
            st, body = c.read_response(expect=None)
            if st != 200:
                return None  # no status endpoint
            if body.get("stream_lag", 1) == 0 and body.get("queued_txns", 1) == 0:
                return True
            time.sleep(0.1)
        return False
    finally:
        c.close()


# ----------------------------------------------------------------------------- parallel loading

def uid(i):
    return f"@g_u{i}:localhost"


class Plan:
    """Deterministic layout, the same in the parent and in forked workers."""

    def __init__(self, users, rooms, joins):
        self.users, self.rooms, self.joins = users, rooms, joins
        self.members = [[] for _ in range(rooms)]
        for u in range(users):
            for k in range(joins):
                r = (u * joins + k) % rooms
                if not self.members[r] or self.members[r][-1] != u:
                    self.members[r].append(u)


def _worker(port, as_token, kind, items, proc_idx, nprocs, threads, ctx, out_q):
    """One loader process: `threads` threads, each with a keep-alive connection, doing every
    nprocs-th item (from proc_idx). Reports (ok, errors, last error)."""
    lock = threading.Lock()
    if isinstance(items, list):
        mine = iter(range(proc_idx, len(items), nprocs))  # indices into the list
    else:
        mine = iter(range(items[0] + proc_idx, items[1], nprocs))  # message numbers
    stats = {"ok": 0, "err": 0, "last": ""}
    results = {}

    def run():
        conn = http.client.HTTPConnection(HOST, port, timeout=120)
        hdr = {"Authorization": "Bearer " + as_token, "Content-Type": "application/json"}
        while True:
            with lock:
                i = next(mine, None)
            if i is None or (ctx.get("deadline") and time.time() > ctx["deadline"]):
                break
            method, path, body = request_for(kind, i, items, ctx)
            for attempt in range(3):
                try:
                    conn.request(method, path, body=body, headers=hdr)
                    r = conn.getresponse()
                    raw = r.read()
                    break
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, port, timeout=120)
                    raw, r = str(e).encode(), None
            with lock:
                if r is not None and r.status == 200:
                    stats["ok"] += 1
                    if kind == "create":
                        results[i] = json.loads(raw)["room_id"]
                else:
                    stats["err"] += 1
                    stats["last"] = f"{kind} {i}: {r.status if r else 'conn'} {raw[:200]!r}"
        conn.close()

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out_q.put((stats, results))


def request_for(kind, i, items, ctx):
    if kind == "register":
        body = {"type": "m.login.application_service", "username": f"g_u{items[i]}", "inhibit_login": True}
        return "POST", CLIENT + "/register", json.dumps(body)
    if kind == "pusher":
        body = {"kind": "http", "app_id": "growth.bench", "pushkey": f"key{items[i]}", "app_display_name": "growth",
                "device_display_name": "growth", "lang": "en",
                "data": {"url": f"http://{HOST}:{ctx['gateway_port']}/_matrix/push/v1/notify"}}
        return "POST", f"{CLIENT}/pushers/set?user_id={q(uid(items[i]))}", json.dumps(body)
    if kind == "create":
        creator = ctx["plan"].members[i][0]
        return ("POST", f"{CLIENT}/createRoom?user_id={q(uid(creator))}",
                json.dumps({"preset": "public_chat", "name": f"growth room {i}"}))
    if kind == "join":
        room, user = items[i]
        return "POST", f"{CLIENT}/rooms/{q(ctx['room_ids'][room])}/join?user_id={q(user)}", "{}"
    if kind == "msg":
        rng = random.Random(i * 2654435761 + ctx["seed"])
        plan = ctx["plan"]
        if rng.random() < BIG_SHARE or ctx["only_room"] is not None:
            room = BIG_ROOM if ctx["only_room"] is None else ctx["only_room"]
        else:
            room = rng.randrange(ctx["nrooms_live"])
        sender = uid(rng.choice(plan.members[room]))
        body = {"msgtype": "m.text", "body": f"growth message {i}: " + " ".join(
            rng.choice(WORDS) for _ in range(rng.randint(4, 14)))}
        path = (f"{CLIENT}/rooms/{q(ctx['room_ids'][room])}/send/m.room.message/g{ctx['run']}-{i}"
                f"?user_id={q(sender)}&ts={BASE_TS + i * 10}")
        return "PUT", path, json.dumps(body)
    raise ValueError(kind)


WORDS = ("the quick brown fox jumps over lazy dog bridge message channel hello world matrix room event "
         "sync stream server client token user appservice irc telegram slack discord signal whatsapp").split()


def parallel(port, as_token, kind, items, args, ctx):
    """Runs items (a list, or a (start, end) range for messages) over args.procs x args.threads
    keep-alive connections. Returns (ok, results)."""
    n = len(items) if isinstance(items, list) else items[1] - items[0]
    if n <= 0:
        return 0, {}
    mp = multiprocessing.get_context("fork")
    out_q = mp.Queue()
    procs = [mp.Process(target=_worker, args=(port, as_token, kind, items, p, args.procs, args.threads, ctx, out_q))
             for p in range(args.procs)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    ok = err = 0
    results, last = {}, ""
    for _ in procs:
        st, res = out_q.get(timeout=6 * 3600)
        ok += st["ok"]
        err += st["err"]
        last = st["last"] or last
        results.update(res)
    for p in procs:
        p.join(60)
    dt = time.perf_counter() - t0
    log(f"[growth]   {kind}: {ok} ok, {err} failed in {dt:.1f} s ({n / max(dt, 1e-9):.0f}/s)")
    if err:
        raise BenchError(f"{err} {kind} requests failed; last: {last}")
    return ok, results


# ----------------------------------------------------------------------------- database facts

def db_facts(datadir):
    out = {"db_bytes": sum(os.path.getsize(os.path.join(datadir, f)) for f in os.listdir(datadir)
                           if os.path.isfile(os.path.join(datadir, f)))}
    dbs = [f for f in os.listdir(datadir) if f.endswith(".db") or f.endswith(".sqlite")]
    if dbs:
        con = sqlite3.connect(f"file:{os.path.join(datadir, dbs[0])}?mode=ro", uri=True, timeout=30)
        try:
            out["events"] = con.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            out["users"] = con.execute("SELECT COUNT(*) FROM users").fetchone()[0]
            out["rooms"] = con.execute("SELECT COUNT(*) FROM rooms").fetchone()[0]
            for table, key in (("push_room_notifications", "push_room_rows"), ("push_notifications", "push_rows")):
                try:
                    out[key] = con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                except sqlite3.OperationalError:
                    pass  # an older schema
        finally:
            con.close()
    return out


# ----------------------------------------------------------------------------- one stage's measurements

def wait_push_caught_up(datadir, timeout_s=600):
    """The push evaluator works through the stream after the sends were answered: wait until its
    cursor (push_state.last_stream) reaches the last event, so it does not run during a measurement."""
    con = sqlite3.connect(f"file:{os.path.join(datadir, 'homeserver.db')}?mode=ro", uri=True, timeout=30)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                cur = con.execute("SELECT last_stream FROM push_state WHERE id = 1").fetchone()
                top = con.execute("SELECT MAX(stream_ordering) FROM events").fetchone()[0]
            except sqlite3.OperationalError:
                return None  # no such table: a binary without the push evaluator
            if cur is None or top is None or cur[0] >= top:
                return True
            time.sleep(0.2)
        return False
    finally:
        con.close()


def wait_quiet(srv, state):
    wait_as_caught_up(srv.port, state["as_token"])
    wait_push_caught_up(os.path.join(srv.workdir, "data"))


def measure(srv, state, args):
    pid, port = srv.pid, srv.port
    wait_quiet(srv, state)
    time.sleep(0.5)
    out = {}
    probe = state["probe_token"]
    conn = http.client.HTTPConnection(HOST, port, timeout=600)

    # Initial sync (no since), lazy-loading members as Element does, timeline limit 10.
    walls, cpus, sizes = [], [], []
    body = None
    for _ in range(args.samples):
        raw, w, c = timed(pid, lambda: raw_get(conn, f"{CLIENT}/sync?timeout=0&filter={LAZY_FILTER}", probe))
        walls.append(w)
        cpus.append(c)
        sizes.append(len(raw))
        body = json.loads(raw)
    joined = len(body["rooms"]["join"])
    if joined != state["probe_rooms"]:
        raise BenchError(f"the probe's initial sync has {joined} joined rooms, expected {state['probe_rooms']}")
    unread = [r.get("unread_notifications", {}).get("notification_count", 0) for r in body["rooms"]["join"].values()]
    out["probe_unread_total"] = sum(unread)
    out["probe_rooms_unread"] = sum(1 for n in unread if n)
    out.update({"initial_sync_first_ms": walls[0], "initial_sync_first_cpu_ms": cpus[0],
                "initial_sync_ms": med(walls[1:] or walls), "initial_sync_cpu_ms": med(cpus[1:] or cpus),
                "initial_sync_bytes": sizes[-1]})

    # Incremental sync: one new event in one of the probe's rooms, then sync since the last token.
    token = body["next_batch"]
    sender = Client(port, state["sender_tokens"][0])
    room = state["room_ids"][INCR_ROOM]
    walls, cpus = [], []
    for k in range(args.incr_samples):
        ev = sender.call("PUT", f"{CLIENT}/rooms/{q(room)}/send/m.room.message/incr{int(time.time() * 1e6)}-{k}",
                         {"msgtype": "m.text", "body": f"incremental {k}"})["event_id"]
        raw, w, c = timed(pid, lambda: raw_get(conn, f"{CLIENT}/sync?timeout=0&since={q(token)}&filter={LAZY_FILTER}",
                                               probe))
        b = json.loads(raw)
        evs = [e["event_id"] for e in b["rooms"]["join"].get(room, {}).get("timeline", {}).get("events", [])]
        if ev not in evs:
            raise BenchError(f"incremental sync lacks the new event {ev}")
        token = b["next_batch"]
        walls.append(w)
        cpus.append(c)
    sender.close()
    out.update({"incr_sync_ms": med(walls), "incr_sync_cpu_ms": med(cpus)})

    # /messages 1,000 events deep in the big room.
    big = state["room_ids"][BIG_ROOM]
    walls, cpus = [], []
    for _ in range(args.samples):
        raw, w, c = timed(pid, lambda: raw_get(conn, f"{CLIENT}/rooms/{q(big)}/messages?dir=b&limit=1000", probe))
        n = len(json.loads(raw)["chunk"])
        if n != 1000:
            raise BenchError(f"/messages returned {n} events, expected 1000")
        walls.append(w)
        cpus.append(c)
    out.update({"messages_1000_ms": med(walls), "messages_1000_cpu_ms": med(cpus)})
    conn.close()

    # Send: a short wrk burst into SEND_ROOM (N_SENDERS users, 16 connections).
    tag = f"g{os.getpid()}x{int(time.time() * 1000)}"
    c0 = cpu_ns(pid)
    res, _ = run_wrk(port, state["sender_tokens"], state["room_ids"][SEND_ROOM], N_SENDERS, 16, args.send_seconds, tag)
    c1 = cpu_ns(pid)
    if res["non_2xx"]:
        raise BenchError(f"send burst: {res['non_2xx']} non-2xx, last {res['last_bad_status']} {res['last_bad_body']}")
    out.update({"send_req_per_s": res["requests"] / (res["duration_us"] / 1e6),
                "send_p50_ms": res["lat_p50_us"] / 1000.0, "send_p99_ms": res["lat_p99_us"] / 1000.0,
                "send_cpu_ms_per_event": (c1 - c0) / 1e6 / max(1, res["requests"])})
    wait_quiet(srv, state)
    # Including what follows each send after its answer: appservice delivery and push evaluation.
    out["send_total_cpu_ms_per_event"] = (cpu_ns(pid) - c0) / 1e6 / max(1, res["requests"])
    st = proc_status(pid)
    out["rss_kb"] = st["VmRSS"]
    out["loadavg"] = os.getloadavg()[0]
    srv.check_alive()
    return out


# ----------------------------------------------------------------------------- loading

def load_stage0(srv, state, args, plan):
    """The probe's view: its rooms and their members, the senders, 1,000 messages in the big room."""
    port, as_token = srv.port, state["as_token"]
    pr = args.probe_rooms
    probe_users = sorted({u for r in range(pr) for u in plan.members[r]})
    log(f"[growth] stage 0: {len(probe_users)} users, {pr} rooms, the probe, {N_SENDERS} senders")
    asc = Client(port, as_token)
    reg = asc.call("POST", CLIENT + "/register", {"type": "m.login.application_service", "username": "g_probe"})
    state["probe_token"], state["probe_id"] = reg["access_token"], reg["user_id"]
    state["sender_tokens"] = []
    for k in range(N_SENDERS):
        reg = asc.call("POST", CLIENT + "/register", {"type": "m.login.application_service", "username": f"g_w{k}"})
        state["sender_tokens"].append(reg["access_token"])
        state.setdefault("sender_ids", []).append(reg["user_id"])
    asc.close()
    parallel(port, as_token, "register", probe_users, args, {})
    _, created = parallel(port, as_token, "create", list(range(pr)), args, {"plan": plan})
    # items are indices into the list: map back to room numbers
    state["room_ids"] = [created[i] for i in range(pr)]
    joins = [(r, uid(u)) for r in range(pr) for u in plan.members[r][1:]]
    joins += [(r, state["probe_id"]) for r in range(pr)]
    joins += [(r, s) for r in (SEND_ROOM, INCR_ROOM) for s in state["sender_ids"]]
    parallel(port, as_token, "join", joins, args, {"room_ids": state["room_ids"]})
    ctx = {"plan": plan, "room_ids": state["room_ids"], "seed": 1, "run": state["run"], "only_room": BIG_ROOM,
           "nrooms_live": pr}
    parallel(port, as_token, "msg", (0, 1000), args, ctx)
    state["next_msg"] = 1000
    state["probe_rooms"] = pr
    state["rooms_live"] = pr


def load_rest_of_setup(srv, state, args, plan):
    port, as_token = srv.port, state["as_token"]
    pr = args.probe_rooms
    have = {u for r in range(pr) for u in plan.members[r]}
    rest_users = [u for u in range(args.users) if u not in have]
    log(f"[growth] the other {len(rest_users)} users and {args.rooms - pr} rooms")
    parallel(port, as_token, "register", rest_users, args, {})
    rest_rooms = list(range(pr, args.rooms))
    _, created = parallel(port, as_token, "create", rest_rooms, args, {"plan": PlanView(plan, rest_rooms)})
    state["room_ids"] += [created[i] for i in range(len(rest_rooms))]
    joins = [(r, uid(u)) for r in rest_rooms for u in plan.members[r][1:]]
    parallel(port, as_token, "join", joins, args, {"room_ids": state["room_ids"]})
    state["rooms_live"] = args.rooms


class PlanView:
    """`create` items are list indices; this maps index i to room rest_rooms[i]'s members."""

    def __init__(self, plan, rooms):
        self.members = [plan.members[r] for r in rooms]


def load_messages(srv, state, args, plan, n):
    if n <= 0:
        return
    start = state["next_msg"]
    ctx = {"plan": plan, "room_ids": state["room_ids"], "seed": 7, "run": state["run"], "only_room": None,
           "nrooms_live": state["rooms_live"]}
    log(f"[growth] {n} messages")
    parallel(srv.port, state["as_token"], "msg", (start, start + n), args, ctx)
    state["next_msg"] = start + n


# ----------------------------------------------------------------------------- printing

METRICS = [
    ("events", "events", "{:.0f}"),
    ("initial_sync_ms", "initial sync ms", "{:.1f}"),
    ("initial_sync_cpu_ms", "initial sync CPU ms", "{:.1f}"),
    ("initial_sync_first_ms", "1st initial sync ms", "{:.1f}"),
    ("initial_sync_first_cpu_ms", "1st init sync CPU ms", "{:.1f}"),
    ("initial_sync_bytes", "initial sync bytes", "{:.0f}"),
    ("incr_sync_ms", "incr sync ms", "{:.2f}"),
    ("incr_sync_cpu_ms", "incr sync CPU ms", "{:.2f}"),
    ("messages_1000_ms", "/messages 1000 ms", "{:.1f}"),
    ("messages_1000_cpu_ms", "/messages 1000 CPU ms", "{:.1f}"),
    ("send_cpu_ms_per_event", "send CPU ms/event", "{:.3f}"),
    ("send_total_cpu_ms_per_event", "send+push+AS CPU ms/ev", "{:.3f}"),
    ("send_p50_ms", "send p50 ms", "{:.2f}"),
    ("send_req_per_s", "send req/s", "{:.0f}"),
    ("db_bytes", "DB MiB", None),
    ("rss_kb", "RSS MiB", None),
    ("loadavg", "load average", "{:.1f}"),
    ("probe_unread_total", "probe unread (sum)", "{:.0f}"),
    ("probe_rooms_unread", "probe rooms w/ unread", "{:.0f}"),
    ("push_room_rows", "push_room_notif. rows", "{:.0f}"),
    ("push_rows", "push_notif. rows", "{:.0f}"),
]


def fmt(key, f, v):
    if v is None:
        return "-"
    if f is None:
        return f"{v / (1024 * 1024 if key == 'db_bytes' else 1024):.1f}"
    return f.format(v)


def print_curve(stages):
    names = [s["stage"] for s in stages]
    w = max(12, max(len(n) for n in names) + 2)
    print(f"{'metric':<24}" + "".join(f"{n:>{w}}" for n in names) + f"{'last/first':>12}")
    for key, label, f in METRICS:
        vals = [s.get(key) for s in stages]
        ratio = ""
        if vals and vals[0] and vals[-1] is not None:
            ratio = f"{vals[-1] / vals[0]:.2f}x"
        print(f"{label:<24}" + "".join(f"{fmt(key, f, v):>{w}}" for v in vals) + f"{ratio:>12}")
    print()
    print("ratio to stage 0 (the goal: each cost metric within 2x)")
    for key, label, f in METRICS[1:14]:
        vals = [s.get(key) for s in stages]
        if not vals[0]:
            continue
        print(f"{label:<24}" + "".join(f"{(v / vals[0] if v is not None else float('nan')):>{w}.2f}" for v in vals))


# ----------------------------------------------------------------------------- main flows

def start_server(binary, workdir, state, as_port, log_level):
    reg = write_registration(workdir, state, as_port)
    srv = Server(binary, workdir, log_level, appservice_files=[reg])
    return srv


def run_load(args):
    binary = os.path.abspath(args.binary.split(",")[0])
    data_root = args.data or f"/work/growth-data/run-{args.events}-{time.strftime('%H%M%S')}"
    if os.path.exists(data_root):
        raise BenchError(f"{data_root} exists (use --reuse to measure it, or another --data)")
    os.makedirs(data_root)
    state = {"as_token": "as_growth_" + os.urandom(12).hex(), "hs_token": "hs_growth_" + os.urandom(12).hex(),
             "run": os.urandom(4).hex(), "users": args.users, "rooms": args.rooms, "joins": args.joins,
             "binary": binary, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "exclusive": args.exclusive}
    plan = Plan(args.users, args.rooms, args.joins)
    appservice = NullAppservice()
    srv = start_server(binary, data_root, state, appservice.port, args.log_level)
    stages = []
    results = {"binary": binary, "args": vars(args), "cpus": os.cpu_count(), "stages": stages}
    try:
        srv.start()
        log(f"[growth] server on {HOST}:{srv.port}, data in {data_root}")
        t_load0 = time.perf_counter()
        load_stage0(srv, state, args, plan)
        targets = [int(args.events * float(f)) for f in args.stages.split(",")]
        plan_stages = [("empty", None)]
        for t in targets:
            plan_stages.append((f"{t // 1000}k" if t < 1_000_000 else f"{t / 1e6:g}M", t))
        first_rest = True
        for name, target in plan_stages:
            if target is not None:
                t0 = time.perf_counter()
                if first_rest:
                    load_rest_of_setup(srv, state, args, plan)
                    first_rest = False
                have = db_facts(os.path.join(data_root, "data")).get("events", 0)
                load_messages(srv, state, args, plan, target - have)
                log(f"[growth] stage {name} loaded in {time.perf_counter() - t0:.0f} s")
            facts = db_facts(os.path.join(data_root, "data"))
            if target is not None:  # named by what it holds (the set-up alone may pass a small target)
                ev = facts.get("events", 0)
                name = f"{ev // 1000}k" if ev < 1_000_000 else f"{ev / 1e6:.2g}M"
            log(f"[growth] measuring stage {name}...")
            m = {"stage": name}
            m.update(facts)
            m.update(measure(srv, state, args))
            m.update({k: v for k, v in db_facts(os.path.join(data_root, "data")).items() if k == "db_bytes"})
            stages.append(m)
            log("[growth]   " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items()))
            with open(os.path.join(data_root, "state.json"), "w") as f:
                json.dump(state, f)
            with open(args.out or os.path.join(data_root, "growth-results.json"), "w") as f:
                json.dump(results, f, indent=1)  # so far: a run stopped early keeps its curve
        results["load_seconds"] = time.perf_counter() - t_load0
    finally:
        srv.stop(timeout=60)
        appservice.close()
    state["stages"] = stages
    with open(os.path.join(data_root, "state.json"), "w") as f:
        json.dump(state, f)
    print_curve(stages)
    out = args.out or os.path.join(data_root, "growth-results.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    log(f"[growth] results in {out}; data kept in {data_root} (--reuse {data_root})")


def run_more(args):
    """--reuse DIR --more N: load up to N more messages into DIR itself (for at most
    --max-load-seconds), with the first --binary, then measure one stage and save it."""
    src = os.path.abspath(args.reuse)
    with open(os.path.join(src, "state.json")) as f:
        state = json.load(f)
    binary = os.path.abspath(args.binary.split(",")[0])
    plan = Plan(state["users"], state["rooms"], state["joins"])
    appservice = NullAppservice()
    srv = start_server(binary, src, state, appservice.port, args.log_level)
    try:
        srv.start(ready_timeout=300)
        start = state["next_msg"]
        ctx = {"plan": plan, "room_ids": state["room_ids"], "seed": 7, "run": state["run"], "only_room": None,
               "nrooms_live": state["rooms_live"], "deadline": time.time() + args.max_load_seconds}
        log(f"[growth] up to {args.more} more messages, for at most {args.max_load_seconds} s")
        try:
            parallel(srv.port, state["as_token"], "msg", (start, start + args.more), args, ctx)
        finally:
            state["next_msg"] = start + args.more
            with open(os.path.join(src, "state.json"), "w") as f:
                json.dump(state, f)
        facts = db_facts(os.path.join(src, "data"))
        ev = facts.get("events", 0)
        m = {"stage": f"{ev // 1000}k" if ev < 1_000_000 else f"{ev / 1e6:.2g}M"}
        m.update(facts)
        m.update(measure(srv, state, args))
        state.setdefault("stages", []).append(m)
        log("[growth]   " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items()))
    finally:
        srv.stop(timeout=60)
        appservice.close()
    with open(os.path.join(src, "state.json"), "w") as f:
        json.dump(state, f)
    print_curve(state["stages"])


def run_reuse(args):
    src = os.path.abspath(args.reuse)
    with open(os.path.join(src, "state.json")) as f:
        state = json.load(f)
    binaries = [os.path.abspath(b) for b in args.binary.split(",")]
    per = {b: [] for b in binaries}
    appservice = NullAppservice()
    try:
        for rnd in range(args.rounds):
            order = binaries if rnd % 2 == 0 else list(reversed(binaries))
            for b in order:
                work = tempfile.mkdtemp(prefix="growth-reuse-", dir=os.path.dirname(src))
                try:
                    srv = start_server(b, work, state, appservice.port, args.log_level)
                    shutil.rmtree(os.path.join(work, "data"), ignore_errors=True)
                    shutil.copytree(os.path.join(src, "data"), os.path.join(work, "data"))
                    startup = srv.start(ready_timeout=300)
                    try:
                        log(f"[growth] round {rnd + 1}: {b}")
                        if args.pushers:
                            parallel(srv.port, state["as_token"], "pusher", list(range(args.pushers)), args,
                                     {"gateway_port": appservice.port})
                        m = {"stage": f"r{rnd + 1}", "startup_ms": startup}
                        m.update(db_facts(os.path.join(work, "data")))
                        m.update(measure(srv, state, args))
                        per[b].append(m)
                        log("[growth]   " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                      for k, v in m.items()))
                    finally:
                        srv.stop(timeout=60)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
    finally:
        appservice.close()
    keys = [k for k, _, _ in METRICS if k not in ("events",)] + ["startup_ms"]
    print(f"{'metric':<26}" + "".join(f"{os.path.basename(os.path.dirname(b)) or b:>22}" for b in binaries) +
          ("   ratio 2nd/1st" if len(binaries) > 1 else ""))
    summary = {}
    for k in keys:
        vals = [med([m[k] for m in per[b] if m.get(k) is not None]) for b in binaries]
        summary[k] = vals
        line = f"{k:<26}" + "".join(f"{v:>22.3f}" for v in vals)
        if len(binaries) > 1 and vals[0]:
            line += f"   {vals[1] / vals[0]:.3f}"
        print(line)
    out = args.out or os.path.join(src, f"reuse-{time.strftime('%H%M%S')}.json")
    with open(out, "w") as f:
        json.dump({"binaries": binaries, "rounds": per, "medians": summary}, f, indent=1)
    log(f"[growth] results in {out}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default="/work/baseline-12/trestle", help="server binary (with --reuse: A[,B])")
    p.add_argument("--events", type=int, default=1_000_000, help="events at the last stage (quick: 100000)")
    p.add_argument("--stages", default="0.01,0.1,0.3,1",
                   help="stage sizes after 'empty', as fractions of --events (default 0.01,0.1,0.3,1)")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--rooms", type=int, default=1_000)
    p.add_argument("--joins", type=int, default=2, help="rooms each user is in (members per room = users*joins/rooms)")
    p.add_argument("--probe-rooms", type=int, default=200)
    p.add_argument("--procs", type=int, default=3, help="loader processes")
    p.add_argument("--threads", type=int, default=8, help="keep-alive connections per loader process")
    p.add_argument("--samples", type=int, default=5, help="initial sync and /messages samples per stage")
    p.add_argument("--incr-samples", type=int, default=20)
    p.add_argument("--send-seconds", type=int, default=5)
    p.add_argument("--data", help="where to keep the loaded server (default /work/growth-data/run-EVENTS-TIME)")
    p.add_argument("--reuse", help="a kept data dir: measure only, on a copy, for each --binary")
    p.add_argument("--rounds", type=int, default=2, help="with --reuse: rounds, alternating binaries")
    p.add_argument("--pushers", type=int, default=0,
                   help="with --reuse: give the first N users an HTTP pusher (to a local null gateway) first")
    p.add_argument("--more", type=int, default=0,
                   help="with --reuse: load this many more messages into the kept data (first --binary), measure")
    p.add_argument("--max-load-seconds", type=float, default=3600, help="with --more: stop loading after this")
    p.add_argument("--exclusive", action="store_true",
                   help="load with an exclusive user namespace (the old behaviour: no push evaluation, no "
                        "unread counts for the loaded users); kept in state.json for --reuse")
    p.add_argument("--out", help="JSON results file")
    p.add_argument("--log-level", default="warn")
    args = p.parse_args()
    if not shutil.which("wrk"):
        raise BenchError("wrk is not installed (apt-get install wrk)")
    if args.reuse and args.more:
        run_more(args)
    elif args.reuse:
        run_reuse(args)
    else:
        run_load(args)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        log(f"[growth] FAILED: {e}")
        sys.exit(1)
