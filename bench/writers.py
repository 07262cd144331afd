#!/usr/bin/env python3
"""Send throughput with one event writer and with two (issue 13: rooms sharded over writers).

On a private PostgreSQL cluster (scripts/postgres.sh start, unix socket only), a fresh deployment
per run: the main process and writer1 (`trestle -c homeserver.yaml -c writer1.yaml`), each with a
replication listener named by instance_map. --rooms rooms, half of them owned by each writer when
there are two (a room's writer is sha256(room_id) read little-endian mod 2, as the server computes
it: rooms are created until each writer owns half), each with --senders users; one wrk per room
(bench/send.lua: PUT /send with fresh transaction ids, --connections connections per room), all at
once for --duration seconds. Three runs:

  one     stream_writers: events: [main] (the default); writer1 runs as a plain worker; every send
          goes to main.
  two     stream_writers: events: [main, writer1]; each room's sends go to its own writer.
  nginx   as `two`, the sends through deploy/nginx/trestle-workers.conf, which hands the room writes
          to main and writer1 in turn (a writer that gets a room it does not own forwards it to the
          room's writer, or, before forwarding exists, writes it itself).

Per run: sends/s (all rooms), p50 and p99 (the worst room's), CPU ms per event of the Trestle
processes and of the PostgreSQL cluster, and the events each writer wrote. The machine is shared
(2 cores here, wrk and PostgreSQL on them too): only ratios from one run mean anything.

  /usr/bin/python3 bench/writers.py [--binary build/trestle] [--duration 8] [--rooms 4]
"""

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "deploy", "nginx"))
import engines as eg  # noqa: E402  (the private cluster, a database per server)
import targets as tg  # noqa: E402  (the bench server with its member-making appservice)
import trestle_bench as tb  # noqa: E402
import trestle_nginx  # noqa: E402
import workers as wk  # noqa: E402  (Reader: a worker process; cpu_of)
from trestle_bench import BenchError, log  # noqa: E402

WRITERS = ("main", "writer1")


def writer_of(room_id, writers):
    """The room's event writer, as the server chooses it (Config::event_writer_for)."""
    if len(writers) == 1:
        return writers[0]
    return writers[int.from_bytes(hashlib.sha256(room_id.encode()).digest(), "little") % len(writers)]


def configure(srv, writer1_port, replication, writers):
    """main's replication listener (first in `listeners:`), the shared keys of the deployment."""
    with open(srv.config) as f:
        text = f.read()
    listener = (f"  - port: {replication['main']}\n    bind_addresses: ['127.0.0.1']\n    type: http\n"
                f"    resources:\n      - names: [replication]\n")
    if "\nlisteners:\n" not in text:
        raise BenchError("the generated config has no 'listeners:' block")
    text = text.replace("\nlisteners:\n", "\nlisteners:\n" + listener, 1)
    text += "\ninstance_map:\n" + "".join(f"  {n}:\n    host: 127.0.0.1\n    port: {p}\n" for n, p in replication.items())
    text += f"stream_writers:\n  events: [{', '.join(writers)}]\nworker_replication_secret: {os.urandom(16).hex()}\n"
    with open(srv.config, "w") as f:
        f.write(text)


def one_run(args, cluster, workdir, mode):
    writers = ("main",) if mode == "one" else WRITERS
    srv, as_token = tg.members_server(args.binary, workdir, args)
    eg.use_postgres(srv, cluster)
    writer1_port = tb.free_port()
    replication = {"main": tb.free_port(), "writer1": tb.free_port()}
    configure(srv, writer1_port, replication, writers)
    writer1, ngx = None, None
    try:
        srv.start()
        writer1 = wk.Reader(srv, "writer1", writer1_port, replication["writer1"])
        port_of = {"main": srv.port, "writer1": writer1_port}
        # Rooms until each writer owns its share (the extra rooms stay empty).
        per_writer = {w: [] for w in writers}
        made = 0
        while any(len(r) < args.rooms // len(writers) for r in per_writer.values()):
            made += 1
            if made > 20 * args.rooms:
                raise BenchError(f"{made} rooms and still not {args.rooms // len(writers)} per writer")
            tokens, room_id = tg.senders_and_room(srv, as_token, args.senders, f"{mode}{made}_")
            owned = per_writer[writer_of(room_id, writers)]
            if len(owned) < args.rooms // len(writers):
                owned.append((room_id, tokens))
        if mode == "nginx":
            ngx = trestle_nginx.Nginx(f"127.0.0.1:{srv.port}", [f"127.0.0.1:{srv.port}"],
                                      event_writers=[f"127.0.0.1:{p}" for p in port_of.values()],
                                      prefix="trestle-bench-writers-nginx-")
            ngx.start()
        jobs = [(ngx.port if ngx else port_of[w], room_id, tokens, w)
                for w, rooms in per_writer.items() for room_id, tokens in rooms]
        pids = lambda: [srv.pid, writer1.proc.pid]  # noqa: E731

        def cpu():
            return wk.Cpu(trestle=wk.cpu_of(pids()), pg=cluster.cpu_ms(),
                          nginx=wk.cpu_of(ngx.pids()) if ngx else 0.0)

        def wrk_all(duration, tag):
            out, errors = [None] * len(jobs), []

            def one(i, port, room_id, tokens):
                try:
                    out[i], _ = tb.run_wrk(port, tokens, room_id, 1, args.connections, duration, f"{tag}{i}",
                                           tg.WRK_TIMEOUT_S)
                except Exception as e:  # reported: a failing wrk must not look fast
                    errors.append(e)

            ts = [threading.Thread(target=one, args=(i, p, r, t)) for i, (p, r, t, _) in enumerate(jobs)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            if errors:
                raise BenchError(f"wrk: {errors[0]}")
            return out

        tag = f"w{os.getpid()}x{int(time.time() * 1000)}{mode}"
        if args.warmup:
            wrk_all(args.warmup, tag + "w")
        routed0 = ngx.routed() if ngx else {}
        cpu0 = cpu()
        res = wrk_all(args.duration, tag + "r")
        cpu1 = cpu()
        srv.check_alive()
        if writer1.proc.poll() is not None:
            raise BenchError(f"writer1 died:\n{writer1.log_tail()}")
        ok = sum(r["ok_2xx"] for r in res)
        dur = max(r["duration_us"] for r in res) / 1e6
        spent = (cpu1 - cpu0) / max(1, ok)
        return {"sends_per_s": ok / dur, "p50_ms": max(r["lat_p50_us"] for r in res) / 1000,
                "p99_ms": max(r["lat_p99_us"] for r in res) / 1000,
                "non_2xx": sum(r["non_2xx"] for r in res),
                "errors": sum(r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"] for r in res),
                "trestle_cpu_ms": spent["trestle"], "pg_cpu_ms": spent["pg"], "nginx_cpu_ms": spent["nginx"],
                "owners": {w: sum(r["ok_2xx"] for r, job in zip(res, jobs) if job[3] == w) for w in writers},
                "served": served(ngx, routed0, port_of) if ngx else None,
                "rooms": {w: len(r) for w, r in per_writer.items()}}
    finally:
        if ngx:
            ngx.cleanup()
        if writer1:
            writer1.stop()
        srv.stop()


def served(ngx, before, port_of):
    """Requests per process that nginx passed on during the run (its access log)."""
    time.sleep(0.2)  # the last lines
    names = {f"127.0.0.1:{p}": n for n, p in port_of.items()}
    return {names.get(a, a): n - before.get(a, 0) for a, n in ngx.routed().items()}


def report(out):
    print("send throughput, one wrk per room    sends/s   p50 ms   p99 ms   CPU ms/event: trestle  postgres  nginx"
          "   non-2xx  errors   rooms per writer; sends to each writer's rooms [nginx passed them to]")
    labels = {"one": "one writer (main)", "two": "two writers, each room to its own",
              "nginx": "two writers, through nginx (in turn)"}
    for mode, r in out.items():
        rooms = " ".join(f"{w}={n}" for w, n in sorted(r["rooms"].items()))
        written = " ".join(f"{w}={n}" for w, n in sorted(r["owners"].items()))
        if r["served"]:
            written += " [" + " ".join(f"{w}={n}" for w, n in sorted(r["served"].items())) + "]"
        print(f"  {labels[mode]:36s}{r['sends_per_s']:8.1f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}   "
              f"{r['trestle_cpu_ms']:22.3f} {r['pg_cpu_ms']:9.3f} {r['nginx_cpu_ms']:6.3f}   "
              f"{r['non_2xx']:7d} {r['errors']:7d}   {rooms}; {written}")
    if "one" in out and "two" in out:
        print(f"\ntwo writers / one: {out['two']['sends_per_s'] / max(out['one']['sends_per_s'], 1e-9):.2f}x sends/s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "trestle"))
    ap.add_argument("--duration", type=int, default=8, help="seconds of each run")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of wrk before each run")
    ap.add_argument("--rooms", type=int, default=4, help="rooms sent to at once (an even number: half per writer)")
    ap.add_argument("--senders", type=int, default=4, help="sending users per room")
    ap.add_argument("--connections", type=int, default=4, help="wrk connections per room")
    ap.add_argument("--modes", default="one,two,nginx")
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args()
    tg.raise_nofile(4096)
    cluster = eg.Cluster()
    out = {}
    try:
        for mode in args.modes.split(","):
            workdir = tempfile.mkdtemp(prefix=f"trestle-bench-writers-{mode}-")
            try:
                log(f"[writers] {mode}...")
                out[mode] = one_run(args, cluster, workdir, mode)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    finally:
        cluster.stop()
    report(out)


if __name__ == "__main__":
    main()
