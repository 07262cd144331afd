#!/usr/bin/env python3
"""Several Trestle processes on one PostgreSQL (issue 13): cross-process wake-up latency, and sync
throughput through nginx with one, two and three reader processes.

On a private PostgreSQL cluster (scripts/postgres.sh start, unix socket only), one deployment: the
main process (it writes every stream) and up to three readers (`worker_app:
synapse.app.generic_worker`, `trestle -c homeserver.yaml -c readerN.yaml`), with the nginx of
deploy/nginx/trestle-workers.conf in front. Two measurements:

  wake   a /sync long-poll waits on reader1 while another user sends a message to main; per round
         the time from the send's 200 to the sync's answer, and from the send's start (as
         trestle_bench.py's `sync`), p50/p99 over --wake-rounds rounds. The same on main alone
         (long-poll and send on one process, the in-process notifier) for comparison.
  sync   --sync-threads clients (one user each, so nginx's hash by access token spreads them over
         the readers) loop GET /sync (no since: the initial sync of a 32-member room with 200
         messages of history) through nginx for --duration seconds, with nginx routing /sync to 1,
         then 2, then 3 readers; and the same clients against main alone, without nginx. Syncs/s,
         CPU ms per sync of all Trestle processes, of nginx and of the PostgreSQL cluster, and how
         nginx spread the syncs over the readers.

Prints one table. The machine is shared (2 cores here, the load generator on them too): only
ratios from one run mean anything. bench/README.md, "Several processes (workers.py)", says how to
read the numbers.

  /usr/bin/python3 bench/workers.py [--binary build/trestle] [--duration 8] [--wake-rounds 200]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "deploy", "nginx"))
import engines as eg  # noqa: E402  (the private cluster, a database per server, sync_measure)
import targets as tg  # noqa: E402  (the bench server with its member-making appservice)
import trestle_bench as tb  # noqa: E402
import trestle_nginx  # noqa: E402
from trestle_bench import CLIENT, BenchError, Client, log, q  # noqa: E402


class Reader:
    """One worker of the deployment: `trestle -c homeserver.yaml -c <name>.yaml`, a reader unless
    homeserver.yaml names it in stream_writers (bench/writers.py's writer1); with replication_port,
    a second listener with the replication resource."""

    def __init__(self, srv, name, port, replication_port=None):
        self.name = name
        self.port = port
        self.config = os.path.join(srv.workdir, f"{name}.yaml")
        self.logfile = os.path.join(srv.workdir, f"{name}.log")
        with open(self.config, "w") as f:
            f.write(f"worker_app: synapse.app.generic_worker\nworker_name: {name}\nworker_listeners:\n"
                    f"  - port: {port}\n    bind_addresses: ['127.0.0.1']\n    type: http\n"
                    f"    resources:\n      - names: [client]\n")
            if replication_port:
                f.write(f"  - port: {replication_port}\n    bind_addresses: ['127.0.0.1']\n    type: http\n"
                        f"    resources:\n      - names: [replication]\n")
        with open(self.logfile, "ab") as logf:
            self.proc = subprocess.Popen([srv.binary, "-c", srv.config, "-c", self.config], stdout=logf,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                Client(port, timeout=2).call("GET", "/_matrix/client/versions")
                return
            except OSError:
                time.sleep(0.02)
        raise BenchError(f"{name} not ready after 30 s:\n{self.log_tail()}")

    def log_tail(self, n=30):
        with open(self.logfile, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def add_instance_map(srv, reader_ports):
    """The shared keys of a deployment with workers, appended to main's homeserver.yaml."""
    with open(srv.config, "a") as f:
        f.write(f"\ninstance_map:\n  main:\n    host: 127.0.0.1\n    port: {srv.port}\n")
        for name, port in reader_ports.items():
            f.write(f"  {name}:\n    host: 127.0.0.1\n    port: {port}\n")


class Cpu(dict):
    """CPU ms by part ("trestle", "nginx", "pg"); differences and quotients part by part, so that
    engines.sync_measure's (cpu1 - cpu0) / n gives each part's CPU per sync."""

    def __sub__(self, other):
        return Cpu({k: v - other[k] for k, v in self.items()})

    def __truediv__(self, n):
        return Cpu({k: v / n for k, v in self.items()})


def cpu_of(pids):
    total = 0.0
    for pid in pids:
        try:
            total += tb.proc_cpu_ms(pid)
        except OSError:
            pass
    return total


def wake(srv, args, sync_port):
    """trestle_bench's send -> sync wake-up, the long-poll on sync_port, the sends on main."""
    opts = types.SimpleNamespace(sync_backlog=0, sync_samples=args.wake_rounds, sync_max_seconds=args.wake_max_seconds,
                                 sync_park_ms=args.park_ms)
    r = tb.bench_sync(srv, opts, sync_port=sync_port, prefix=f"waker_{sync_port}_")
    return {"after_200_p50_ms": r["sync_wake_after_reply_p50_ms"], "after_200_p99_ms": r["sync_wake_after_reply_p99_ms"],
            "from_send_p50_ms": r["sync_wake_p50_ms"], "from_send_p99_ms": r["sync_wake_p99_ms"],
            "send_p50_ms": r["sync_send_p50_ms"], "rounds": r["sync_samples"], "misses": r["sync_misses"]}


def run(args, cluster, workdir):
    srv, as_token = tg.members_server(args.binary, workdir, args)
    eg.use_postgres(srv, cluster)
    reader_ports = {f"reader{i}": tb.free_port() for i in range(1, 4)}
    add_instance_map(srv, reader_ports)
    readers, ngx, out = [], None, {}
    try:
        srv.start()
        log("[workers] main up; the room: 32 members, 200 messages of history...")
        tokens, room_id = tg.senders_and_room(srv, as_token, args.sync_threads, "s")
        done = tg.add_members(srv.port, as_token, room_id, "bench_m", args.sync_threads, 32 - args.sync_threads,
                              8, time.monotonic() + 300)
        if done < 32 - args.sync_threads:
            raise BenchError(f"only {done} members joined")
        c = Client(srv.port, tokens[0])
        for i in range(200):
            c.call("PUT", f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/h{i}", {"msgtype": "m.text", "body": f"h{i}"})
        c.close()

        log("[workers] wake-up latency on main alone...")
        out["wake_main"] = wake(srv, args, srv.port)
        readers.append(Reader(srv, "reader1", reader_ports["reader1"]))
        log("[workers] wake-up latency across processes (sync on reader1, send on main)...")
        out["wake_reader"] = wake(srv, args, readers[0].port)

        def cpu():
            return Cpu(trestle=cpu_of([srv.pid] + [r.proc.pid for r in readers]),
                       nginx=cpu_of(ngx.pids()) if ngx else 0.0, pg=cluster.cpu_ms())

        def measure(port):
            res = eg.sync_measure(port, tokens, args.sync_threads, args.duration, cpu)
            row = {"syncs_per_s": res["syncs_per_s"]}
            row.update({f"{k}_cpu_ms_per_sync": v for k, v in res["cpu_ms_per_sync"].items()})
            return row

        log("[workers] sync throughput, main alone (no nginx)...")
        out["sync_main"] = measure(srv.port)
        for k in range(1, 4):
            while len(readers) < k:
                readers.append(Reader(srv, f"reader{len(readers) + 1}", reader_ports[f"reader{len(readers) + 1}"]))
            ngx = trestle_nginx.Nginx(f"127.0.0.1:{srv.port}", [f"127.0.0.1:{r.port}" for r in readers],
                                      worker_processes=args.nginx_workers, prefix="trestle-bench-workers-nginx-")
            ngx.start()
            log(f"[workers] sync throughput through nginx, {k} reader(s)...")
            try:
                row = measure(ngx.port)
                routed = ngx.routed()
                names = {f"127.0.0.1:{r.port}": r.name for r in readers}
                row["spread"] = " ".join(f"{names.get(a, a)}={n}" for a, n in sorted(routed.items()))
                out[f"sync_readers_{k}"] = row
            finally:
                ngx.cleanup()
                ngx = None
        srv.check_alive()
        for r in readers:
            if r.proc.poll() is not None:
                raise BenchError(f"{r.name} died:\n{r.log_tail()}")
    finally:
        if ngx:
            ngx.cleanup()
        for r in readers:
            r.stop()
        srv.stop()
    return out


def report(out):
    print("wake-up: send on main, /sync long-poll waiting on ...      p50 ms   p99 ms  (from the send's 200)")
    for key, label in (("wake_main", "main itself (one process)"), ("wake_reader", "reader1 (LISTEN/NOTIFY)")):
        w = out[key]
        print(f"  {label:54s}{w['after_200_p50_ms']:8.2f} {w['after_200_p99_ms']:8.2f}   from the send's start: "
              f"p50 {w['from_send_p50_ms']:.2f} p99 {w['from_send_p99_ms']:.2f}; send p50 {w['send_p50_ms']:.2f}; "
              f"{w['rounds']} rounds, {w['misses']} misses")
    print("\nsync throughput (initial /sync of a 32-member room)   syncs/s   CPU ms per sync: trestle  nginx  postgres"
          "   spread")
    rows = [("sync_main", "main alone, no nginx")] + [(f"sync_readers_{k}", f"nginx -> {k} reader(s)") for k in (1, 2, 3)]
    for key, label in rows:
        r = out[key]
        print(f"  {label:50s}{r['syncs_per_s']:9.1f}   {r['trestle_cpu_ms_per_sync']:24.3f} "
              f"{r['nginx_cpu_ms_per_sync']:6.3f} {r['pg_cpu_ms_per_sync']:9.3f}   {r.get('spread', '')}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "trestle"))
    ap.add_argument("--duration", type=int, default=8, help="seconds of each sync throughput run")
    ap.add_argument("--sync-threads", type=int, default=12, help="sync clients, one user each")
    ap.add_argument("--wake-rounds", type=int, default=200)
    ap.add_argument("--wake-max-seconds", type=float, default=120)
    ap.add_argument("--park-ms", type=float, default=20, help="pause between a long-poll and the send that wakes it")
    ap.add_argument("--nginx-workers", type=int, default=1)
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args()
    tg.raise_nofile(4096)
    cluster = eg.Cluster()
    workdir = tempfile.mkdtemp(prefix="trestle-bench-workers-")
    try:
        out = run(args, cluster, workdir)
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report(out)


if __name__ == "__main__":
    main()
