#!/usr/bin/python3
"""Trestle benchmarks (stdlib only; run with Debian's /usr/bin/python3).

  trestle_bench.py run --binary build/trestle [--only startup,send,sync,longpoll] [--out FILE.json]
      Starts a fresh server (new temp dir, new database, free loopback port, rate limits raised),
      runs the chosen benchmarks, prints a compact summary and writes the metrics as JSON.
  trestle_bench.py compare BASE.json [BASE2.json ...] -- NEW.json [NEW2.json ...]
      Prints every metric for baseline and new (median over the files given) and new/baseline.

Benchmarks (see bench/README.md):
  startup   exec -> first 200 from GET /_matrix/client/versions (fresh database); VmRSS after start,
            after all benchmarks, and the restart time on the now-populated database.
  send      wrk + send.lua: PUT .../send/m.room.message/{txnId} into one room, several users.
  sync      send -> wake-up of a waiting /sync long-poll, N samples.
  longpoll  VmRSS with N idle /sync long-polls held open, and time until all answer one message.

Only 127.0.0.1 is ever contacted. Every loop is bounded in count and in time.
"""
import argparse
import http.client
import itertools
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
import time
import urllib.parse

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
HOST = "127.0.0.1"
CLIENT = "/_matrix/client/v3"


class BenchError(Exception):
    pass


# ----------------------------------------------------------------------------- small utilities

def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def proc_status(pid):
    """VmRSS / VmHWM (kB) and thread count of a process."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(val.split()[0])
            elif key == "Threads":
                out[key] = int(val)
    return out


def proc_cpu_ms(pid):
    """utime + stime of a process in milliseconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks * 1000.0 / os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def q(s):
    return urllib.parse.quote(s, safe="")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the server

class Server:
    """A trestle process on a fresh data dir and a free loopback port."""

    def __init__(self, binary, workdir, log_level):
        self.workdir = workdir
        # A private copy: a rebuild of build/trestle during the run must not swap binaries.
        self.binary = os.path.join(workdir, "trestle")
        shutil.copy2(binary, self.binary)
        self.port = free_port()
        self.config = os.path.join(workdir, "homeserver.yaml")
        self.logfile = os.path.join(workdir, "server.log")
        data = os.path.join(workdir, "data")
        subprocess.run([self.binary, "generate-config", "--server-name", "localhost", "--data-dir", data,
                        "-o", self.config], check=True, stdout=subprocess.DEVNULL)
        out = []
        with open(self.config) as f:
            for line in f:
                stripped = line.strip()
                indent = line[: len(line) - len(line.lstrip())]
                if stripped.startswith("- port:") or stripped.startswith("port:"):
                    line = line.split("port:")[0] + f"port: {self.port}\n"
                elif stripped.startswith("per_second:"):
                    line = f"{indent}per_second: 1000000\n"
                elif stripped.startswith("burst_count:"):
                    line = f"{indent}burst_count: 1000000\n"
                elif stripped.startswith("log_level:") and log_level:
                    line = f"log_level: {log_level}\n"
                out.append(line)
        with open(self.config, "w") as f:
            f.writelines(out)
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self, ready_timeout=30.0):
        """Starts the server; returns ms from exec to the first 200 of GET /versions."""
        logf = open(self.logfile, "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([self.binary, "--config", self.config], stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        logf.close()
        deadline = t0 + ready_timeout
        attempts = 0
        while time.perf_counter() < deadline and attempts < 100000:
            attempts += 1
            if self.proc.poll() is not None:
                raise BenchError(f"server exited with {self.proc.returncode} during start-up:\n{self.log_tail()}")
            try:
                c = http.client.HTTPConnection(HOST, self.port, timeout=2)
                c.request("GET", f"{CLIENT.rsplit('/', 1)[0]}/versions")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return (time.perf_counter() - t0) * 1000.0
            except OSError:
                pass
            time.sleep(0.001)
        raise BenchError(f"server not ready after {ready_timeout} s:\n{self.log_tail()}")

    def stop(self, timeout=15.0):
        """SIGTERM, wait; returns ms until exit (SIGKILL after `timeout`, then returns None)."""
        if not self.proc or self.proc.poll() is not None:
            return None
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            return (time.perf_counter() - t0) * 1000.0
        except subprocess.TimeoutExpired:
            self.proc.kill()  # our own child, by pid
            self.proc.wait(5)
            return None

    def log_tail(self, n=30):
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def check_alive(self):
        if self.proc.poll() is not None:
            raise BenchError(f"server died (exit {self.proc.returncode}):\n{self.log_tail()}")


# ----------------------------------------------------------------------------- a tiny Matrix client

class Client:
    """One keep-alive connection for one user."""

    def __init__(self, port, token=None, timeout=90):
        self.port = port
        self.token = token
        self.conn = http.client.HTTPConnection(HOST, port, timeout=timeout)

    def close(self):
        self.conn.close()

    def _headers(self, body):
        h = {}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        if body is not None:
            h["Content-Type"] = "application/json"
        return h

    def send_request(self, method, path, body=None):
        """Writes the request without reading the answer (see read_response)."""
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=data, headers=self._headers(body))

    def read_response(self, expect=200):
        r = self.conn.getresponse()
        raw = r.read()
        if expect is not None and r.status != expect:
            raise BenchError(f"HTTP {r.status}: {raw[:300]!r}")
        return r.status, (json.loads(raw) if raw else None)

    def call(self, method, path, body=None, expect=200):
        self.send_request(method, path, body)
        return self.read_response(expect)[1]


def register(port, name):
    c = Client(port)
    try:
        body = {"username": name, "password": "bench-password-" + name, "auth": {"type": "m.login.dummy"},
                "initial_device_display_name": "bench"}
        r = c.call("POST", CLIENT + "/register", body)
        return r["access_token"], r["user_id"]
    finally:
        c.close()


def make_room(port, prefix, n_users):
    """Registers n_users users, the first creates a public room, the others join it.
    Returns ([(token, user_id)], room_id)."""
    users = [register(port, f"{prefix}{i}") for i in range(n_users)]
    c = Client(port, users[0][0])
    room_id = c.call("POST", CLIENT + "/createRoom", {"preset": "public_chat", "name": prefix})["room_id"]
    c.close()
    for token, _ in users[1:]:
        j = Client(port, token)
        j.call("POST", f"{CLIENT}/rooms/{q(room_id)}/join", {})
        j.close()
    return users, room_id


NO_ROOMS_FILTER = q(json.dumps({"room": {"rooms": []}, "account_data": {"types": []}}, separators=(",", ":")))


def stream_position(port, token):
    """The global stream position, from a sync that filters every room out (cheap)."""
    c = Client(port, token)
    r = c.call("GET", f"{CLIENT}/sync?timeout=0&filter={NO_ROOMS_FILTER}")
    c.close()
    tok = str(r.get("next_batch", ""))
    digits = "".join(itertools.takewhile(str.isdigit, tok.lstrip("s")))
    return int(digits) if digits else None  # None: a token format this script does not know


def sync_token(port, token):
    c = Client(port, token)
    r = c.call("GET", f"{CLIENT}/sync?timeout=0")
    c.close()
    return r["next_batch"]


# ----------------------------------------------------------------------------- benchmark: send

def run_wrk(port, tokens, room_id, threads, connections, duration_s, run_tag, timeout_s=10):
    env = dict(os.environ, BENCH_TOKENS=",".join(tokens), BENCH_ROOM=q(room_id), BENCH_RUN=run_tag)
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration_s}s", "--latency",
           "--timeout", f"{timeout_s}s", "-s", os.path.join(BENCH_DIR, "send.lua"), f"http://{HOST}:{port}"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration_s + 60)
    if p.returncode != 0:
        raise BenchError(f"wrk failed ({p.returncode}): {p.stderr}\n{p.stdout}")
    for line in p.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):]), p.stdout
    raise BenchError("wrk printed no BENCH_JSON line:\n" + p.stdout + p.stderr)


def bench_send(srv, args):
    n_users = args.send_users
    conns = max(args.send_connections, n_users)
    users, room_id = make_room(srv.port, "sender", n_users)
    tokens = [t for t, _ in users]
    tag = f"r{os.getpid()}x{int(time.time() * 1000)}"
    if args.send_warmup > 0:
        w, _ = run_wrk(srv.port, tokens, room_id, n_users, conns, args.send_warmup, tag + "w")
        if w["non_2xx"]:
            raise BenchError(f"send warm-up: {w['non_2xx']} non-2xx, last {w['last_bad_status']} {w['last_bad_body']}")
    pos0 = stream_position(srv.port, tokens[0])
    cpu0 = proc_cpu_ms(srv.pid)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res, text = run_wrk(srv.port, tokens, room_id, n_users, conns, args.send_duration, tag)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1 = proc_cpu_ms(srv.pid)
    pos1 = stream_position(srv.port, tokens[0])
    srv.check_alive()
    dur = res["duration_us"] / 1e6
    out = {
        "send_req_per_s": res["requests"] / dur,
        "send_p50_ms": res["lat_p50_us"] / 1000.0,
        "send_p90_ms": res["lat_p90_us"] / 1000.0,
        "send_p99_ms": res["lat_p99_us"] / 1000.0,
        "send_max_ms": res["lat_max_us"] / 1000.0,
        "send_requests": res["requests"],
        "send_non_2xx": res["non_2xx"],
        "send_socket_errors": res["err_connect"] + res["err_read"] + res["err_write"] + res["err_timeout"],
        "send_events_stored": (pos1 - pos0) if pos0 is not None and pos1 is not None else -1,
        "send_server_cpu_ms_per_req": (cpu1 - cpu0) / max(1, res["requests"]),
        "send_server_cores": (cpu1 - cpu0) / 1000.0 / (res["duration_us"] / 1e6),
        "send_wrk_cores": ((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)) / (res["duration_us"] / 1e6),
        "send_users": n_users,
        "send_connections": conns,
        "send_duration_s": dur,
    }
    if res["non_2xx"]:
        out["send_last_bad"] = f"{res['last_bad_status']} {res['last_bad_body']}"
    if args.verbose:
        log(text)
    return out


# ----------------------------------------------------------------------------- benchmark: sync wake

def bench_sync(srv, args):
    users, room_id = make_room(srv.port, "waker", 2)
    sender, recv = users[0], users[1]
    if args.sync_backlog > 0:
        # History the receiver has not read (no read receipt), as in a busy room.
        c = Client(srv.port, sender[0])
        for i in range(args.sync_backlog):
            c.call("PUT", f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/backlog{i}",
                   {"msgtype": "m.text", "body": f"backlog {i}"})
        c.close()
    since = sync_token(srv.port, recv[0])
    a = Client(srv.port, recv[0], timeout=40)   # the waiting /sync
    b = Client(srv.port, sender[0], timeout=40)  # the sender
    wake_ms, send_ms, misses = [], [], 0
    sync_first = 0  # samples where the /sync answer arrived before the send's own reply
    deadline = time.perf_counter() + args.sync_max_seconds
    for i in range(args.sync_samples):
        if time.perf_counter() > deadline:
            break
        a.send_request("GET", f"{CLIENT}/sync?since={q(since)}&timeout=30000")
        time.sleep(args.sync_park_ms / 1000.0)  # let the long-poll reach the notifier
        t0 = time.perf_counter()
        b.send_request("PUT", f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/wake{i}",
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
            raise BenchError(f"sync sample {i}: no answer within 35 s")
        event_id = b.read_response()[1]["event_id"]
        body = a.read_response()[1]
        since = body["next_batch"]
        timeline = body.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {}).get("events", [])
        if not any(e.get("event_id") == event_id for e in timeline):
            # Woken by something else (should not happen): catch up untimed and count it.
            misses += 1
            body = Client(srv.port, recv[0]).call("GET", f"{CLIENT}/sync?since={q(since)}&timeout=0")
            since = body["next_batch"]
            continue
        wake_ms.append((arrived["a"] - t0) * 1000.0)
        send_ms.append((arrived["b"] - t0) * 1000.0)
        if arrived["a"] < arrived["b"]:
            sync_first += 1
    a.close()
    b.close()
    srv.check_alive()
    if len(wake_ms) < 10:
        raise BenchError(f"sync: only {len(wake_ms)} samples")
    quarter = max(1, len(wake_ms) // 4)
    return {
        "sync_wake_p50_ms": percentile(wake_ms, 50),
        "sync_wake_p90_ms": percentile(wake_ms, 90),
        "sync_wake_p99_ms": percentile(wake_ms, 99),
        "sync_wake_max_ms": max(wake_ms),
        "sync_wake_p50_first_quarter_ms": percentile(wake_ms[:quarter], 50),
        "sync_wake_p50_last_quarter_ms": percentile(wake_ms[-quarter:], 50),
        "sync_send_p50_ms": percentile(send_ms, 50),
        "sync_samples": len(wake_ms),
        "sync_backlog": args.sync_backlog,
        "sync_misses": misses,
        "sync_answer_before_send_reply": sync_first,
    }


# ----------------------------------------------------------------------------- benchmark: long-polls

class RawPoll:
    """One /sync long-poll on a raw non-blocking socket; collects one HTTP response."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.first_byte = None
        self.done_at = None
        self.status = None
        self.body = b""
        self.need = None  # total bytes (headers + body) once the headers are in

    def feed(self, now):
        try:
            chunk = self.sock.recv(262144)
        except BlockingIOError:
            return False
        if self.first_byte is None:
            self.first_byte = now
        if not chunk:  # closed by the server
            self.done_at = now
            return True
        self.buf += chunk
        if self.need is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            self.status = int(head[0].split()[1])
            length = 0
            for h in head[1:]:
                k, _, v = h.partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v.strip())
            self.need = end + 4 + length
        if len(self.buf) >= self.need:
            self.body = bytes(self.buf[self.buf.find(b"\r\n\r\n") + 4:self.need])
            self.done_at = now
            return True
        return False


def bench_longpoll(srv, args):
    n = args.longpolls
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            raise BenchError(f"RLIMIT_NOFILE hard limit {hard} < {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    users, room_id = make_room(srv.port, "poller", args.longpoll_users)
    if args.longpoll_backlog > 0:
        c = Client(srv.port, users[0][0])
        for i in range(args.longpoll_backlog):
            c.call("PUT", f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/backlog{i}",
                   {"msgtype": "m.text", "body": f"backlog {i}"})
        c.close()
    tokens = [(t, sync_token(srv.port, t)) for t, _ in users]
    time.sleep(0.5)
    before = proc_status(srv.pid)

    polls = []
    sel = selectors.DefaultSelector()
    t_open = time.perf_counter()
    try:
        for i in range(n):
            token, since = tokens[i % len(tokens)]
            s = socket.create_connection((HOST, srv.port), timeout=10)
            s.sendall((f"GET {CLIENT}/sync?since={q(since)}&timeout=60000 HTTP/1.1\r\n"
                       f"Host: {HOST}:{srv.port}\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
            s.setblocking(False)
            p = RawPoll(s)
            polls.append(p)
            sel.register(s, selectors.EVENT_READ, p)
        open_ms = (time.perf_counter() - t_open) * 1000.0
        # Give the server time to park every request (settle), then hold them for a while and
        # measure the server's CPU use while idle; no request may answer during either.
        early = 0
        settle_end = time.perf_counter() + args.longpoll_settle
        hold_end = settle_end + args.longpoll_hold
        cpu0 = t_cpu0 = None
        while time.perf_counter() < hold_end:
            now = time.perf_counter()
            if cpu0 is None and now >= settle_end:
                cpu0, t_cpu0 = proc_cpu_ms(srv.pid), now
            until = settle_end if cpu0 is None else hold_end
            for key, _ in sel.select(timeout=max(0.0, until - now)):
                if key.data.feed(time.perf_counter()):
                    early += 1
                    sel.unregister(key.fileobj)
        srv.check_alive()
        held = proc_status(srv.pid)
        idle_cpu_ms_per_s = (proc_cpu_ms(srv.pid) - cpu0) / (time.perf_counter() - t_cpu0)

        # Wake them all with one message.
        c = Client(srv.port, users[0][0])
        t0 = time.perf_counter()
        event_id = c.call("PUT", f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/wakeall",
                          {"msgtype": "m.text", "body": "wake up, all of you"})["event_id"]
        send_ms = (time.perf_counter() - t0) * 1000.0
        c.close()
        cpu_w0 = proc_cpu_ms(srv.pid)
        remaining = n - early
        limit = t0 + args.longpoll_wake_timeout
        while remaining > 0 and time.perf_counter() < limit:
            for key, _ in sel.select(timeout=max(0.0, min(1.0, limit - time.perf_counter()))):
                if key.data.feed(time.perf_counter()):
                    remaining -= 1
                    sel.unregister(key.fileobj)
        wake_cpu_ms = proc_cpu_ms(srv.pid) - cpu_w0
        answered = [p for p in polls if p.done_at is not None]
        ok = [p for p in answered if p.status == 200 and event_id.encode() in p.body]
        done_ms = [(p.done_at - t0) * 1000.0 for p in ok]
        srv.check_alive()
    finally:
        sel.close()
        for p in polls:
            p.sock.close()
    time.sleep(1.0)
    after = proc_status(srv.pid)
    out = {
        "longpoll_count": n,
        "longpoll_users": len(users),
        "longpoll_backlog": args.longpoll_backlog,
        "longpoll_open_ms": open_ms,
        "longpoll_early_answers": early,
        "longpoll_rss_before_kb": before["VmRSS"],
        "longpoll_rss_held_kb": held["VmRSS"],
        "longpoll_rss_per_poll_kb": (held["VmRSS"] - before["VmRSS"]) / n,
        "longpoll_rss_after_release_kb": after["VmRSS"],
        "longpoll_threads_held": held["Threads"],
        "longpoll_idle_cpu_ms_per_s": idle_cpu_ms_per_s,
        "longpoll_send_ms": send_ms,
        "longpoll_answered": len(answered),
        "longpoll_answered_with_event": len(ok),
        "longpoll_wake_first_ms": min(done_ms) if done_ms else float("nan"),
        "longpoll_wake_p10_ms": percentile(done_ms, 10) if done_ms else float("nan"),
        "longpoll_wake_p50_ms": percentile(done_ms, 50) if done_ms else float("nan"),
        "longpoll_wake_p90_ms": percentile(done_ms, 90) if done_ms else float("nan"),
        "longpoll_wake_all_ms": max(done_ms) if len(ok) == n else float("nan"),
        "longpoll_wake_cpu_ms": wake_cpu_ms,
    }
    return out


# ----------------------------------------------------------------------------- run and report

ALL = ["startup", "send", "sync", "longpoll"]


def run(args):
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else ALL
    for s in only:
        if s not in ALL:
            raise BenchError(f"unknown benchmark '{s}' (choose from {','.join(ALL)})")
    if "send" in only and not shutil.which("wrk"):
        raise BenchError("wrk is not installed (apt-get install wrk)")
    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        raise BenchError(f"{binary} is not an executable")
    workdir = tempfile.mkdtemp(prefix="trestle-bench-run-")
    results = {"binary": binary, "label": args.label or binary, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
               "cpus": os.cpu_count(), "benchmarks": only, "loadavg_before": os.getloadavg()[0]}
    if results["loadavg_before"] > 0.5:
        log(f"[bench] note: load average is {results['loadavg_before']:.2f} before starting; "
            "other work on this machine will skew the numbers")
    srv = Server(binary, workdir, args.log_level)
    try:
        log(f"[bench] {args.label or binary}: server on {HOST}:{srv.port}, data in {workdir}")
        results["startup_ms"] = srv.start()
        time.sleep(1.0)
        st = proc_status(srv.pid)
        results["rss_after_start_kb"] = st["VmRSS"]
        results["threads_after_start"] = st["Threads"]
        if "send" in only:
            log("[bench] send throughput (wrk)...")
            results.update(bench_send(srv, args))
        if "sync" in only:
            log("[bench] sync wake latency...")
            results.update(bench_sync(srv, args))
        if "longpoll" in only:
            log(f"[bench] {args.longpolls} idle long-polls...")
            results.update(bench_longpoll(srv, args))
        time.sleep(1.0)
        st = proc_status(srv.pid)
        results["rss_after_benchmarks_kb"] = st["VmRSS"]
        results["rss_peak_kb"] = st["VmHWM"]
        results["shutdown_ms"] = srv.stop()
        if "startup" in only:
            results["restart_ms"] = srv.start()  # populated database this time
            srv.stop()
        results["db_bytes"] = sum(os.path.getsize(os.path.join(workdir, "data", f))
                                  for f in os.listdir(os.path.join(workdir, "data")))
    finally:
        srv.stop()
        if args.keep:
            log(f"[bench] kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def mib(kb):
    return f"{kb / 1024:.1f} MiB"


def summary(r):
    lines = [f"== {r['label']} (load average before: {r.get('loadavg_before', float('nan')):.2f})"]
    lines.append(f"start-up (fresh db)    {r['startup_ms']:.1f} ms to first /versions; "
                 f"restart (populated db) {r.get('restart_ms', float('nan')):.1f} ms")
    lines.append(f"RSS                    after start {mib(r['rss_after_start_kb'])}, after benchmarks "
                 f"{mib(r['rss_after_benchmarks_kb'])}, peak {mib(r['rss_peak_kb'])}")
    if "send_req_per_s" in r:
        lines.append(f"send throughput        {r['send_req_per_s']:.0f} req/s, p50 {r['send_p50_ms']:.2f} ms, "
                     f"p99 {r['send_p99_ms']:.2f} ms, non-2xx {r['send_non_2xx']}, socket errors "
                     f"{r['send_socket_errors']} ({r['send_users']} users, {r['send_connections']} conns, "
                     f"{r['send_duration_s']:.0f} s, {r['send_events_stored']} events stored, "
                     f"{r['send_server_cpu_ms_per_req']:.2f} server CPU ms/req; CPU cores busy: server "
                     f"{r['send_server_cores']:.2f}, wrk {r['send_wrk_cores']:.2f})")
    if "sync_wake_p50_ms" in r:
        lines.append(f"sync wake latency      p50 {r['sync_wake_p50_ms']:.2f} ms, p99 {r['sync_wake_p99_ms']:.2f} ms, "
                     f"max {r['sync_wake_max_ms']:.2f} ms ({r['sync_samples']} samples; p50 first quarter "
                     f"{r['sync_wake_p50_first_quarter_ms']:.2f} / last quarter "
                     f"{r['sync_wake_p50_last_quarter_ms']:.2f} ms)")
    if "longpoll_count" in r:
        lines.append(f"{r['longpoll_count']} long-polls       RSS {mib(r['longpoll_rss_before_kb'])} -> "
                     f"{mib(r['longpoll_rss_held_kb'])} held ({r['longpoll_rss_per_poll_kb']:.1f} KiB/poll), "
                     f"idle CPU {r['longpoll_idle_cpu_ms_per_s']:.1f} ms/s; "
                     f"{r['longpoll_answered_with_event']}/{r['longpoll_count']} woke with the event, "
                     f"all in {r['longpoll_wake_all_ms']:.0f} ms (p50 {r['longpoll_wake_p50_ms']:.0f} ms)")
    return "\n".join(lines)


# Metrics compared by `compare`, and whether higher is better.
COMPARED = [
    ("startup_ms", False), ("restart_ms", False), ("rss_after_start_kb", False),
    ("rss_after_benchmarks_kb", False), ("rss_peak_kb", False),
    ("send_req_per_s", True), ("send_p50_ms", False), ("send_p99_ms", False), ("send_non_2xx", False),
    ("send_server_cpu_ms_per_req", False),
    ("sync_wake_p50_ms", False), ("sync_wake_p99_ms", False),
    ("longpoll_rss_held_kb", False), ("longpoll_rss_per_poll_kb", False),
    ("longpoll_wake_all_ms", False), ("longpoll_wake_p50_ms", False),
    ("longpoll_answered_with_event", True),
]


def median_metric(files, key):
    vals = [f[key] for f in files if isinstance(f.get(key), (int, float)) and f[key] == f[key]]
    return statistics.median(vals) if vals else None


def compare(base_files, new_files):
    base = [json.load(open(p)) for p in base_files]
    new = [json.load(open(p)) for p in new_files]
    rows = [f"{'metric':32} {'baseline':>12} {'new':>12} {'new/base':>9}  (median of {len(base)} vs {len(new)} runs)"]
    for key, higher_better in COMPARED:
        b, n = median_metric(base, key), median_metric(new, key)
        if b is None or n is None:
            continue
        ratio = (n / b) if b else (1.0 if n == b else float("inf"))
        better = (ratio > 1) == higher_better if ratio != 1 else None
        hint = "" if better is None or abs(ratio - 1) < 0.05 else ("  better" if better else "  worse")
        rows.append(f"{key:32} {b:12.2f} {n:12.2f} {ratio:9.3f}{hint}")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run benchmarks against a fresh server")
    r.add_argument("--binary", default=os.path.join(BENCH_DIR, "..", "build", "trestle"))
    r.add_argument("--label", default="")
    r.add_argument("--only", default="", help="comma list of: " + ",".join(ALL) + " (default all)")
    r.add_argument("--out", default="", help="write the metrics as JSON here")
    r.add_argument("--log-level", default="", help="override the server's log_level (default: generated config's)")
    r.add_argument("--keep", action="store_true", help="keep the temp dir (database, log)")
    r.add_argument("--verbose", action="store_true")
    r.add_argument("--send-users", type=int, default=4, help="users = wrk threads (default 4)")
    r.add_argument("--send-connections", type=int, default=16, help="total keep-alive connections (default 16)")
    r.add_argument("--send-duration", type=int, default=10, help="seconds (default 10)")
    r.add_argument("--send-warmup", type=int, default=2, help="seconds of warm-up (default 2)")
    r.add_argument("--sync-samples", type=int, default=300)
    r.add_argument("--sync-park-ms", type=float, default=20.0,
                   help="pause between issuing the /sync and the send (default 20 ms)")
    r.add_argument("--sync-max-seconds", type=float, default=120.0)
    r.add_argument("--sync-backlog", type=int, default=0,
                   help="unread messages put in the room before measuring (default 0)")
    r.add_argument("--longpolls", type=int, default=1000)
    r.add_argument("--longpoll-users", type=int, default=4)
    r.add_argument("--longpoll-settle", type=float, default=2.0,
                   help="seconds after the last request is sent before measuring (default 2)")
    r.add_argument("--longpoll-hold", type=float, default=2.0,
                   help="seconds over which idle CPU is measured while they are held (default 2)")
    r.add_argument("--longpoll-wake-timeout", type=float, default=55.0)
    r.add_argument("--longpoll-backlog", type=int, default=0,
                   help="unread messages put in the room before the long-polls (default 0)")
    c = sub.add_parser("compare", help="compare JSON results: BASE... -- NEW...")
    c.add_argument("files", nargs="+")
    args = ap.parse_args()

    if args.cmd == "compare":
        if "--" in sys.argv:
            i = sys.argv.index("--")
            base_files, new_files = sys.argv[sys.argv.index("compare") + 1:i], sys.argv[i + 1:]
        elif len(args.files) == 2:
            base_files, new_files = [args.files[0]], [args.files[1]]
        else:
            ap.error("compare BASE.json NEW.json, or compare BASE... -- NEW...")
        print(compare(base_files, new_files))
        return 0
    try:
        res = run(args)
    except (BenchError, OSError, http.client.HTTPException, subprocess.SubprocessError, ValueError, KeyError) as e:
        log(f"[bench] FAILED: {type(e).__name__}: {e}")
        return 1
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1, sort_keys=True)
    print(summary(res))
    bad = res.get("send_non_2xx", 0) or res.get("send_socket_errors", 0) or res.get("sync_misses", 0) or (
        "longpoll_count" in res and res["longpoll_answered_with_event"] != res["longpoll_count"])
    return 2 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
