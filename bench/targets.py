#!/usr/bin/python3
"""Issue 12's targets, each measured in one run next to a ceiling (stdlib only; Debian's python3).

  targets.py [--binary build/trestle] [--only send,wake,appservice] [--out FILE.json] [--markdown]
  targets.py --compare A B [--rounds N] [--only ...]   two binaries alternately, ratios B/A

Sections (each starts its own fresh server; see bench/README.md, "Issue 12 targets"):
  send        nginx (the ceiling: the same PUTs answered with a fixed JSON body) and Trestle, side by
              side, through the same wrk script: one room of 32 members at 1/8/32 connections, then
              grown to 1,000 and 10,000 members (32 connections); server CPU per event; start-up on an
              empty and on the populated data dir; VmRSS 10 s after the load stops, and the peak.
  wake        /sync wake-up with no other long-poll, with 200 idle ones (other users, another room)
              and with 200 in the same room (woken by every message, re-armed); KiB per idle
              long-poll with 1,000 open.
  appservice  send-to-receipt latency at the appservice's listener while wrk sends at full speed;
              a 100,000-event backlog (listener answering 500) drained once it answers 200.

Members are made cheaply: an appservice with `url: null` (it is pushed nothing) registers them
(m.login.application_service: no password hashing) and joins them by identity assertion.
Exit status: 0 ran (whether targets are met or not: see the table), 1 a section failed, 2 ran but saw
errors (a non-2xx send, a long-poll not woken with the event, an event the appservice did not get).
Only 127.0.0.1 is contacted; every loop is bounded in count and time.
"""
import argparse
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trestle_bench as tb  # noqa: E402  (the harness's server, client, wrk and listener helpers)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy", "nginx"))
import trestle_nginx  # noqa: E402  (the nginx error log and process tree readers)

from trestle_bench import CLIENT, HOST, BenchError, Client, log, percentile, q, mono  # noqa: E402

NGINX = "/usr/sbin/nginx"
WRK_TIMEOUT_S = 30  # a send into a very large room may take seconds on a slow build: slow, not an error
MEMBERS_AS = "bench-members"
# Trestle's event ids are '$' + 43 characters: the ceiling answers a body of the same size.
CEILING_BODY = '{"event_id":"${dollar}ceiling000000000000000000000000000000000000"}'


# ----------------------------------------------------------------------------- the ceiling: nginx

class Nginx:
    """Debian's nginx as a non-root process (nobody) on a free loopback port, answering every
    PUT under /_matrix/client/v3/rooms/ with 200 and a fixed event id, keep-alive without limit."""

    def __init__(self, workers=2):
        if not os.access(NGINX, os.X_OK):
            raise BenchError(f"no {NGINX}: run bench/install-deps.sh")
        self.dir = tempfile.mkdtemp(prefix="trestle-bench-nginx-")
        self.port = tb.free_port()
        conf = f"""daemon off;
master_process on;
worker_processes {workers};
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {self.dir}/body;
  proxy_temp_path {self.dir}/proxy;
  fastcgi_temp_path {self.dir}/fastcgi;
  uwsgi_temp_path {self.dir}/uwsgi;
  scgi_temp_path {self.dir}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  geo $dollar {{ default "$"; }}
  server {{
    listen {HOST}:{self.port};
    default_type application/json;
    location /_matrix/client/v3/rooms/ {{
      if ($request_method != PUT) {{ return 405; }}
      return 200 '{CEILING_BODY}';
    }}
    location / {{ return 404; }}
  }}
}}
"""
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        if os.geteuid() == 0:  # never as root: the workers and the master run as nobody
            shutil.chown(self.dir, "nobody")
            kw = {"user": "nobody", "group": "nogroup", "extra_groups": []}
        else:
            kw = {}
        self.proc = subprocess.Popen([NGINX, "-p", self.dir, "-c", self.conf, "-e", f"{self.dir}/error.log"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     **kw)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"nginx exited with {self.proc.returncode}: {self.error_log()}")
            try:
                c = Client(self.port, timeout=2)
                c.send_request("PUT", f"{CLIENT}/rooms/x/send/m.room.message/1", {})
                st, body = c.read_response(expect=None)
                c.close()
                if st == 200 and body.get("event_id", "").startswith("$"):
                    return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise BenchError(f"nginx not ready: {self.error_log()}")

    def error_log(self):
        return trestle_nginx.error_log_tail(self.dir)

    def pids(self):
        """The master and its workers."""
        return trestle_nginx.process_tree(self.proc)

    def cpu_ms(self):
        total = 0.0
        for pid in self.pids():
            try:
                total += tb.proc_cpu_ms(pid)
            except OSError:
                pass
        return total

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # our own child, by pid
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


# ----------------------------------------------------------------------------- shared helpers

def settled(port, token, limit_s=60.0):
    """Waits until the stream position has not moved for 0.5 s (the requests wrk left in flight
    have committed), at most limit_s."""
    last, still_since, end = None, time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() < end:
        pos = tb.stream_position(port, token)
        if pos != last:
            last, still_since = pos, time.monotonic()
        elif time.monotonic() - still_since >= 0.5:
            return
        time.sleep(0.1)


def wrk_measure(port, cpu_fn, tokens, room_id, conns, args, tag, settle=None):
    """A warm-up, then one wrk run of send.lua; req/s, latency, CPU ms per 2xx (cpu_fn: the server's).
    When the warm-up shows fewer than ~100 requests would complete in --duration (a very large room
    on a slow build), the run lasts up to --max-duration instead. settle(): waits for in-flight
    requests to finish, after the warm-up and after the run."""
    threads = min(conns, args.wrk_threads)
    warm = {"ok_2xx": 0, "non_2xx": 0}
    if args.warmup > 0:
        warm, _ = tb.run_wrk(port, tokens, room_id, threads, conns, args.warmup, tag + "w", WRK_TIMEOUT_S)
    duration, res = args.duration, None
    for attempt in range(2):  # a run of fewer than 100 sends was a warm-up: again, long enough for 100
        if settle:
            settle()
        cpu0 = cpu_fn()
        res, _ = tb.run_wrk(port, tokens, room_id, threads, conns, duration, f"{tag}r{attempt}", WRK_TIMEOUT_S)
        cpu1 = cpu_fn()
        if res["ok_2xx"] >= 100 or duration >= args.max_duration:
            break
        warm = {"ok_2xx": warm["ok_2xx"] + res["ok_2xx"], "non_2xx": warm["non_2xx"] + res["non_2xx"]}
        rate = res["ok_2xx"] / (res["duration_us"] / 1e6)
        duration = int(min(args.max_duration, max(duration, 1.2 * 100 / max(rate, 1e-3))))
    if settle:
        settle()
    dur = res["duration_us"] / 1e6
    out = {
        "req_per_s": res["requests"] / dur,
        "p50_ms": res["lat_p50_us"] / 1000.0,
        "p99_ms": res["lat_p99_us"] / 1000.0,
        "cpu_ms_per_event": (cpu1 - cpu0) / max(1, res["ok_2xx"]),
        "cores": (cpu1 - cpu0) / 1000.0 / dur,
        "requests": res["requests"],
        "duration_s": dur,
        "non_2xx": res["non_2xx"] + warm["non_2xx"],
        "ok_2xx_with_warmup": res["ok_2xx"] + warm["ok_2xx"],
        # A send not answered within WRK_TIMEOUT_S is slow, not wrong (it may still commit): reported
        # apart. Connect/read/write errors are errors.
        "socket_errors": res["err_connect"] + res["err_read"] + res["err_write"],
        "timeouts": res["err_timeout"],
    }
    if res["non_2xx"]:
        out["last_bad"] = f"{res['last_bad_status']} {res['last_bad_body']}"
    return out


def parallel(port, token, n, job, conns, deadline):
    """job(client, i) for i in 0..n-1 over `conns` threads with a keep-alive connection each, until
    all are done or the deadline passes. Returns how many were done (the first ones, in order)."""
    lock = threading.Lock()
    state = {"next": 0, "done": 0, "error": None}

    def worker():
        c = Client(port, token, timeout=120)
        try:
            while True:
                with lock:
                    if state["error"] or state["next"] >= n or time.monotonic() > deadline:
                        return
                    i = state["next"]
                    state["next"] += 1
                job(c, i)
                with lock:
                    state["done"] += 1
        except Exception as e:  # reported below: setup must not fail silently
            with lock:
                state["error"] = state["error"] or e
        finally:
            c.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic()) + 150)
    if state["error"]:
        raise BenchError(f"setup: {type(state['error']).__name__}: {state['error']}")
    return state["done"]


def as_register(port, as_token, localpart, login):
    """A user in the appservice's namespace, no password: (access token or None, user id)."""
    c = Client(port, as_token)
    try:
        r = c.call("POST", CLIENT + "/register", {"type": "m.login.application_service", "username": localpart,
                                                   "inhibit_login": not login})
        return r.get("access_token"), r["user_id"]
    finally:
        c.close()


def add_members(port, as_token, room_id, prefix, first, count, conns, deadline):
    """Registers @{prefix}{i} for i in first..first+count-1 and joins each to the room by identity
    assertion, over `conns` connections. Returns how many joined before the deadline."""
    def job(c, i):
        name = f"{prefix}{first + i}"
        r = c.call("POST", CLIENT + "/register", {"type": "m.login.application_service", "username": name,
                                                   "inhibit_login": True})
        c.call("POST", f"{CLIENT}/rooms/{q(room_id)}/join?user_id={q(r['user_id'])}", {})
    return parallel(port, as_token, count, job, conns, deadline)


def write_registration(path, as_id, url, as_token, hs_token, regex, exclusive=True):
    with open(path, "w") as f:
        f.write(f"id: {as_id}\nurl: {json.dumps(url) if url else 'null'}\nas_token: \"{as_token}\"\n"
                f"hs_token: \"{hs_token}\"\nsender_localpart: {as_id.replace('-', '_')}_bot\nrate_limited: false\n"
                f"receive_ephemeral: false\nnamespaces:\n  users:\n    - exclusive: {str(exclusive).lower()}\n      regex: \"{regex}\"\n"
                "  aliases: []\n  rooms: []\n")


def members_server(binary, workdir, args, extra_files=()):
    """A fresh server with the member-making appservice (url null) registered: (server, its as_token)."""
    as_token = "as_members_" + os.urandom(12).hex()
    reg = os.path.join(workdir, "members-appservice.yaml")
    # Not exclusive: the members are ordinary users that the appservice happened to create (a server
    # may skip push rules for users an appservice owns exclusively, as Synapse does).
    write_registration(reg, MEMBERS_AS, None, as_token, "hs_members_" + os.urandom(12).hex(), "@bench_.*:localhost",
                       exclusive=False)
    return tb.Server(binary, workdir, args.log_level, appservice_files=[reg, *extra_files]), as_token


def senders_and_room(srv, as_token, n, name):
    """n users with access tokens (registered by the appservice); the first creates a public room,
    the others join it. Returns (tokens, room_id)."""
    users = [as_register(srv.port, as_token, f"bench_{name}{i}", login=True) for i in range(n)]
    c = Client(srv.port, users[0][0])
    room_id = c.call("POST", CLIENT + "/createRoom", {"preset": "public_chat", "name": name})["room_id"]
    c.close()
    for token, _ in users[1:]:
        c = Client(srv.port, token)
        c.call("POST", f"{CLIENT}/rooms/{q(room_id)}/join", {})
        c.close()
    return [t for t, _ in users], room_id


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            raise BenchError(f"RLIMIT_NOFILE hard limit {hard} < {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# ----------------------------------------------------------------------------- section: send

def section_send(binary, workdir, args, errors):
    out = {}
    srv, as_token = members_server(binary, workdir, args)
    ngx = None
    try:
        out["startup_ms"] = srv.start()
        time.sleep(0.5)
        out["rss_after_start_kb"] = tb.proc_status(srv.pid)["VmRSS"]
        ngx = Nginx(args.nginx_workers)
        tokens, room_id = senders_and_room(srv, as_token, args.senders, "s")
        tag = f"t{os.getpid()}x{int(time.time() * 1000)}"
        members = args.senders
        conns_all = [int(c) for c in args.connections.split(",")]
        sizes = [int(m) for m in args.members.split(",")]
        for size in sizes:
            if size > members:
                t0, cpu0 = time.monotonic(), tb.proc_cpu_ms(srv.pid)
                deadline = t0 + args.setup_max_seconds
                done = add_members(srv.port, as_token, room_id, "bench_m", members, size - members,
                                   args.setup_conns, deadline)
                members += done
                out[f"m{size}_setup_s"] = time.monotonic() - t0
                out[f"m{size}_setup_joins_per_s"] = done / max(1e-3, time.monotonic() - t0)
                out[f"m{size}_setup_cpu_ms_per_join"] = (tb.proc_cpu_ms(srv.pid) - cpu0) / max(1, done)
                if members < size:
                    log(f"[targets] only {members}/{size} members joined within {args.setup_max_seconds} s; "
                        "measuring with those")
            out[f"m{size}_members"] = members
            for conns in (conns_all if size == sizes[0] else [max(conns_all)]):
                key = f"m{size}_c{conns}"
                log(f"[targets] send: {members} members, {conns} connections: nginx, then trestle...")
                ceil = wrk_measure(ngx.port, ngx.cpu_ms, ["ceiling"], "!ceiling:localhost", conns, args,
                                   tag + key + "n")
                pos0 = tb.stream_position(srv.port, tokens[0])
                res = wrk_measure(srv.port, lambda: tb.proc_cpu_ms(srv.pid), tokens, room_id, conns, args,
                                  tag + key, settle=lambda: settled(srv.port, tokens[0]))
                pos1 = tb.stream_position(srv.port, tokens[0])
                srv.check_alive()
                for k in ("req_per_s", "cpu_ms_per_event", "p50_ms", "p99_ms", "non_2xx", "socket_errors"):
                    out[f"ceiling_{key}_{k}"] = ceil[k]
                for k in ("req_per_s", "cpu_ms_per_event", "p50_ms", "p99_ms", "cores", "requests", "duration_s",
                          "non_2xx", "socket_errors", "timeouts"):
                    out[f"send_{key}_{k}"] = res[k]
                out[f"send_{key}_vs_ceiling"] = res["req_per_s"] / ceil["req_per_s"]
                out[f"send_{key}_cpu_vs_ceiling"] = res["cpu_ms_per_event"] / max(1e-9, ceil["cpu_ms_per_event"])
                if pos0 is not None and pos1 is not None:
                    # Every 200 is an event (a few more may commit after wrk stops mid-request).
                    out[f"send_{key}_events_stored"] = pos1 - pos0
                    if pos1 - pos0 < res["ok_2xx_with_warmup"]:
                        errors.append(f"send {key}: {res['ok_2xx_with_warmup']} answered 200 but only "
                                      f"{pos1 - pos0} events stored")
                if res["timeouts"]:
                    log(f"[targets] send {key}: {res['timeouts']} sends not answered within {WRK_TIMEOUT_S} s")
                if res["non_2xx"] or res["socket_errors"]:
                    errors.append(f"send {key}: {res['non_2xx']} non-2xx, {res['socket_errors']} socket errors "
                                  f"{res.get('last_bad', '')}")
                if ceil["non_2xx"] or ceil["socket_errors"]:
                    errors.append(f"ceiling {key}: {ceil['non_2xx']} non-2xx, {ceil['socket_errors']} socket errors")
        t_stop = time.monotonic()
        out["rss_at_load_end_kb"] = tb.proc_status(srv.pid)["VmRSS"]
        time.sleep(max(0.0, t_stop + args.rss_wait - time.monotonic()))
        st = tb.proc_status(srv.pid)
        out["rss_10s_after_load_kb"] = st["VmRSS"]
        out["rss_peak_kb"] = st["VmHWM"]
        out["shutdown_ms"] = srv.stop()
        out["restart_ms"] = srv.start()  # on the populated data dir
        out["db_bytes"] = sum(os.path.getsize(os.path.join(workdir, "data", f))
                              for f in os.listdir(os.path.join(workdir, "data")))
    finally:
        srv.stop()
        if ngx is not None:
            ngx.stop()
    return out


# ----------------------------------------------------------------------------- section: wake

class Polls:
    """Raw /sync long-polls on non-blocking sockets, each re-armable on its keep-alive connection."""

    def __init__(self, port):
        self.port = port
        self.sel = selectors.DefaultSelector()
        self.polls = {}  # socket -> [RawPoll, token]

    def open(self, token, since, timeout_ms=30000, sock=None):
        if sock is None:
            sock = socket.create_connection((HOST, self.port), timeout=10)
        sock.setblocking(True)
        sock.sendall((f"GET {CLIENT}/sync?since={q(since)}&timeout={timeout_ms}&set_presence=offline HTTP/1.1\r\n"
                      f"Host: {HOST}:{self.port}\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
        sock.setblocking(False)
        p = tb.RawPoll(sock)
        if sock in self.polls:
            self.polls[sock][0] = p
            self.sel.modify(sock, selectors.EVENT_READ, p)
        else:
            self.polls[sock] = [p, token]
            self.sel.register(sock, selectors.EVENT_READ, p)
        return p

    def collect(self, timeout):
        """RawPolls that completed within `timeout` s (a zero timeout only looks)."""
        done = []
        for key, _ in self.sel.select(timeout=timeout):
            p = key.data
            if p.done_at is None and p.feed(time.perf_counter()):
                done.append(p)
        return done

    def close(self):
        self.sel.close()
        for s in self.polls:
            s.close()
        self.polls.clear()


def since_of(port, token):
    """A user's sync token. set_presence=offline here and in every /sync of the wake section: a
    user coming online would wake the other members' long-polls with a presence update."""
    c = Client(port, token)
    try:
        return c.call("GET", f"{CLIENT}/sync?timeout=0&set_presence=offline")["next_batch"]
    finally:
        c.close()


def poll_events(p):
    """(next_batch, event ids in every joined room's timeline) of a RawPoll's 200 answer."""
    if p.status != 200:
        return None, []
    body = json.loads(p.body)
    ids = [e.get("event_id") for r in body.get("rooms", {}).get("join", {}).values()
           for e in r.get("timeline", {}).get("events", [])]
    return body.get("next_batch"), ids


def wake_samples(srv, sender, receiver, room_id, args, crowd=None, label=""):
    """Like trestle_bench's sync benchmark: the receiver's /sync is parked, the sender sends, the
    sample is the time to the first byte of the /sync answer. With `crowd` (Polls of other users
    in the same room, {socket: (token, since)}) every sample also wakes them: each must answer
    with the event and is re-armed before the next sample. Returns (wake ms list, extras)."""
    since = since_of(srv.port, receiver)
    a = Client(srv.port, receiver, timeout=40)
    b = Client(srv.port, sender, timeout=40)
    wake, send = [], []
    misses = crowd_missing = crowd_rewakes = 0
    samples = args.crowd_samples if crowd else args.wake_samples
    # The idle crowd's long-polls (timeout 30 s) are not re-armed: that variant must end before.
    deadline = time.monotonic() + (args.crowd_max_seconds if crowd else args.wake_max_seconds)
    try:
        for i in range(samples):
            if time.monotonic() > deadline:
                break
            a.send_request("GET", f"{CLIENT}/sync?since={q(since)}&timeout=30000&set_presence=offline")
            time.sleep(args.park_ms / 1000.0)
            t0 = time.perf_counter()
            b.send_request("PUT", f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/{label}{i}",
                           {"msgtype": "m.text", "body": f"wake {i}"})
            arrived = {}
            sel = selectors.DefaultSelector()
            sel.register(a.conn.sock, selectors.EVENT_READ, "a")
            sel.register(b.conn.sock, selectors.EVENT_READ, "b")
            limit = time.perf_counter() + 35
            while len(arrived) < 2 and time.perf_counter() < limit:
                for key, _ in sel.select(timeout=max(0.0, limit - time.perf_counter())):
                    if key.data not in arrived:
                        arrived[key.data] = time.perf_counter()
                        sel.unregister(key.fileobj)
            sel.close()
            if len(arrived) < 2:
                raise BenchError(f"wake {label} sample {i}: no answer within 35 s")
            event_id = b.read_response()[1]["event_id"]
            body = a.read_response()[1]
            since = body["next_batch"]
            timeline = body.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {}).get("events", [])
            if not any(e.get("event_id") == event_id for e in timeline):
                misses += 1  # woken without the event: an error (reported), caught up untimed
                c = Client(srv.port, receiver)
                since = c.call("GET", f"{CLIENT}/sync?since={q(since)}&timeout=0&set_presence=offline")["next_batch"]
                c.close()
                continue
            wake.append((arrived["a"] - t0) * 1000.0)
            send.append((arrived["b"] - t0) * 1000.0)
            if crowd is not None:
                # Every crowd poll answers with this event (one woken by something else first is
                # re-armed and counted), then is re-armed from its next_batch.
                pending = set(crowd.polls)
                limit = time.monotonic() + 30
                while pending and time.monotonic() < limit:
                    for p in crowd.collect(0.5):
                        nb, ids = poll_events(p)
                        if event_id in ids:
                            pending.discard(p.sock)
                        else:
                            crowd_rewakes += 1
                            crowd.open(crowd.polls[p.sock][1], nb or "", sock=p.sock)
                if pending:
                    crowd_missing += len(pending)
                    raise BenchError(f"wake {label} sample {i}: {len(pending)} crowd long-polls not woken with "
                                     "the event in 30 s")
                for s, (p, token) in list(crowd.polls.items()):
                    crowd.open(token, poll_events(p)[0] or "", sock=s)
                time.sleep(args.crowd_rearm_ms / 1000.0)
    finally:
        a.close()
        b.close()
    srv.check_alive()
    if len(wake) < 10:
        raise BenchError(f"wake {label}: only {len(wake)} samples")
    return wake, {"send_p50_ms": percentile(send, 50), "misses": misses, "crowd_missing": crowd_missing,
                  "crowd_rewakes": crowd_rewakes}


def section_wake(binary, workdir, args, errors):
    n_crowd = args.crowd
    out = {"wake_crowd_count": n_crowd}
    raise_nofile(args.longpolls + n_crowd + 512)
    srv, as_token = members_server(binary, workdir, args)
    crowd = None
    try:
        srv.start()
        (sender, receiver), room_a = senders_and_room(srv, as_token, 2, "w")
        # The crowd: users in room B (quiet), who will later join room A too.
        crowd_users = [as_register(srv.port, as_token, f"bench_c{i}", login=True) for i in range(n_crowd)]
        c = Client(srv.port, crowd_users[0][0])
        room_b = c.call("POST", CLIENT + "/createRoom", {"preset": "public_chat", "name": "quiet"})["room_id"]
        c.close()
        deadline = time.monotonic() + args.setup_max_seconds

        def join(room):
            def job(cl, i):
                cl.call("POST", f"{CLIENT}/rooms/{q(room)}/join?user_id={q(crowd_users[i + 1][1])}", {})
            if parallel(srv.port, as_token, n_crowd - 1, job, args.setup_conns, deadline) < n_crowd - 1:
                raise BenchError("wake: the crowd could not join in time")
        join(room_b)
        for t, _ in crowd_users + [(sender, None), (receiver, None)]:  # a first sync each: any presence
            since_of(srv.port, t)                                       # change happens now, not later
        sinces = [(t, since_of(srv.port, t)) for t, _ in crowd_users]

        # 1. KiB per idle long-poll: 1,000 polls by the crowd's users, in room B; one message wakes all.
        log(f"[targets] wake: {args.longpolls} idle long-polls...")
        time.sleep(1.0)
        before = tb.proc_status(srv.pid)["VmRSS"]
        polls = Polls(srv.port)
        try:
            for i in range(args.longpolls):
                token, since = sinces[i % len(sinces)]
                polls.open(token, since, timeout_ms=60000)
            time.sleep(args.longpoll_settle)
            early = len(polls.collect(0))
            held = tb.proc_status(srv.pid)["VmRSS"]
            c = Client(srv.port, crowd_users[0][0])
            eid = c.call("PUT", f"{CLIENT}/rooms/{q(room_b)}/send/m.room.message/wakeall",
                         {"msgtype": "m.text", "body": "wake all"})["event_id"]
            c.close()
            t0 = time.perf_counter()
            answered = early
            limit = time.monotonic() + 30
            while answered < args.longpolls and time.monotonic() < limit:
                answered += len(polls.collect(0.5))
            woke = [p for p, _ in polls.polls.values() if p.done_at is not None and eid in poll_events(p)[1]]
            out["longpoll_count"] = args.longpolls
            out["longpoll_rss_before_kb"] = before
            out["longpoll_rss_held_kb"] = held
            out["longpoll_kb_per_poll"] = (held - before) / args.longpolls
            out["longpoll_early"] = early
            out["longpoll_woken_with_event"] = len(woke)
            out["longpoll_wake_all_ms"] = (max(p.done_at for p in woke) - t0) * 1000.0 if woke else float("nan")
            if early or len(woke) != args.longpolls:
                errors.append(f"long-polls: {early} answered early, {len(woke)}/{args.longpolls} woken with the event")
        finally:
            polls.close()
        sinces = [(t, since_of(srv.port, t)) for t, _ in crowd_users]

        # 2. Wake-up alone, then with the crowd's idle long-polls open (in room B: nothing wakes them).
        log("[targets] wake: no other long-poll...")
        wake, ex = wake_samples(srv, sender, receiver, room_a, args, label="alone")
        out.update({"wake_alone_p50_ms": percentile(wake, 50), "wake_alone_p99_ms": percentile(wake, 99),
                    "wake_alone_samples": len(wake)})
        misses = ex["misses"]
        log(f"[targets] wake: {n_crowd} idle long-polls in another room...")
        crowd = Polls(srv.port)
        for token, since in sinces:
            crowd.open(token, since)
        time.sleep(1.0)
        wake, ex = wake_samples(srv, sender, receiver, room_a, args, label="idle")
        idle_answered = len(crowd.collect(0))
        crowd.close()
        out.update({"wake_idle_p50_ms": percentile(wake, 50), "wake_idle_p99_ms": percentile(wake, 99),
                    "wake_idle_max_ms": max(wake), "wake_idle_samples": len(wake),
                    "wake_idle_send_p50_ms": ex["send_p50_ms"], "wake_idle_crowd_answered": idle_answered})
        misses += ex["misses"]

        # 3. The crowd in the same room: each message wakes 1 + n_crowd long-polls.
        log(f"[targets] wake: {n_crowd} long-polls in the same room (re-armed after each message)...")
        join(room_a)
        c = Client(srv.port, crowd_users[0][0])
        c.call("POST", f"{CLIENT}/rooms/{q(room_a)}/join", {})
        c.close()
        crowd = Polls(srv.port)
        for token, _ in crowd_users:
            crowd.open(token, since_of(srv.port, token))
        time.sleep(1.0)
        wake, ex = wake_samples(srv, sender, receiver, room_a, args, crowd=crowd, label="crowd")
        out.update({"wake_crowd_p50_ms": percentile(wake, 50), "wake_crowd_p99_ms": percentile(wake, 99),
                    "wake_crowd_max_ms": max(wake), "wake_crowd_samples": len(wake),
                    "wake_crowd_send_p50_ms": ex["send_p50_ms"], "wake_crowd_missing": ex["crowd_missing"],
                    "wake_crowd_rewakes": ex["crowd_rewakes"]})
        misses += ex["misses"]
        out["wake_misses"] = misses
        if misses or ex["crowd_missing"]:
            errors.append(f"wake: {misses} long-polls woken without the event, {ex['crowd_missing']} crowd "
                          "answers without it")
    finally:
        if crowd is not None:
            crowd.close()
        srv.stop()
    return out


# ----------------------------------------------------------------------------- section: appservice

def section_appservice(binary, workdir, args, errors):
    out = {}
    as_token = "as_bench_" + os.urandom(12).hex()
    hs_token = "hs_bench_" + os.urandom(12).hex()
    listener = tb.Listener(hs_token, max_seconds=1800)
    srv = status = None
    try:
        bridge = os.path.join(workdir, "bridge-appservice.yaml")
        write_registration(bridge, tb.AS_ID, listener.url, as_token, hs_token, "@bridged_.*:localhost")
        srv, members_token = members_server(binary, workdir, args, extra_files=[bridge])
        srv.start()
        tokens, room_id = senders_and_room(srv, members_token, args.senders, "a")
        bridged = as_register(srv.port, as_token, "bridged_0", login=False)[1]
        c = Client(srv.port, as_token)
        c.call("POST", f"{CLIENT}/rooms/{q(room_id)}/join?user_id={q(bridged)}", {})
        c.close()
        if args.as_members > 0:  # other members (not the bridge's): its interest check reads them all
            log(f"[targets] appservice: {args.as_members} more members...")
            done = add_members(srv.port, members_token, room_id, "bench_am", 0, args.as_members, args.setup_conns,
                               time.monotonic() + args.setup_max_seconds)
            out["as_room_members"] = args.senders + 1 + done
        status = tb.AsStatus(srv.port, as_token)
        tag = f"a{os.getpid()}x{int(time.time() * 1000)}"
        conns = args.as_connections
        threads = min(conns, args.wrk_threads)
        tb.run_wrk(srv.port, tokens, room_id, threads, conns, 2, tag + "w")
        if tb.wait_caught_up(status, listener, 60)[0] is None:
            raise BenchError("appservice: not caught up 60 s after the warm-up")
        if not listener.snapshot():
            raise BenchError("appservice: no transaction arrived during the warm-up")

        # 1. Send-to-receipt of probe messages, one every --as-probe-gap-ms, while wrk sends at full speed.
        log(f"[targets] appservice: latency while wrk sends ({args.duration} s, {conns} connections)...")
        listener.command("ids probe")
        time.sleep(0.2)
        n_txn0 = len(listener.snapshot())
        pos0 = tb.stream_position(srv.port, tokens[0])
        wrk_result = {}

        def load():
            try:
                wrk_result["res"] = tb.run_wrk(srv.port, tokens, room_id, threads, conns, args.duration, tag)[0]
            except BenchError as e:
                wrk_result["error"] = e
        t_load = threading.Thread(target=load, daemon=True)
        cpu0 = tb.proc_cpu_ms(srv.pid)
        t_load.start()
        time.sleep(1.0)
        probes = []
        pc = Client(srv.port, tokens[0], timeout=30)
        t_end = time.monotonic() + args.duration - 1.5
        for i in range(100000):
            if time.monotonic() > t_end:
                break
            ts = mono()
            pc.send_request("PUT", f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/{tag}p{i}",
                            {"msgtype": "m.text", "body": f"probe {i}"})
            eid = pc.read_response()[1]["event_id"]
            probes.append((ts, mono(), eid))
            time.sleep(args.as_probe_gap_ms / 1000.0)
        pc.close()
        t_load.join(args.duration + 90)
        cpu1 = tb.proc_cpu_ms(srv.pid)
        if "error" in wrk_result or "res" not in wrk_result:
            raise BenchError(f"appservice load: {wrk_result.get('error', 'wrk did not finish')}")
        res = wrk_result["res"]
        if tb.wait_caught_up(status, listener, 60)[0] is None:
            raise BenchError("appservice: not caught up 60 s after the load")
        time.sleep(0.3)
        tb.wait_caught_up(status, listener, 60)
        pos1 = tb.stream_position(srv.port, tokens[0])
        lat, after_reply, missing_probes = [], [], 0
        for ts, t_reply, eid in probes:
            t_arr = listener.wait_event(eid, timeout=5)
            if t_arr is None:
                missing_probes += 1
            else:
                lat.append((t_arr - ts) * 1000.0)
                after_reply.append((t_arr - t_reply) * 1000.0)
        txns = listener.snapshot()[n_txn0:]
        delivered = sum(t[3] for t in txns)
        stored = pos1 - pos0 if pos0 is not None and pos1 is not None else -1
        out.update({
            "as_load_send_req_per_s": res["requests"] / (res["duration_us"] / 1e6),
            "as_load_send_non_2xx": res["non_2xx"],
            "as_load_probes": len(probes),
            "as_load_latency_p50_ms": percentile(lat, 50) if lat else float("nan"),
            "as_load_latency_p99_ms": percentile(lat, 99) if lat else float("nan"),
            "as_load_latency_max_ms": max(lat) if lat else float("nan"),
            "as_load_probe_send_p50_ms": percentile([(t1 - t0) * 1000.0 for t0, t1, _ in probes], 50),
            # From the probe's 200 (its commit was before): the sender's part of the latency, less
            # of the send path's (negative when the transaction came before the answer).
            "as_load_receipt_after_reply_p50_ms": percentile(after_reply, 50) if after_reply else float("nan"),
            "as_load_receipt_after_reply_p99_ms": percentile(after_reply, 99) if after_reply else float("nan"),
            "as_load_events_stored": stored,
            "as_load_events_delivered": delivered,
            "as_load_events_per_txn": delivered / max(1, len(txns)),
            "as_load_server_cpu_ms_per_event": (cpu1 - cpu0) / max(1, delivered),
        })
        if res["non_2xx"] or missing_probes or stored != delivered:
            errors.append(f"appservice load: {res['non_2xx']} non-2xx, {missing_probes} probes not delivered, "
                          f"{stored} events stored vs {delivered} delivered")

        # 2. Backlog: the listener answers 500 while --as-backlog events are sent, then 200 again.
        log(f"[targets] appservice: {args.as_backlog} events sent while the listener answers 500...")
        listener.command("ids 0")
        listener.command("fail 1")
        time.sleep(0.2)
        posb0 = tb.stream_position(srv.port, tokens[0])
        rate = max(100.0, out["as_load_send_req_per_s"])
        t_fill = time.monotonic()
        backlog = 0
        for i in range(100):
            left = args.as_backlog - backlog
            if left <= 0 or time.monotonic() - t_fill > args.as_backlog_max_seconds:
                break
            d = int(min(20, max(1, left / rate + 0.5)))
            r, _ = tb.run_wrk(srv.port, tokens, room_id, threads, conns, d, f"{tag}b{i}")
            if r["non_2xx"]:
                errors.append(f"appservice backlog sends: {r['non_2xx']} non-2xx")
            time.sleep(1.0)  # requests wrk left in flight commit now, inside the count
            backlog = tb.stream_position(srv.port, tokens[0]) - posb0
        fill_s = time.monotonic() - t_fill
        # The drain is measured alone: work the sends left behind (push rules, notifications)
        # finishes first, so that its CPU and writes are not counted as the drain's.
        t_quiet = time.monotonic()
        while time.monotonic() - t_quiet < args.as_settle_max_seconds:
            c0 = tb.proc_cpu_ms(srv.pid)
            time.sleep(0.5)
            if tb.proc_cpu_ms(srv.pid) - c0 < 50.0:  # under 10 % of a core
                break
        out["as_backlog_settle_s"] = time.monotonic() - t_quiet
        n_txn1 = len(listener.snapshot())
        th0, cpu0, lcpu0 = tb.thread_cpu_ms(srv.pid), tb.proc_cpu_ms(srv.pid), listener.cpu_ms()
        n_ok = len(listener.ok_again)
        listener.command("fail 0")
        with listener.cond:
            listener.cond.wait_for(lambda: len(listener.ok_again) > n_ok, timeout=10)
            if len(listener.ok_again) <= n_ok:
                raise BenchError("the listener did not confirm 'fail 0'")
            t_ok = listener.ok_again[n_ok]
        # A bridge that comes back makes a request (here whoami): the homeserver ends its backoff.
        c = Client(srv.port, as_token)
        c.call("GET", CLIENT + "/account/whoami")
        c.close()

        def got():
            return sum(t[3] for t in listener.txns[n_txn1:])
        with listener.cond:
            listener.cond.wait_for(lambda: got() >= backlog, timeout=args.as_drain_timeout)
            txns = listener.txns[n_txn1:]
        t_drained = mono()
        cpu1, lcpu1, th1 = tb.proc_cpu_ms(srv.pid), listener.cpu_ms(), tb.thread_cpu_ms(srv.pid)
        drained = sum(t[3] for t in txns)
        span = (txns[-1][1] - t_ok) if txns else float("nan")
        out.update({
            "as_backlog_events": backlog,
            "as_backlog_fill_s": fill_s,
            "as_backlog_failed_attempts": len(listener.failed),
            "as_backlog_delivered": drained,
            "as_drain_s": span,
            "as_drain_first_txn_ms": (txns[0][1] - t_ok) * 1000.0 if txns else float("nan"),
            "as_drain_events_per_s_after_first": ((drained - txns[0][3]) / (txns[-1][1] - txns[0][1])
                                                  if len(txns) > 1 and txns[-1][1] > txns[0][1] else float("nan")),
            "as_drain_events_per_s": drained / span if txns and span > 0 else float("nan"),
            "as_drain_events_per_txn": drained / max(1, len(txns)),
            "as_drain_server_cpu_us_per_event": (cpu1 - cpu0) * 1000.0 / max(1, drained),
            "as_drain_listener_cores": (lcpu1 - lcpu0) / 1000.0 / max(1e-3, t_drained - t_ok),
            "as_drain_busiest_threads_cores": tb.busiest_threads(th0, th1, max(1e-3, t_drained - t_ok)),
        })
        if drained != backlog:
            errors.append(f"appservice backlog: {backlog} events stored while held back, {drained} delivered "
                          f"after the release ({'missing' if drained < backlog else 'more than stored'})")
        with listener.cond:
            dups = len(listener.txns) - len({t[2] for t in listener.txns})
        if dups or listener.bad:
            errors.append(f"appservice: {dups} duplicate transactions, bad requests {listener.bad[:1]}")
        srv.check_alive()
    finally:
        if status is not None:
            status.close()
        if srv is not None:
            srv.stop()
        listener.close()
    return out


# ----------------------------------------------------------------------------- targets and report

SECTIONS = {"send": section_send, "wake": section_wake, "appservice": section_appservice}

# (metric, target description, test) for the table; None: reported, no target.
TARGETS = [
    ("send_m32_c32_vs_ceiling", ">= 0.35 of nginx", lambda v: v >= 0.35),
    ("send_m32_c32_cpu_ms_per_event", "<= 0.05 ms", lambda v: v <= 0.05),
    ("send_m1000_c32_cpu_ms_per_event", "<= 0.15 ms", lambda v: v <= 0.15),
    ("send_m10000_c32_cpu_ms_per_event", "(report)", None),
    ("wake_idle_p99_ms", "< 5 ms", lambda v: v < 5),
    ("wake_crowd_p99_ms", "< 5 ms", lambda v: v < 5),
    ("longpoll_kb_per_poll", "< 10 KiB", lambda v: v < 10),
    ("as_load_latency_p50_ms", "< 5 ms", lambda v: v < 5),
    ("as_load_latency_p99_ms", "< 20 ms", lambda v: v < 20),
    ("as_drain_events_per_s", ">= 50,000/s", lambda v: v >= 50000),
    ("rss_10s_after_load_kb", "< 30 MiB", lambda v: v < 30 * 1024),
    ("startup_ms", "< 50 ms", lambda v: v < 50),
    ("restart_ms", "< 50 ms", lambda v: v < 50),
]


def fmt(v):
    if not isinstance(v, (int, float)) or v != v:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}"


def report(r):
    """Every measured line, then the targets with PASS/MISS."""
    lines = [f"== {r['label']} ({r['started']}, load average before {r['loadavg_before']:.2f})"]
    cells = [k for k in r if k.startswith("send_m") and k.endswith("_req_per_s")]
    for key in sorted(cells, key=lambda k: [int(x[1:]) for x in k.split("_")[1:3]]):
        base = key[: -len("_req_per_s")]
        cell = base[len("send_"):]
        size = cell.split("_")[0]
        lines.append(f"send {r.get(size + '_members', '?'):>5} members {cell.split('_')[1]:>4}: "
                     f"{fmt(r[key]):>7} req/s = {r[base + '_vs_ceiling']:.1%} of nginx's "
                     f"{fmt(r['ceiling_' + cell + '_req_per_s'])}; CPU {r[base + '_cpu_ms_per_event']:.3f} ms/event "
                     f"(nginx {r['ceiling_' + cell + '_cpu_ms_per_event']:.4f}); p50 {fmt(r[base + '_p50_ms'])} "
                     f"p99 {fmt(r[base + '_p99_ms'])} ms (nginx {fmt(r['ceiling_' + cell + '_p50_ms'])} / "
                     f"{fmt(r['ceiling_' + cell + '_p99_ms'])})"
                     + (f"; {r[base + '_timeouts']} sends unanswered in {WRK_TIMEOUT_S} s"
                        if r.get(base + "_timeouts") else ""))
    for size in (1000, 10000):
        if f"m{size}_setup_s" in r:
            lines.append(f"setup to {size} members: {r[f'm{size}_members']} in {r[f'm{size}_setup_s']:.1f} s "
                         f"({r[f'm{size}_setup_joins_per_s']:.0f} register+join/s, "
                         f"{r[f'm{size}_setup_cpu_ms_per_join']:.2f} server CPU ms each)")
    if "wake_alone_p50_ms" in r:
        lines.append(f"/sync wake p50/p99 ms: alone {fmt(r['wake_alone_p50_ms'])}/{fmt(r['wake_alone_p99_ms'])}, "
                     f"{r['wake_crowd_count']} idle elsewhere {fmt(r['wake_idle_p50_ms'])}/{fmt(r['wake_idle_p99_ms'])}, "
                     f"{r['wake_crowd_count']} in the room {fmt(r['wake_crowd_p50_ms'])}/{fmt(r['wake_crowd_p99_ms'])}")
        lines.append(f"{r['longpoll_count']} idle long-polls: {r['longpoll_kb_per_poll']:.1f} KiB each, "
                     f"{r['longpoll_woken_with_event']} woken by one message in {fmt(r['longpoll_wake_all_ms'])} ms")
    if "as_load_latency_p50_ms" in r:
        lines.append(f"appservice under load ({fmt(r['as_load_send_req_per_s'])} sends/s): send-to-receipt "
                     f"p50 {fmt(r['as_load_latency_p50_ms'])} p99 {fmt(r['as_load_latency_p99_ms'])} ms "
                     f"({r['as_load_probes']} probes, {fmt(r['as_load_events_per_txn'])} events/txn)")
    if "as_drain_events_per_s" in r:
        lines.append(f"appservice backlog {r['as_backlog_events']:,} events drained in {fmt(r['as_drain_s'])} s = "
                     f"{fmt(r['as_drain_events_per_s'])} events/s (first transaction after "
                     f"{fmt(r['as_drain_first_txn_ms'])} ms, then {fmt(r['as_drain_events_per_s_after_first'])} "
                     f"events/s; {fmt(r['as_drain_events_per_txn'])} events/txn, "
                     f"{fmt(r['as_drain_server_cpu_us_per_event'])} us CPU/event, listener "
                     f"{fmt(r['as_drain_listener_cores'])} cores)")
    if "rss_10s_after_load_kb" in r:
        lines.append(f"RSS: after start {r['rss_after_start_kb'] / 1024:.1f} MiB, at the end of the load "
                     f"{r['rss_at_load_end_kb'] / 1024:.1f}, 10 s later {r['rss_10s_after_load_kb'] / 1024:.1f}, "
                     f"peak {r['rss_peak_kb'] / 1024:.1f}; start-up {fmt(r['startup_ms'])} ms empty, "
                     f"{fmt(r['restart_ms'])} ms populated ({r['db_bytes'] / 1e6:.0f} MB db)")
    lines.append(f"{'target':34} {'value':>10} {'goal':>18}")
    for key, goal, test in TARGETS:
        if key in r:
            v = r[key]
            shown = v / 1024 if key.startswith("rss") else v
            verdict = "" if test is None or v != v else ("PASS" if test(v) else "MISS")
            lines.append(f"{key:34} {fmt(shown):>10} {goal:>18}  {verdict}")
    for e in r.get("errors", []):
        lines.append(f"ERROR: {e}")
    return "\n".join(lines)


def markdown_row(r, name):
    """One row of bench/README.md's table: one column per target."""
    def g(k, f=fmt):
        return f(r[k]) if k in r else "-"

    def send(cell):
        k = f"send_{cell}"
        if k + "_req_per_s" not in r:
            return "-"
        size = cell.split("_")[0]
        short = f" [{r[size + '_members']:,} members]" if r.get(size + "_members", 0) < int(size[1:]) else ""
        ratio = r[k + "_vs_ceiling"]
        pct = f"{ratio:.1%}" if ratio >= 0.01 else f"{ratio:.3%}"
        return (f"{fmt(r[k + '_req_per_s'])} ({pct}), "
                f"{r[k + '_cpu_ms_per_event']:.3f} ms{short}")
    cells = [name, send("m32_c1"), send("m32_c8"), send("m32_c32"), send("m1000_c32"), send("m10000_c32"),
             f"{g('wake_idle_p50_ms')} / {g('wake_idle_p99_ms')}", f"{g('wake_crowd_p50_ms')} / {g('wake_crowd_p99_ms')}",
             g("longpoll_kb_per_poll"), f"{g('as_load_latency_p50_ms')} / {g('as_load_latency_p99_ms')}",
             g("as_drain_events_per_s"),
             f"{g('rss_10s_after_load_kb', lambda v: f'{v / 1024:.1f}')} / {g('rss_peak_kb', lambda v: f'{v / 1024:.0f}')}",
             f"{g('startup_ms')} / {g('restart_ms')}"]
    ceiling = ["nginx (same run)"] + [
        (f"{fmt(r['ceiling_' + c + '_req_per_s'])}, {r['ceiling_' + c + '_cpu_ms_per_event']:.3f} ms"
         if "ceiling_" + c + "_req_per_s" in r else "-")
        for c in ("m32_c1", "m32_c8", "m32_c32", "m1000_c32", "m10000_c32")] + ["-"] * 7
    return "| " + " | ".join(cells) + " |\n| " + " | ".join(ceiling) + " |"


def run_sections(binary, sections, args, label):
    binary = os.path.abspath(binary)
    if not os.access(binary, os.X_OK):
        raise BenchError(f"{binary} is not an executable")
    r = {"binary": binary, "label": label, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
         "loadavg_before": os.getloadavg()[0], "sections": sections, "errors": []}
    for name in sections:
        workdir = tempfile.mkdtemp(prefix=f"trestle-targets-{name}-")
        log(f"[targets] {label}: section {name} (data in {workdir})")
        t0 = time.monotonic()
        try:
            r.update(SECTIONS[name](binary, workdir, args, r["errors"]))
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
        r[f"{name}_section_s"] = time.monotonic() - t0
    r["loadavg_after"] = os.getloadavg()[0]
    return r


def compare(a, b):
    """B/A for every numeric metric both have (medians over rounds)."""
    keys = sorted(k for k in a[0] if isinstance(a[0][k], (int, float)) and not isinstance(a[0][k], bool))
    rows = [f"{'metric':42} {'A':>12} {'B':>12} {'B/A':>7}"]
    for k in keys:
        va = [x[k] for x in a if isinstance(x.get(k), (int, float)) and x[k] == x[k]]
        vb = [x[k] for x in b if isinstance(x.get(k), (int, float)) and x[k] == x[k]]
        if not va or not vb:
            continue
        ma, mb = statistics.median(va), statistics.median(vb)
        rows.append(f"{k:42} {fmt(ma):>12} {fmt(mb):>12} {(mb / ma if ma else float('nan')):7.3f}")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(tb.BENCH_DIR, "..", "build", "trestle"))
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two binaries, alternately; prints B/A")
    ap.add_argument("--rounds", type=int, default=1, help="--compare: rounds, order alternating (default 1)")
    ap.add_argument("--only", default="", help="comma list of: " + ",".join(SECTIONS) + " (default all)")
    ap.add_argument("--out", default="", help="JSON results here")
    ap.add_argument("--label", default="")
    ap.add_argument("--markdown", action="store_true", help="also print bench/README.md's table rows")
    ap.add_argument("--log-level", default="", help="server log_level (default: the generated config's)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs")
    ap.add_argument("--duration", type=int, default=8, help="seconds per wrk measurement (default 8)")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of wrk warm-up before each (default 1)")
    ap.add_argument("--max-duration", type=int, default=60,
                    help="seconds per wrk measurement when the warm-up was very slow (default 60)")
    ap.add_argument("--connections", default="1,8,32")
    ap.add_argument("--wrk-threads", type=int, default=4, help="wrk threads, at most (default 4)")
    ap.add_argument("--senders", type=int, default=4, help="sending users, one per wrk thread (default 4)")
    ap.add_argument("--members", default="32,1000,10000", help="room sizes (default 32,1000,10000)")
    ap.add_argument("--setup-conns", type=int, default=8)
    ap.add_argument("--setup-max-seconds", type=float, default=150.0,
                    help="growing the room to each size, at most (default 150): then measured as it is")
    ap.add_argument("--nginx-workers", type=int, default=2)
    ap.add_argument("--rss-wait", type=float, default=10.0)
    ap.add_argument("--wake-samples", type=int, default=300)
    ap.add_argument("--crowd", type=int, default=200, help="other long-polls (default 200)")
    ap.add_argument("--crowd-samples", type=int, default=200)
    ap.add_argument("--crowd-rearm-ms", type=float, default=50.0,
                    help="pause after re-arming the crowd's long-polls (default 50)")
    ap.add_argument("--park-ms", type=float, default=20.0)
    ap.add_argument("--wake-max-seconds", type=float, default=25.0, help="per variant (crowd polls time out at 30 s)")
    ap.add_argument("--crowd-max-seconds", type=float, default=60.0, help="the same-room variant, at most")
    ap.add_argument("--longpolls", type=int, default=1000)
    ap.add_argument("--longpoll-settle", type=float, default=2.0)
    ap.add_argument("--as-connections", type=int, default=8)
    ap.add_argument("--as-probe-gap-ms", type=float, default=20.0)
    ap.add_argument("--as-members", type=int, default=0,
                    help="appservice: this many more (non-bridged) members in the room (default 0)")
    ap.add_argument("--as-backlog", type=int, default=100000)
    ap.add_argument("--as-backlog-max-seconds", type=float, default=150.0)
    ap.add_argument("--as-drain-timeout", type=float, default=120.0)
    ap.add_argument("--as-settle-max-seconds", type=float, default=60.0,
                    help="before releasing the backlog, wait (at most this long) for the server's CPU use to settle")
    args = ap.parse_args()
    sections = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    for s in sections:
        if s not in SECTIONS:
            ap.error(f"unknown section {s}")
    if not shutil.which("wrk"):
        ap.error("wrk is not installed (bash bench/install-deps.sh)")
    try:
        if args.compare:
            runs = {0: [], 1: []}
            for rnd in range(args.rounds):
                order = (0, 1) if rnd % 2 == 0 else (1, 0)
                for s in sections:  # alternate per section, so drift hits both alike
                    for i in order:
                        runs[i].append(run_sections(args.compare[i], [s], args, f"{'AB'[i]} {args.compare[i]}"))
            merged = {}
            for i in (0, 1):  # one dict per round and side: merge the sections of a round
                per_round = []
                for rnd in range(args.rounds):
                    d, errs = {}, []
                    for x in runs[i][rnd * len(sections):(rnd + 1) * len(sections)]:
                        d.update(x)
                        errs += x["errors"]
                    d["errors"] = errs
                    per_round.append(d)
                merged[i] = per_round
            for i in (0, 1):
                for d in merged[i]:
                    print(report(d))
            print(f"\nA: {args.compare[0]}\nB: {args.compare[1]}")
            print(compare(merged[0], merged[1]))
            results = {"A": merged[0], "B": merged[1]}
            errors = [e for i in (0, 1) for d in merged[i] for e in d["errors"]]
        else:
            r = run_sections(args.binary, sections, args, args.label or args.binary)
            print(report(r))
            if args.markdown:
                print(markdown_row(r, f"{time.strftime('%Y-%m-%d')} {args.label or os.path.basename(args.binary)}"))
            results, errors = r, r["errors"]
    except (BenchError, OSError, ValueError, KeyError, subprocess.SubprocessError) as e:
        log(f"[targets] FAILED: {type(e).__name__}: {e}")
        return 1
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1, sort_keys=True)
        log(f"[targets] metrics: {args.out}")
    return 2 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
