#!/usr/bin/python3
"""Send into a big room, A/B, on a room prepared once (stdlib only; Debian's python3).

  bigroom.py prepare --dir D [--members 1000,10000] [--binary B]   grow the rooms once (slow)
  bigroom.py compare --dir D --size 1000 A B [--rounds 2]         server CPU ms per event, B/A
  bigroom.py joins --dir D --size 10000 A B [--joins 500]          server CPU ms per join, B/A
  bigroom.py serve --dir D --size 1000 BINARY                     a server on a copy, for perf

targets.py grows its room again on every run (minutes for 10,000 members); this grows each room
once (the same appservice trick: `url: null`, non-exclusive `@bench_.*`, join by identity
assertion), keeps the data dir, and measures every run on a fresh copy of it, so A and B send into
the same database. Each measurement: 1 s of wrk warm-up, the in-flight sends settle, then
--duration s of send.lua (4 senders, --connections); server CPU (utime+stime) / 2xx answers.
Rounds alternate the order (A B, then B A). Only 127.0.0.1 is contacted.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import targets as tg  # noqa: E402
import trestle_bench as tb  # noqa: E402


def prepare(args):
    os.makedirs(args.dir, exist_ok=True)
    for size in [int(m) for m in args.members.split(",")]:
        wd = os.path.join(args.dir, f"m{size}")
        if os.path.exists(os.path.join(wd, "meta.json")):
            tb.log(f"[bigroom] {wd} exists: kept")
            continue
        shutil.rmtree(wd, ignore_errors=True)
        os.makedirs(wd)
        srv, as_token = tg.members_server(args.binary, wd, argparse.Namespace(log_level="warn"))
        srv.start()
        try:
            tokens, room_id = tg.senders_and_room(srv, as_token, args.senders, "s")
            t0 = time.monotonic()
            done = tg.add_members(srv.port, as_token, room_id, "bench_m", args.senders, size - args.senders,
                                  args.setup_conns, t0 + args.setup_max_seconds)
            tb.log(f"[bigroom] {done + args.senders} members in {time.monotonic() - t0:.0f} s")
            with open(os.path.join(wd, "meta.json"), "w") as f:
                json.dump({"tokens": tokens, "room_id": room_id, "members": done + args.senders,
                           "config": srv.config}, f)
        finally:
            srv.stop()


class Copy:
    """A server of `binary` on a fresh copy of a prepared room's data dir and config."""

    def __init__(self, binary, prepared, log_level):
        self.tmp = tempfile.mkdtemp(prefix="trestle-bigroom-")
        with open(os.path.join(prepared, "meta.json")) as f:
            self.meta = json.load(f)
        reg = os.path.join(self.tmp, "members-appservice.yaml")
        shutil.copy2(os.path.join(prepared, "members-appservice.yaml"), reg)
        self.srv = tb.Server(binary, self.tmp, log_level, appservice_files=[reg])
        data = os.path.join(self.tmp, "data")
        shutil.rmtree(data, ignore_errors=True)
        shutil.copytree(os.path.join(prepared, "data"), data)

    def close(self):
        self.srv.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def measure(binary, prepared, args):
    cp = Copy(binary, prepared, args.log_level)
    try:
        cp.srv.start()
        tokens, room_id, port = cp.meta["tokens"], cp.meta["room_id"], cp.srv.port
        wargs = argparse.Namespace(warmup=args.warmup, duration=args.duration, max_duration=args.max_duration,
                                   wrk_threads=4)
        res = tg.wrk_measure(port, lambda: tb.proc_cpu_ms(cp.srv.pid), tokens, room_id, args.connections, wargs,
                             f"b{os.getpid()}x{int(time.time() * 1000)}", settle=lambda: tg.settled(port, tokens[0]))
        cp.srv.check_alive()
        if res["non_2xx"] or res["socket_errors"]:
            raise tb.BenchError(f"{res['non_2xx']} non-2xx, {res['socket_errors']} socket errors {res.get('last_bad')}")
        return res
    finally:
        cp.close()


def measure_joins(binary, prepared, args):
    """--joins new members (registered by the appservice, as prepare's) join the prepared room
    over --setup-conns connections: server CPU per register+join."""
    cp = Copy(binary, prepared, args.log_level)
    try:
        cp.srv.start()
        tokens, room_id, port = cp.meta["tokens"], cp.meta["room_id"], cp.srv.port
        as_token = next(line.split('"')[1] for line in open(os.path.join(cp.tmp, "members-appservice.yaml"))
                        if line.startswith("as_token:"))
        t0, cpu0 = time.monotonic(), tb.proc_cpu_ms(cp.srv.pid)
        done = tg.add_members(port, as_token, room_id, "bench_j", 0, args.joins, args.setup_conns, t0 + 300)
        dt, cpu = time.monotonic() - t0, tb.proc_cpu_ms(cp.srv.pid) - cpu0
        cp.srv.check_alive()
        return {"joins_per_s": done / dt, "cpu_ms_per_join": cpu / max(1, done)}
    finally:
        cp.close()


def compare(args, joins=False):
    prepared = os.path.join(args.dir, f"m{args.size}")
    a, b = args.binaries
    got = {"A": [], "B": []}
    for r in range(args.rounds):
        order = [("A", a), ("B", b)] if r % 2 == 0 else [("B", b), ("A", a)]
        for name, binary in order:
            res = (measure_joins if joins else measure)(binary, prepared, args)
            got[name].append(res)
            tb.log(f"[bigroom] round {r + 1} {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in res.items()
                                                                  if isinstance(v, float)))
    print(f"members {args.size}, {args.connections} connections, {args.rounds} rounds (medians)")
    for k in (("joins_per_s", "cpu_ms_per_join") if joins else ("req_per_s", "cpu_ms_per_event", "p50_ms", "p99_ms",
                                                                   "cores")):
        ma = statistics.median(x[k] for x in got["A"])
        mb = statistics.median(x[k] for x in got["B"])
        print(f"  {k:18s} A {ma:10.3f}  B {mb:10.3f}  B/A {mb / ma if ma else float('nan'):.3f}")


def serve(args):
    cp = Copy(args.binaries[0], os.path.join(args.dir, f"m{args.size}"), args.log_level)
    try:
        cp.srv.start()
        m = cp.meta
        print(json.dumps({"pid": cp.srv.pid, "port": cp.srv.port, "tokens": m["tokens"], "room_id": m["room_id"]}),
              flush=True)
        tb.log(f"[bigroom] serving pid {cp.srv.pid} on {cp.srv.port}; BENCH_TOKENS={','.join(m['tokens'])} "
               f"BENCH_ROOM={tb.q(m['room_id'])}; Ctrl-C or SIGTERM stops")
        while cp.srv.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        cp.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["prepare", "compare", "joins", "serve"])
    ap.add_argument("binaries", nargs="*")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--binary", default="build/trestle", help="prepare: the server that grows the rooms")
    ap.add_argument("--members", default="1000,10000")
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--setup-conns", type=int, default=8)
    ap.add_argument("--setup-max-seconds", type=float, default=900)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--joins", type=int, default=500, help="joins: how many new members join")
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--max-duration", type=int, default=60)
    ap.add_argument("--log-level", default=None, help="server log_level (default: the generated config's, as targets.py)")
    args = ap.parse_intermixed_args()
    if args.cmd == "prepare":
        prepare(args)
    elif args.cmd in ("compare", "joins"):
        if len(args.binaries) != 2:
            ap.error(f"{args.cmd} takes two binaries")
        compare(args, joins=args.cmd == "joins")
    else:
        if len(args.binaries) != 1:
            ap.error("serve takes one binary")
        serve(args)


if __name__ == "__main__":
    main()
