#!/usr/bin/env python3
"""Send and sync on PostgreSQL beside SQLite, in one run (issue 13).

Starts a private PostgreSQL cluster (scripts/postgres.sh start, unix socket only), then, for each
round, a fresh server on each engine in turn (order alternating between rounds), each with the
same room (32 members, --senders sending users) and measures:

  send   wrk PUT /send at --connections connections for --duration seconds: req/s, p50/p99, and CPU
         ms per event of the server AND of the whole PostgreSQL cluster (postmaster and every
         backend: the engine's own work belongs to the cost of a write; SQLite's runs inside the
         server), and the two summed;
  sync   --sync-threads clients each looping GET /sync (no since: the initial sync of the room with
         its history) for --duration seconds: syncs/s and server (+ cluster) CPU ms per sync.

Prints one table, engine by engine, with the PostgreSQL/SQLite ratio. The machine is shared: only
ratios from one run mean anything.

  /usr/bin/python3 bench/engines.py [--binary build/trestle] [--rounds 2] [--duration 8]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import targets as tg  # noqa: E402
import trestle_bench as tb  # noqa: E402
from trestle_bench import CLIENT, BenchError, Client, q  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POSTGRES_SH = os.path.join(ROOT, "scripts", "postgres.sh")


class Cluster:
    """A private PostgreSQL for the run; a database per server; its processes' CPU."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tpgb.", dir="/tmp")
        os.chmod(self.dir, 0o755)
        subprocess.run(["bash", POSTGRES_SH, "start", self.dir], check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(self.dir, "data", "postmaster.pid")) as f:
            self.postmaster = int(f.readline())
        self.count = 0

    def psql(self, sql):
        subprocess.run(["psql", "-h", self.dir, "-U", "postgres", "-d", "postgres", "-q", "-c", sql], check=True,
                       stdout=subprocess.DEVNULL)

    def new_database(self):
        self.count += 1
        name = f"bench{self.count}"
        self.psql(f"DROP DATABASE IF EXISTS {name}")
        self.psql(f"CREATE DATABASE {name}")
        return name

    def cpu_ms(self):
        total = 0.0
        try:
            with open(f"/proc/{self.postmaster}/task/{self.postmaster}/children") as f:
                pids = [self.postmaster] + [int(p) for p in f.read().split()]
        except OSError:
            pids = [self.postmaster]
        for pid in pids:
            try:
                total += tb.proc_cpu_ms(pid)
            except OSError:
                pass  # a backend that ended meanwhile: its CPU is lost (rare; the pool keeps them)
        return total

    def stop(self):
        subprocess.run(["bash", POSTGRES_SH, "stop", self.dir], stdout=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


def use_postgres(srv, cluster):
    """Rewrites the generated config's `database:` section to a new database of the cluster."""
    name = cluster.new_database()
    out, skipping = [], False
    with open(srv.config) as f:
        for line in f:
            if line.startswith("database:"):
                out.append(f"database:\n  name: psycopg2\n  args:\n    user: postgres\n    dbname: {name}\n"
                           f"    host: {cluster.dir}\n    cp_min: 4\n    cp_max: 16\n")
                skipping = True
                continue
            if skipping and (line.startswith(" ") or not line.strip()):
                continue
            skipping = False
            out.append(line)
    with open(srv.config, "w") as f:
        f.writelines(out)


def sync_measure(port, tokens, threads, duration, cpu_fn):
    stop = threading.Event()
    counts = [0] * threads
    errors = []

    def worker(i):
        c = Client(port, tokens[i % len(tokens)], timeout=60)
        try:
            while not stop.is_set():
                c.call("GET", CLIENT + "/sync?timeout=0")
                counts[i] += 1
        except Exception as e:  # reported: a failing sync must not look fast
            errors.append(e)
        finally:
            c.close()

    ts = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    cpu0, t0 = cpu_fn(), time.monotonic()
    for t in ts:
        t.start()
    time.sleep(duration)
    stop.set()
    for t in ts:
        t.join(60)
    cpu1, dur = cpu_fn(), time.monotonic() - t0
    if errors:
        raise BenchError(f"sync: {errors[0]}")
    n = max(1, sum(counts))
    return {"syncs_per_s": n / dur, "cpu_ms_per_sync": (cpu1 - cpu0) / n}


def one_engine(binary, engine, cluster, args):
    workdir = tempfile.mkdtemp(prefix=f"trestle-engines-{engine}-")
    srv, as_token = tg.members_server(binary, workdir, args)
    if engine == "postgres":
        use_postgres(srv, cluster)
    out = {}
    try:
        srv.start()
        tokens, room_id = tg.senders_and_room(srv, as_token, args.senders, "s")
        done = tg.add_members(srv.port, as_token, room_id, "bench_m", args.senders, args.members - args.senders,
                              args.setup_conns, time.monotonic() + 300)
        if done < args.members - args.senders:
            raise BenchError(f"{engine}: only {done} members joined")
        # History for the syncs: 200 messages.
        c = Client(srv.port, tokens[0])
        for i in range(200):
            c.call("PUT", f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/h{i}", {"msgtype": "m.text", "body": f"h{i}"})
        c.close()
        server_cpu = lambda: tb.proc_cpu_ms(srv.pid)  # noqa: E731
        both_cpu = (lambda: server_cpu() + cluster.cpu_ms()) if engine == "postgres" else server_cpu
        settle = lambda: tg.settled(srv.port, tokens[0])  # noqa: E731
        tag = f"e{engine[0]}{os.getpid()}x{int(time.time() * 1000)}"
        s0, b0 = server_cpu(), both_cpu()
        res = tg.wrk_measure(srv.port, server_cpu, tokens, room_id, args.connections, args, tag, settle=settle)
        s1, b1 = server_cpu(), both_cpu()
        sent = max(1, res["ok_2xx_with_warmup"])
        out["send_req_per_s"] = res["req_per_s"]
        out["send_p50_ms"] = res["p50_ms"]
        out["send_p99_ms"] = res["p99_ms"]
        out["send_non_2xx"] = res["non_2xx"]
        # Over the warm-up and the run together (both_cpu has no per-run split): server, engine, sum.
        out["send_server_cpu_ms_per_event"] = (s1 - s0) / sent
        out["send_total_cpu_ms_per_event"] = (b1 - b0) / sent
        out["send_engine_cpu_ms_per_event"] = out["send_total_cpu_ms_per_event"] - out["send_server_cpu_ms_per_event"]
        sync = sync_measure(srv.port, tokens, args.sync_threads, args.duration, both_cpu)
        out["sync_per_s"] = sync["syncs_per_s"]
        out["sync_total_cpu_ms"] = sync["cpu_ms_per_sync"]
    finally:
        srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "trestle"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--max-duration", type=int, default=60)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--wrk-threads", type=int, default=4)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--members", type=int, default=32)
    ap.add_argument("--setup-conns", type=int, default=8)
    ap.add_argument("--sync-threads", type=int, default=4)
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args()
    tg.raise_nofile(4096)
    cluster = Cluster()
    results = {"sqlite": [], "postgres": []}
    try:
        for r in range(args.rounds):
            order = ["sqlite", "postgres"] if r % 2 == 0 else ["postgres", "sqlite"]
            for engine in order:
                print(f"[engines] round {r + 1}: {engine}...", file=sys.stderr, flush=True)
                results[engine].append(one_engine(args.binary, engine, cluster, args))
    finally:
        cluster.stop()
    keys = list(results["sqlite"][0].keys())
    print(f"{'median of ' + str(args.rounds) + ' rounds':40s}{'sqlite':>12s}{'postgres':>12s}{'pg/sqlite':>11s}")
    for k in keys:
        a = statistics.median(x[k] for x in results["sqlite"])
        b = statistics.median(x[k] for x in results["postgres"])
        ratio = b / a if a else float("nan")
        print(f"{k:40s}{a:12.3f}{b:12.3f}{ratio:11.2f}")


if __name__ == "__main__":
    main()
