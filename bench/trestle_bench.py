#!/usr/bin/python3
"""Trestle benchmarks (stdlib only; run with Debian's /usr/bin/python3).

  trestle_bench.py run --binary build/trestle [--only startup,send,sync,longpoll,appservice] [--out FILE.json]
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
  appservice  (its own fresh server, with one appservice registered) events/s pushed to a local
            appservice listener while wrk sends into a room a bridged user is in; how fast a held-back
            backlog drains; send -> transaction-received latency, one message at a time.

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
import threading
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

    def __init__(self, binary, workdir, log_level, appservice_files=()):
        self.workdir = workdir
        # A private copy: a rebuild of build/trestle during the run must not swap binaries.
        self.binary = os.path.join(workdir, "trestle")
        shutil.copy2(binary, self.binary)
        # The server runs its thumbnailer from beside itself.
        thumbnailer = os.path.join(os.path.dirname(os.path.abspath(binary)), "trestle-thumbnailer")
        if os.path.exists(thumbnailer):
            shutil.copy2(thumbnailer, os.path.join(workdir, "trestle-thumbnailer"))
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
                elif stripped.startswith("app_service_config_files:") and appservice_files:
                    line = f"app_service_config_files: {json.dumps(list(appservice_files))}\n"
                out.append(line)
        # The bench opens many connections (and long-polls per user) from loopback on purpose.
        out.append("\nhttp_limits:\n  max_connections_per_address: 0\n  max_long_polls_per_user: 0\n")
        if appservice_files and not any(l.startswith("app_service_config_files: [\"") for l in out):
            raise BenchError("the generated config has no 'app_service_config_files:' line to fill in")
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

def bench_sync(srv, args, sync_port=None, prefix="waker"):
    """sync_port: where the long-poll waits (a reader process; bench/workers.py); the room (users
    named prefix0, prefix1) is made and the messages sent on srv.port."""
    sync_port = sync_port or srv.port
    users, room_id = make_room(srv.port, prefix, 2)
    sender, recv = users[0], users[1]
    if args.sync_backlog > 0:
        # History the receiver has not read (no read receipt), as in a busy room.
        c = Client(srv.port, sender[0])
        for i in range(args.sync_backlog):
            c.call("PUT", f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/backlog{i}",
                   {"msgtype": "m.text", "body": f"backlog {i}"})
        c.close()
    since = sync_token(sync_port, recv[0])
    a = Client(sync_port, recv[0], timeout=40)   # the waiting /sync
    b = Client(srv.port, sender[0], timeout=40)  # the sender
    wake_ms, send_ms, after_reply_ms, misses = [], [], [], 0
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
            body = Client(sync_port, recv[0]).call("GET", f"{CLIENT}/sync?since={q(since)}&timeout=0")
            since = body["next_batch"]
            continue
        wake_ms.append((arrived["a"] - t0) * 1000.0)
        send_ms.append((arrived["b"] - t0) * 1000.0)
        after_reply_ms.append((arrived["a"] - arrived["b"]) * 1000.0)
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
        # From the send's 200 to the sync's answer (negative: the sync answered first).
        "sync_wake_after_reply_p50_ms": percentile(after_reply_ms, 50),
        "sync_wake_after_reply_p99_ms": percentile(after_reply_ms, 99),
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


# ----------------------------------------------------------------------------- benchmark: appservice

AS_ID = "trestle-bench"
AS_TXN_PREFIX = b"/_matrix/app/v1/transactions/"
AS_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
AS_FAIL = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 23\r\n\r\n"
           b'{"errcode":"M_UNKNOWN"}')


def mono():
    """CLOCK_MONOTONIC in seconds: the same clock in this process and in the listener process."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def listener_main(port, hs_token, max_seconds):
    """The appservice's HTTP side, run as its own process (`trestle_bench.py as-listener`) so its CPU
    use can be read from /proc and it shares no interpreter lock with the harness.

    One thread, non-blocking sockets and a selector: the homeserver sends one transaction at a time
    per appservice (and opens a connection per request), so a thread per connection would only add
    a thread start per transaction. Keep-alive is supported all the same. Every transaction is
    answered 200 {} at once (unless held, below) and reported on stdout as one line:
        T <t_first_byte> <t_complete> <txn_id> <n_events> <body_bytes> [event_id ...]
    and, when the body carries MSC3202 data, "E <txn_id> <number of org.matrix.msc3202.* keys>".
    (CLOCK_MONOTONIC seconds; event ids only while "ids 1"). Commands on stdin, one a line:
        ids 1|0   report event ids or not
        ids probe report only the ids of events whose content.body starts with "probe "
        fail 1|0  answer transactions 500 (each reported "F <t> <txn_id> <n_events>", not "T"), or
                  200 again (prints "O <t>")
        hold      keep transactions unanswered (the homeserver's sender waits) until "release"
        release   answer the held ones; prints "R <t> <n_answered>"
        quit      exit (so does EOF on stdin)
    A request with the wrong hs_token is answered 403 and reported as "BAD auth ...".
    """
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((HOST, port))
    lsock.listen(128)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, "listen")
    stdin = sys.stdin.buffer.raw
    sel.register(stdin, selectors.EVENT_READ, "stdin")
    out = sys.stdout.buffer
    out.write(b"READY\n")
    out.flush()
    want_auth = ("Bearer " + hs_token).encode()
    conns = {}  # socket -> [buffer, t_first_byte or None]
    held = []  # sockets whose answer is held
    hold = False
    ids = False  # False, True or "probe"
    fail = False
    cmd_buf = b""
    deadline = mono() + max_seconds

    def close(s):
        try:
            sel.unregister(s)
        except (KeyError, ValueError):
            pass
        conns.pop(s, None)
        s.close()

    def answer(s, data):
        try:
            s.sendall(data)  # ~80 bytes on a fresh socket buffer: never blocks in practice
        except OSError:
            close(s)

    def handle(s, state):
        """Consumes every complete request in this connection's buffer."""
        buf = state[0]
        for _ in range(1000):
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).split(b"\r\n")
            method, target = head[0].split(b" ")[:2]
            length, auth = 0, b""
            for h in head[1:]:
                k, _, v = h.partition(b":")
                k = k.strip().lower()
                if k == b"content-length":
                    length = int(v.strip())
                elif k == b"authorization":
                    auth = v.strip()
            need = end + 4 + length
            if len(buf) < need:
                return
            t_done = mono()
            body = bytes(buf[end + 4:need])
            del buf[:need]
            t_first = state[1] if state[1] is not None else t_done
            state[1] = t_done if len(buf) else None  # bytes of a pipelined next request: already here
            if auth != want_auth:
                out.write(b"BAD auth " + target[:200] + b"\n")
                answer(s, b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                continue
            if method == b"PUT" and target.startswith(AS_TXN_PREFIX):
                try:
                    events = json.loads(body).get("events", [])
                except ValueError:
                    out.write(b"BAD json " + target[:200] + b"\n")
                    events = []
                if fail:
                    out.write(b"F %.6f %s %d\n" % (t_done, target[len(AS_TXN_PREFIX):][:100], len(events)))
                    out.flush()
                    answer(s, AS_FAIL)
                    continue
                line = "T %.6f %.6f %s %d %d" % (t_first, t_done, target[len(AS_TXN_PREFIX):].decode("latin-1"),
                                                 len(events), len(body))
                if ids == "probe":
                    probes = [e for e in events if str((e.get("content") or {}).get("body", "")).startswith("probe ")]
                    if probes:
                        line += " " + " ".join(str(e.get("event_id", "?")) for e in probes)
                elif ids:
                    line += " " + " ".join(str(e.get("event_id", "?")) for e in events)
                out.write(line.encode() + b"\n")
                if b'"org.matrix.msc3202.' in body:  # MSC3202 E2EE data (device lists, key counts)
                    out.write(b"E " + target[len(AS_TXN_PREFIX):][:100] + b" %d\n" % body.count(b'"org.matrix.msc3202.'))
                out.flush()
                if hold:
                    held.append(s)
                else:
                    answer(s, AS_OK)
            else:
                answer(s, b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")

    running = True
    while running and mono() < deadline:
        for key, _ in sel.select(timeout=1.0):
            if key.data == "listen":
                for _ in range(64):
                    try:
                        s, _ = lsock.accept()
                    except BlockingIOError:
                        break
                    s.setblocking(False)
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns[s] = [bytearray(), None]
                    sel.register(s, selectors.EVENT_READ, "conn")
            elif key.data == "stdin":
                chunk = os.read(stdin.fileno(), 4096)
                if not chunk:
                    running = False
                    break
                cmd_buf += chunk
                while b"\n" in cmd_buf:
                    cmd, cmd_buf = cmd_buf.split(b"\n", 1)
                    cmd = cmd.strip().decode()
                    if cmd == "ids 1":
                        ids = True
                    elif cmd == "ids 0":
                        ids = False
                    elif cmd == "ids probe":
                        ids = "probe"
                    elif cmd == "fail 1":
                        fail = True
                    elif cmd == "fail 0":
                        fail = False
                        out.write(b"O %.6f\n" % mono())
                        out.flush()
                    elif cmd == "hold":
                        hold = True
                    elif cmd == "release":
                        hold = False
                        n = len(held)
                        t = mono()
                        for h in held:
                            if h in conns:
                                answer(h, AS_OK)
                        held.clear()
                        out.write(b"R %.6f %d\n" % (t, n))
                        out.flush()
                    elif cmd == "quit":
                        running = False
            else:
                s = key.fileobj
                state = conns.get(s)
                if state is None:
                    continue
                try:
                    chunk = s.recv(1 << 20)
                except BlockingIOError:
                    continue
                except OSError:
                    close(s)
                    continue
                if not chunk:
                    close(s)
                    continue
                if state[1] is None:
                    state[1] = mono()
                state[0] += chunk
                try:
                    handle(s, state)
                except (ValueError, IndexError) as e:  # not HTTP as we know it: report, drop the connection
                    out.write(b"BAD request " + repr(e).encode()[:200] + b"\n")
                    close(s)
        out.flush()
    for s in list(conns):
        close(s)
    lsock.close()
    return 0


class Listener:
    """The as-listener process, and a thread that reads its reports."""

    def __init__(self, hs_token, max_seconds):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "as-listener", "--port", str(self.port), "--hs-token", hs_token,
             "--max-seconds", str(int(max_seconds))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None)
        self.cond = threading.Condition()
        self.txns = []       # (t_first, t_done, txn_id, n_events, body_bytes)
        self.arrival = {}    # event_id -> t_done (only while ids are on)
        self.bad = []
        self.released = []   # (t, n)
        self.failed = []     # (t, txn_id, n_events) of transactions answered 500 ("fail 1")
        self.ok_again = []   # t of each "fail 0"
        self.e2ee_txns = []  # (txn_id, number of org.matrix.msc3202.* keys) of transactions with MSC3202 data
        self.ready = False
        self.eof = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        with self.cond:
            self.cond.wait_for(lambda: self.ready or self.eof, timeout=10)
        if not self.ready:
            self.close()
            raise BenchError("the appservice listener did not start")

    @property
    def url(self):
        return f"http://{HOST}:{self.port}"

    def _read(self):
        for raw in self.proc.stdout:  # ends at EOF (the process exits)
            parts = raw.decode("latin-1").split()
            if not parts:
                continue
            with self.cond:
                if parts[0] == "T":
                    t_done = float(parts[2])
                    self.txns.append((float(parts[1]), t_done, parts[3], int(parts[4]), int(parts[5])))
                    for eid in parts[6:]:
                        self.arrival[eid] = t_done
                elif parts[0] == "E":
                    self.e2ee_txns.append((parts[1], int(parts[2])))
                elif parts[0] == "F":
                    self.failed.append((float(parts[1]), parts[2], int(parts[3])))
                elif parts[0] == "O":
                    self.ok_again.append(float(parts[1]))
                elif parts[0] == "R":
                    self.released.append((float(parts[1]), int(parts[2])))
                elif parts[0] == "READY":
                    self.ready = True
                else:
                    self.bad.append(" ".join(parts)[:300])
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def command(self, cmd):
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()

    def snapshot(self):
        with self.cond:
            return list(self.txns)

    def wait_event(self, event_id, timeout):
        """t_done of the transaction that carried event_id, or None after `timeout` s."""
        with self.cond:
            self.cond.wait_for(lambda: event_id in self.arrival or self.eof, timeout=timeout)
            return self.arrival.get(event_id)

    def wait_release(self, n_before, timeout):
        with self.cond:
            self.cond.wait_for(lambda: len(self.released) > n_before or self.eof, timeout=timeout)
            return self.released[n_before] if len(self.released) > n_before else None

    def cpu_ms(self):
        return proc_cpu_ms(self.proc.pid)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.command("quit")
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # our own child, by pid
                self.proc.wait(5)
        self.thread.join(5)


def thread_cpu_ms(pid):
    """{tid: utime+stime ms} of every thread of a process (threads that exit in between drop out)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")
    return out


def busiest_threads(before, after, seconds, n=3):
    """The n largest per-thread CPU uses (in cores) between two thread_cpu_ms() snapshots."""
    use = sorted(((after[t] - before.get(t, 0.0)) / 1000.0 / seconds for t in after), reverse=True)
    return [round(u, 3) for u in use[:n]]


def sender_thread_load(load0, load1, drain0, drain1, seconds):
    """CPU (cores) during the load of the thread that was busiest during the drain."""
    busiest = max(drain1, key=lambda t: drain1[t] - drain0.get(t, 0.0), default=None)
    if busiest is None or busiest not in load1:
        return float("nan")
    return round((load1[busiest] - load0.get(busiest, 0.0)) / 1000.0 / seconds, 3)


class AsStatus:
    """GET /_trestle/admin/v1/appservices/{id}/status with the as_token (None when the server has
    no such endpoint: an older baseline)."""

    def __init__(self, port, as_token):
        self.c = Client(port, as_token, timeout=30)
        self.available = True

    def get(self):
        if not self.available:
            return None
        self.c.send_request("GET", f"/_trestle/admin/v1/appservices/{q(AS_ID)}/status")
        st, body = self.c.read_response(expect=None)
        if st == 404 and (body or {}).get("errcode") in ("M_UNRECOGNIZED", "M_NOT_FOUND"):
            self.available = False
            return None
        if st != 200:
            raise BenchError(f"appservice status: HTTP {st}: {body}")
        return body

    def close(self):
        self.c.close()


def wait_caught_up(status, listener, timeout_s, poll_s=0.02):
    """Polls until the appservice has nothing left (stream_lag 0 and no queued transaction).
    Returns (t when first seen caught up, last status), or (None, last status) after timeout_s.
    Without the status endpoint: caught up once no transaction has arrived for 1 s."""
    deadline = mono() + timeout_s
    last = None
    for _ in range(int(timeout_s / poll_s) + 10):
        now = mono()
        if now > deadline:
            break
        last = status.get()
        if last is None:
            txns = listener.snapshot()
            quiet_since = txns[-1][1] if txns else 0.0
            if now - quiet_since > 1.0:
                return (quiet_since if txns else now), None
        elif last.get("stream_lag", 1) == 0 and last.get("queued_txns", 1) == 0:
            return mono(), last
        time.sleep(poll_s)
    return None, last


def txns_between(txns, t0, t1):
    return [t for t in txns if t0 <= t[1] < t1]


def bench_appservice(binary, workdir, args):
    """Its own fresh server (so the sender thread does not run during the other benchmarks), with
    one appservice whose user namespace covers a bridged user joined to the busy room."""
    as_token = "as_bench_" + os.urandom(12).hex()
    hs_token = "hs_bench_" + os.urandom(12).hex()
    listener = Listener(hs_token, max_seconds=3600)
    srv = status = None
    out = {}
    try:
        asdir = os.path.join(workdir, "appservice")
        os.makedirs(asdir)
        reg = os.path.join(asdir, "bench-appservice.yaml")
        with open(reg, "w") as f:
            f.write(f"id: {AS_ID}\nurl: \"{listener.url}\"\nas_token: \"{as_token}\"\nhs_token: \"{hs_token}\"\n"
                    "sender_localpart: benchbridgebot\nrate_limited: false\nreceive_ephemeral: false\n"
                    "namespaces:\n  users:\n    - exclusive: true\n      regex: \"@bridged_.*:localhost\"\n"
                    "  aliases: []\n  rooms: []\n")
        srv = Server(binary, asdir, args.log_level, appservice_files=[reg])
        srv.start()
        status = AsStatus(srv.port, as_token)
        n_users = args.send_users
        conns = max(args.send_connections, n_users)
        users, room_id = make_room(srv.port, "asload", n_users)
        tokens = [t for t, _ in users]
        asc = Client(srv.port, as_token)
        bridged = asc.call("POST", CLIENT + "/register",
                           {"type": "m.login.application_service", "username": "bridged_0", "inhibit_login": True})
        asc.call("POST", f"{CLIENT}/rooms/{q(room_id)}/join?user_id={q(bridged['user_id'])}", {})
        asc.close()
        tag = f"a{os.getpid()}x{int(time.time() * 1000)}"

        # Warm-up (and a check that delivery works at all), then let the appservice catch up.
        if args.as_warmup > 0:
            w, _ = run_wrk(srv.port, tokens, room_id, n_users, conns, args.as_warmup, tag + "w")
            if w["non_2xx"]:
                raise BenchError(f"appservice warm-up: {w['non_2xx']} non-2xx, last {w['last_bad_status']} "
                                 f"{w['last_bad_body']}")
        t_ok, st = wait_caught_up(status, listener, args.as_drain_timeout)
        if t_ok is None:
            raise BenchError(f"appservice not caught up {args.as_drain_timeout} s after the warm-up: {st}")
        if not listener.snapshot():
            raise BenchError("the appservice received no transaction during the warm-up")
        out["as_status_endpoint"] = status.available

        # 1. Delivery throughput while wrk sends into the room.
        log(f"[bench] appservice delivery while sending ({args.as_duration} s)...")
        pos0 = stream_position(srv.port, tokens[0])
        cpu0, lcpu0, th0 = proc_cpu_ms(srv.pid), listener.cpu_ms(), thread_cpu_ms(srv.pid)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = mono()
        res, text = run_wrk(srv.port, tokens, room_id, n_users, conns, args.as_duration, tag)
        t1 = mono()
        cpu1, lcpu1, th1 = proc_cpu_ms(srv.pid), listener.cpu_ms(), thread_cpu_ms(srv.pid)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        st_end = status.get()
        t_caught, st_caught = wait_caught_up(status, listener, args.as_drain_timeout)
        # Requests wrk left in flight when it stopped may commit a little later: settle, catch up
        # again, and only then count what was stored and delivered.
        time.sleep(0.3)
        wait_caught_up(status, listener, args.as_drain_timeout)
        pos1 = stream_position(srv.port, tokens[0])
        t2 = mono()
        cpu2, lcpu2 = proc_cpu_ms(srv.pid), listener.cpu_ms()
        srv.check_alive()
        txns = listener.snapshot()
        during = txns_between(txns, t0, t1)
        after = txns_between(txns, t1, float("inf"))
        window = t1 - t0
        ev_during = sum(t[3] for t in during)
        ev_after = sum(t[3] for t in after)
        stored = (pos1 - pos0) if pos0 is not None and pos1 is not None else -1
        delivered_after_end = ev_after
        drain_s = (after[-1][1] - t1) if after else 0.0
        out.update({
            "as_delivered_events_per_s": ev_during / window,
            "as_delivered_txns_per_s": len(during) / window,
            "as_events_per_txn": ev_during / max(1, len(during)),
            "as_send_req_per_s": res["requests"] / (res["duration_us"] / 1e6),
            "as_send_p50_ms": res["lat_p50_us"] / 1000.0,
            "as_send_p99_ms": res["lat_p99_us"] / 1000.0,
            "as_send_non_2xx": res["non_2xx"],
            "as_send_socket_errors": res["err_connect"] + res["err_read"] + res["err_write"] + res["err_timeout"],
            "as_events_stored": stored,
            "as_events_delivered": ev_during + ev_after,
            "as_missing_events": (stored - ev_during - ev_after) if stored >= 0 else -1,
            "as_lag_at_end": st_end.get("stream_lag", -1) if st_end else -1,
            "as_queued_txns_at_end": st_end.get("queued_txns", -1) if st_end else -1,
            "as_events_outstanding_at_end": delivered_after_end,
            "as_caught_up_after_ms": ((t_caught - t1) * 1000.0) if t_caught is not None else float("nan"),
            "as_last_txn_after_load_ms": drain_s * 1000.0,
            "as_catchup_events_per_s": (ev_after / drain_s) if drain_s > 0.05 else float("nan"),
            "as_server_cores": (cpu1 - cpu0) / 1000.0 / window,
            "as_server_cpu_ms_per_event": (cpu2 - cpu0) / max(1, ev_during + ev_after),
            "as_server_busiest_threads_cores": busiest_threads(th0, th1, window),
            "as_listener_cores": (lcpu1 - lcpu0) / 1000.0 / window,
            "as_listener_cpu_ms_per_txn": (lcpu2 - lcpu0) / max(1, len(during) + len(after)),
            "as_wrk_cores": ((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)) / window,
            "as_duration_s": window,
        })
        if args.verbose:
            log(text)

        # 2. Drain capacity: hold one transaction unanswered while wrk fills a backlog, then
        # release it and time the backlog's delivery (no sending at the same time).
        if args.as_backlog_seconds > 0:
            log(f"[bench] appservice backlog drain ({args.as_backlog_seconds} s of sends held back)...")
            n_rel = len(listener.released)
            n_txn = len(listener.snapshot())
            listener.command("hold")
            posb0 = stream_position(srv.port, tokens[0])
            res_b, _ = run_wrk(srv.port, tokens, room_id, n_users, conns, args.as_backlog_seconds, tag + "b")
            posb1 = stream_position(srv.port, tokens[0])
            st_hold = status.get()
            th_r0, cpu_r0, lcpu_r0 = thread_cpu_ms(srv.pid), proc_cpu_ms(srv.pid), listener.cpu_ms()
            listener.command("release")
            rel = listener.wait_release(n_rel, 10)
            if rel is None:
                raise BenchError("the listener did not confirm the release")
            t_rel = rel[0]
            t_caught_b, _ = wait_caught_up(status, listener, args.as_drain_timeout)
            t_end_b = mono()
            th_r1, cpu_r1, lcpu_r1 = thread_cpu_ms(srv.pid), proc_cpu_ms(srv.pid), listener.cpu_ms()
            txns_b = listener.snapshot()[n_txn:]
            after_rel = [t for t in txns_b if t[1] >= t_rel]
            backlog_events = sum(t[3] for t in txns_b)
            ev_after_rel = sum(t[3] for t in after_rel)
            drain_b = (after_rel[-1][1] - t_rel) if after_rel else 0.0
            out.update({
                "as_backlog_events": (posb1 - posb0) if posb0 is not None and posb1 is not None else -1,
                "as_backlog_lag_at_release": st_hold.get("stream_lag", -1) if st_hold else -1,
                "as_backlog_delivered": backlog_events,
                "as_drain_events_per_s": (ev_after_rel / drain_b) if drain_b > 0 else float("nan"),
                "as_drain_txns_per_s": (len(after_rel) / drain_b) if drain_b > 0 else float("nan"),
                "as_drain_ms": drain_b * 1000.0,
                "as_drain_caught_up_ms": ((t_caught_b - t_rel) * 1000.0) if t_caught_b else float("nan"),
                "as_drain_server_cores": (cpu_r1 - cpu_r0) / 1000.0 / max(1e-3, t_end_b - t_rel),
                "as_drain_server_cpu_us_per_event": (cpu_r1 - cpu_r0) * 1000.0 / max(1, ev_after_rel),
                "as_drain_listener_cores": (lcpu_r1 - lcpu_r0) / 1000.0 / max(1e-3, t_end_b - t_rel),
                "as_drain_busiest_threads_cores": busiest_threads(th_r0, th_r1, max(1e-3, t_end_b - t_rel)),
                # The thread busiest while draining (nothing else runs then) is the appservice's
                # sender thread: its CPU use during the load, too.
                "as_sender_thread_cores_during_load": sender_thread_load(th0, th1, th_r0, th_r1, window),
                "as_backlog_send_req_per_s": res_b["requests"] / (res_b["duration_us"] / 1e6),
            })
            if t_caught_b is None:
                raise BenchError(f"appservice backlog not delivered within {args.as_drain_timeout} s")

        # 3. Latency: one message at a time, send -> the listener has the transaction with it.
        log(f"[bench] appservice delivery latency ({args.as_latency_samples} samples)...")
        listener.command("ids 1")
        time.sleep(0.2)
        c = Client(srv.port, tokens[0], timeout=30)
        lat, send_ms, misses, before_reply = [], [], 0, 0
        lcpu_l0 = listener.cpu_ms()
        deadline = mono() + args.as_latency_max_seconds
        for i in range(args.as_latency_samples):
            if mono() > deadline:
                break
            ts = mono()
            c.send_request("PUT", f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/{tag}l{i}",
                           {"msgtype": "m.text", "body": f"latency {tag} {i}"})
            _, r = c.read_response()
            t_reply = mono()
            t_arr = listener.wait_event(r["event_id"], timeout=10)
            if t_arr is None:
                misses += 1
                continue
            lat.append((t_arr - ts) * 1000.0)
            send_ms.append((t_reply - ts) * 1000.0)
            before_reply += t_arr < t_reply
            time.sleep(args.as_latency_gap_ms / 1000.0)
        c.close()
        listener.command("ids 0")
        if len(lat) < 10:
            raise BenchError(f"appservice latency: only {len(lat)} samples ({misses} not delivered within 10 s)")
        out.update({
            "as_latency_p50_ms": percentile(lat, 50),
            "as_latency_p90_ms": percentile(lat, 90),
            "as_latency_p99_ms": percentile(lat, 99),
            "as_latency_max_ms": max(lat),
            "as_latency_send_p50_ms": percentile(send_ms, 50),
            "as_latency_samples": len(lat),
            "as_latency_misses": misses,
            "as_latency_before_send_reply": before_reply,
            "as_latency_listener_cpu_ms_per_sample": (listener.cpu_ms() - lcpu_l0) / len(lat),
        })
        with listener.cond:
            dups = len(listener.txns) - len({t[2] for t in listener.txns})
            out["as_duplicate_txns"] = dups
            out["as_bad_requests"] = len(listener.bad)
            if listener.bad:
                out["as_bad_first"] = listener.bad[0]
        srv.check_alive()
    finally:
        if status is not None:
            status.close()
        if srv is not None:
            srv.stop()
        listener.close()
    return out


# ----------------------------------------------------------------------------- run and report

ALL = ["startup", "send", "sync", "longpoll", "appservice"]


def run(args):
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else ALL
    for s in only:
        if s not in ALL:
            raise BenchError(f"unknown benchmark '{s}' (choose from {','.join(ALL)})")
    if ("send" in only or "appservice" in only) and not shutil.which("wrk"):
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
        if "appservice" in only:
            # A second fresh server, configured with the benchmark's appservice.
            log("[bench] appservice delivery (its own fresh server)...")
            try:
                results.update(bench_appservice(binary, workdir, args))
            except (BenchError, OSError, http.client.HTTPException, subprocess.SubprocessError, ValueError,
                    KeyError) as e:
                # Reported, and the other results kept (an old baseline may have no appservices).
                log(f"[bench] appservice FAILED: {type(e).__name__}: {e}")
                results["appservice_error"] = f"{type(e).__name__}: {e}"
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
    if "appservice_error" in r:
        lines.append(f"appservice             FAILED: {r['appservice_error']}")
    if "as_delivered_events_per_s" in r:
        lines.append(f"appservice delivery    {r['as_delivered_events_per_s']:.0f} events/s in "
                     f"{r['as_delivered_txns_per_s']:.0f} txns/s ({r['as_events_per_txn']:.1f} events/txn) while "
                     f"sending {r['as_send_req_per_s']:.0f} req/s (non-2xx {r['as_send_non_2xx']}); at the end "
                     f"lag {r['as_lag_at_end']} ({r['as_queued_txns_at_end']} txns queued, "
                     f"{r['as_events_outstanding_at_end']} events), caught up {r['as_caught_up_after_ms']:.0f} ms "
                     f"after the load; {r['as_events_delivered']}/{r['as_events_stored']} events delivered; "
                     f"CPU cores: server {r['as_server_cores']:.2f} (busiest threads "
                     f"{r['as_server_busiest_threads_cores']}), listener {r['as_listener_cores']:.2f}, "
                     f"wrk {r['as_wrk_cores']:.2f}")
    if "as_drain_events_per_s" in r:
        lines.append(f"appservice drain       {r['as_backlog_delivered']} held-back events delivered in "
                     f"{r['as_drain_ms']:.0f} ms: {r['as_drain_events_per_s']:.0f} events/s, "
                     f"{r['as_drain_txns_per_s']:.0f} txns/s (listener {r['as_drain_listener_cores']:.2f} cores; "
                     f"{r['as_drain_server_cpu_us_per_event']:.1f} server "
                     f"CPU us/event; busiest threads {r['as_drain_busiest_threads_cores']} cores; that thread "
                     f"used {r['as_sender_thread_cores_during_load']} cores during the load above)")
    if "as_latency_p50_ms" in r:
        lines.append(f"appservice latency     p50 {r['as_latency_p50_ms']:.2f} ms, p90 {r['as_latency_p90_ms']:.2f} ms, "
                     f"p99 {r['as_latency_p99_ms']:.2f} ms, max {r['as_latency_max_ms']:.2f} ms "
                     f"({r['as_latency_samples']} samples, {r['as_latency_misses']} missed; send p50 "
                     f"{r['as_latency_send_p50_ms']:.2f} ms; duplicate txns {r['as_duplicate_txns']})")
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
    ("as_delivered_events_per_s", True), ("as_send_req_per_s", True), ("as_caught_up_after_ms", False),
    ("as_drain_events_per_s", True), ("as_drain_server_cpu_us_per_event", False),
    ("as_latency_p50_ms", False), ("as_latency_p99_ms", False),
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
    r.add_argument("--as-duration", type=int, default=10,
                   help="appservice: seconds of sending while delivery is measured (default 10)")
    r.add_argument("--as-warmup", type=int, default=2, help="appservice: seconds of warm-up (default 2)")
    r.add_argument("--as-backlog-seconds", type=int, default=5,
                   help="appservice: seconds of sending while a transaction is held, then the backlog's "
                        "drain is timed (default 5, at most 20; 0 skips it)")
    r.add_argument("--as-drain-timeout", type=float, default=120.0,
                   help="appservice: longest wait for the appservice to catch up (default 120 s)")
    r.add_argument("--as-latency-samples", type=int, default=300)
    r.add_argument("--as-latency-gap-ms", type=float, default=5.0,
                   help="appservice: pause between latency samples (default 5 ms)")
    r.add_argument("--as-latency-max-seconds", type=float, default=120.0)
    li = sub.add_parser("as-listener", help="(internal) the appservice benchmark's HTTP listener")
    li.add_argument("--port", type=int, required=True)
    li.add_argument("--hs-token", required=True)
    li.add_argument("--max-seconds", type=float, default=3600)
    c = sub.add_parser("compare", help="compare JSON results: BASE... -- NEW...")
    c.add_argument("files", nargs="+")
    args = ap.parse_args()

    if args.cmd == "as-listener":
        return listener_main(args.port, args.hs_token, args.max_seconds)
    if args.cmd == "run" and not 0 <= args.as_backlog_seconds <= 20:
        ap.error("--as-backlog-seconds must be 0..20 (a held transaction times out after 30 s)")
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
        "longpoll_count" in res and res["longpoll_answered_with_event"] != res["longpoll_count"]) or (
        "appservice_error" in res or res.get("as_send_non_2xx", 0) or res.get("as_missing_events", 0) > 0
        or res.get("as_duplicate_txns", 0) or res.get("as_bad_requests", 0) or res.get("as_latency_misses", 0))
    return 2 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
