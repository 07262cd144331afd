#!/usr/bin/python3
"""Memory after a burst, CPU per event, and start-up time, for one or more server variants measured
in the same run (alternating), each against a fresh server (trestle_bench.Server).

  memory_bench.py load [--variant NAME=BINARY ...] [--env NAME:VAR=VALUE ...] [--rounds 2]
      Per variant and round: a fresh server; VmRSS idle; 4 users register and join a room; a burst
      of load: wrk sends of small events (--small-s) and then of 60 KB events (--big-s) while one
      thread per user loops incremental /sync, then an initial /sync and 10 pages of /messages
      (limit 100) per user. Reports server CPU ms per stored event over the burst, the RSS peak
      during the burst (sampled every 100 ms) and VmHWM, then VmRSS every second for --rest-s
      seconds after the burst, and the restart time on the populated database.
  memory_bench.py startup [--variant ...] [--env ...] [--starts 20]
      exec -> first 200 of GET /_matrix/client/versions on a fresh data dir (database created,
      migrations run, signing key generated), then again on that data dir (restart): wall ms and the
      server's CPU ms (utime+stime) at that moment; medians.

--variant defaults to base=build/trestle. --env sets an environment variable for one variant's
server process only (e.g. LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2, MALLOC_ARENA_MAX=2).
Needs wrk. Only 127.0.0.1 is contacted; every loop is bounded in count and time.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trestle_bench as tb  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


def status_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[key] = int(val.split()[0])
    return out


def parse_variants(args):
    variants = {}
    for v in args.variant or ["base=build/trestle"]:
        name, _, path = v.partition("=")
        if not path:
            raise SystemExit(f"--variant {v}: expected NAME=BINARY")
        path = os.path.abspath(path)
        if not os.access(path, os.X_OK):
            raise SystemExit(f"--variant {v}: {path} is not an executable")
        variants[name] = {"binary": path, "env": {}}
    for e in args.env or []:
        name, _, kv = e.partition(":")
        key, _, val = kv.partition("=")
        if name not in variants or not key:
            raise SystemExit(f"--env {e}: expected NAME:VAR=VALUE with NAME a --variant")
        variants[name]["env"][key] = val
    return variants


def start_with_env(srv, env):
    """Server.start with `env` added to the server's environment only."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return srv.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def wrk(port, tokens, room_id, connections, seconds, body_bytes, tag):
    env = dict(os.environ, BENCH_TOKENS=",".join(tokens), BENCH_ROOM=tb.q(room_id), BENCH_RUN=tag,
               BENCH_BODY_BYTES=str(body_bytes))
    cmd = ["wrk", "-t", str(len(tokens)), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
           "-s", os.path.join(BENCH_DIR, "memory_send.lua"), f"http://{tb.HOST}:{port}"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    if p.returncode != 0:
        raise tb.BenchError(f"wrk failed ({p.returncode}): {p.stderr}\n{p.stdout}")
    for line in p.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            res = json.loads(line[len("BENCH_JSON "):])
            if res["non_2xx"]:
                raise tb.BenchError(f"wrk: {res['non_2xx']} non-2xx answers")
            return res
    raise tb.BenchError("wrk printed no BENCH_JSON line:\n" + p.stdout + p.stderr)


class Syncer(threading.Thread):
    """Loops incremental /sync for one user until stopped (bounded by max_s)."""

    def __init__(self, port, token, since, max_s):
        super().__init__(daemon=True)
        self.port, self.token, self.since, self.max_s = port, token, since, max_s
        self.stop_flag = threading.Event()
        self.count = 0
        self.error = None

    def run(self):
        c = tb.Client(self.port, self.token, timeout=30)
        deadline = time.monotonic() + self.max_s
        try:
            while not self.stop_flag.is_set() and time.monotonic() < deadline:
                r = c.call("GET", f"{tb.CLIENT}/sync?since={tb.q(self.since)}&timeout=500")
                self.since = r["next_batch"]
                self.count += 1
        except Exception as e:  # reported by the caller
            self.error = f"{type(e).__name__}: {e}"
        finally:
            c.close()


class RssSampler(threading.Thread):
    def __init__(self, pid, period_s=0.1, max_s=300):
        super().__init__(daemon=True)
        self.pid, self.period_s, self.max_s = pid, period_s, max_s
        self.stop_flag = threading.Event()
        self.peak = 0

    def run(self):
        deadline = time.monotonic() + self.max_s
        while not self.stop_flag.is_set() and time.monotonic() < deadline:
            try:
                self.peak = max(self.peak, status_kb(self.pid)["VmRSS"])
            except OSError:
                return
            time.sleep(self.period_s)


def load_once(name, variant, args):
    out = {"variant": name}
    with tempfile.TemporaryDirectory(prefix="trestle-bench-memory-") as work:
        srv = tb.Server(variant["binary"], work, "warn")
        try:
            out["startup_ms"] = start_with_env(srv, variant["env"])
            time.sleep(1.0)
            out["rss_idle_kb"] = status_kb(srv.pid)["VmRSS"]
            users, room_id = tb.make_room(srv.port, f"m{int(time.time())}", args.users)
            tokens = [t for t, _ in users]
            out["rss_after_register_kb"] = status_kb(srv.pid)["VmRSS"]
            pos0 = tb.stream_position(srv.port, tokens[0])
            syncers = [Syncer(srv.port, t, tb.sync_token(srv.port, t), args.small_s + args.big_s + 60) for t in tokens]
            sampler = RssSampler(srv.pid)
            sampler.start()
            cpu0 = tb.proc_cpu_ms(srv.pid)
            for s in syncers:
                s.start()
            tag = f"m{os.getpid()}x{int(time.time() * 1000)}"
            small = wrk(srv.port, tokens, room_id, args.connections, args.small_s, 0, tag + "s")
            cpu_small = tb.proc_cpu_ms(srv.pid)
            big = wrk(srv.port, tokens, room_id, max(len(tokens), args.connections // 2), args.big_s,
                      args.big_kb * 1024, tag + "b")
            for s in syncers:
                s.stop_flag.set()
            for s in syncers:
                s.join(40)
                if s.error:
                    raise tb.BenchError(f"sync loop: {s.error}")
            # Reads of the history: an initial sync and 10 pages of /messages per user.
            for t in tokens:
                c = tb.Client(srv.port, t)
                c.call("GET", f"{tb.CLIENT}/sync?timeout=0")
                frm = None
                for _ in range(args.pages):
                    path = f"{tb.CLIENT}/rooms/{tb.q(room_id)}/messages?dir=b&limit=100"
                    if frm:
                        path += f"&from={tb.q(frm)}"
                    r = c.call("GET", path)
                    frm = r.get("end")
                    if not frm:
                        break
                c.close()
            cpu1 = tb.proc_cpu_ms(srv.pid)
            pos1 = tb.stream_position(srv.port, tokens[0])
            sampler.stop_flag.set()
            sampler.join(5)
            srv.check_alive()
            events = (pos1 - pos0) if pos0 is not None and pos1 is not None else small["requests"] + big["requests"]
            out.update({
                "events": events,
                "small_events_per_s": small["requests"] / (small["duration_us"] / 1e6),
                "big_events_per_s": big["requests"] / (big["duration_us"] / 1e6),
                "small_cpu_ms_per_event": (cpu_small - cpu0) / max(1, small["requests"]),
                "cpu_ms_per_event": (cpu1 - cpu0) / max(1, events),
                "syncs": sum(s.count for s in syncers),
                "rss_load_peak_kb": sampler.peak,
            })
            # At rest: VmRSS every second.
            t0 = time.monotonic()
            for i in range(1, args.rest_s + 1):
                time.sleep(max(0.0, t0 + i - time.monotonic()))
                st = status_kb(srv.pid)
                out[f"rss_{i}s_kb"] = st["VmRSS"]
                if i == 10:
                    out["rss_anon_10s_kb"] = st.get("RssAnon")
                    out["rss_file_10s_kb"] = st.get("RssFile")
            st = status_kb(srv.pid)
            out["hwm_kb"] = st["VmHWM"]
            out["threads"] = st["Threads"]
            out["shutdown_ms"] = srv.stop()
            out["restart_ms"] = start_with_env(srv, variant["env"])
            srv.stop()
        except Exception:
            tb.log(srv.log_tail())
            raise
        finally:
            srv.stop()
    return out


def startup_once(name, variant):
    with tempfile.TemporaryDirectory(prefix="trestle-bench-start-") as work:
        srv = tb.Server(variant["binary"], work, "warn")
        try:
            fresh = start_with_env(srv, variant["env"])
            fresh_cpu = tb.proc_cpu_ms(srv.pid)
            srv.stop()
            again = start_with_env(srv, variant["env"])
            again_cpu = tb.proc_cpu_ms(srv.pid)
        finally:
            srv.stop()
    return {"variant": name, "startup_ms": fresh, "restart_ms": again, "startup_cpu_ms": fresh_cpu,
            "restart_cpu_ms": again_cpu}


def med(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["load", "startup"])
    ap.add_argument("--variant", action="append", help="NAME=BINARY (repeatable)")
    ap.add_argument("--env", action="append", help="NAME:VAR=VALUE for variant NAME (repeatable)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--starts", type=int, default=20)
    ap.add_argument("--users", type=int, default=4)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--small-s", type=int, default=8)
    ap.add_argument("--big-s", type=int, default=5)
    ap.add_argument("--big-kb", type=int, default=60)
    ap.add_argument("--pages", type=int, default=10)
    ap.add_argument("--rest-s", type=int, default=15)
    ap.add_argument("--out", help="write every run's numbers as JSON here")
    args = ap.parse_args()
    if args.mode == "load" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    variants = parse_variants(args)
    names = list(variants)
    runs = []
    tb.log(f"[memory] load average before: {os.getloadavg()[0]:.2f}")
    n = args.rounds if args.mode == "load" else args.starts
    for r in range(n):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            res = load_once(name, variants[name], args) if args.mode == "load" else startup_once(name, variants[name])
            res["round"] = r
            runs.append(res)
            if args.mode == "load":
                tb.log(f"[memory] round {r} {name}: cpu/event {res['cpu_ms_per_event']:.3f} ms, small "
                       f"{res['small_cpu_ms_per_event']:.3f} ms, load peak {res['rss_load_peak_kb'] / 1024:.0f} MiB, "
                       f"rss 1s {res['rss_1s_kb'] / 1024:.1f} 10s {res['rss_10s_kb'] / 1024:.1f} MiB, "
                       f"hwm {res['hwm_kb'] / 1024:.0f} MiB")
    tb.log(f"[memory] load average after: {os.getloadavg()[0]:.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "variants": variants, "runs": runs}, f, indent=1)
    if args.mode == "load":
        cols = [("startup_ms", "start ms", 1), ("rss_idle_kb", "idle MiB", 1024), ("rss_load_peak_kb", "load peak", 1024),
                ("hwm_kb", "VmHWM", 1024), ("rss_1s_kb", "rss 1s", 1024), ("rss_5s_kb", "rss 5s", 1024),
                ("rss_10s_kb", "rss 10s", 1024), (f"rss_{args.rest_s}s_kb", f"rss {args.rest_s}s", 1024),
                ("rss_anon_10s_kb", "anon 10s", 1024), ("cpu_ms_per_event", "cpu ms/ev", 1),
                ("small_cpu_ms_per_event", "small ms/ev", 1), ("small_events_per_s", "small ev/s", 1),
                ("big_events_per_s", "60K ev/s", 1), ("restart_ms", "restart ms", 1)]
    else:
        # CPU (utime+stime at the first 200, 10 ms ticks) is what a loaded machine does not inflate.
        cols = [("startup_ms", "start ms", 1), ("restart_ms", "restart ms", 1), ("startup_cpu_ms", "start cpu", 1),
                ("restart_cpu_ms", "restart cpu", 1)]
    print("medians over", n, "runs each" if args.mode == "load" else "starts each")
    print(f"{'variant':<14}" + "".join(f"{c[1]:>12}" for c in cols))
    for name in names:
        rs = [x for x in runs if x["variant"] == name]
        print(f"{name:<14}" + "".join(f"{med(rs, c[0]) / c[2]:>12.3f}" if c[2] == 1 and "cpu" in c[0]
                                      else f"{med(rs, c[0]) / c[2]:>12.1f}" for c in cols))
    base = names[0]
    if len(names) > 1:
        print(f"ratios to {base}:")
        for name in names[1:]:
            a = [x for x in runs if x["variant"] == base]
            b = [x for x in runs if x["variant"] == name]
            print(f"{name:<14}" + "".join(f"{med(b, c[0]) / med(a, c[0]):>12.2f}" if med(a, c[0]) else f"{'-':>12}"
                                          for c in cols))


if __name__ == "__main__":
    main()
