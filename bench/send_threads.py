#!/usr/bin/python3
"""Send CPU per event split by thread: the push evaluator's, and everyone else's (stdlib + gdb).

  send_threads.py --binary A [--binary 'B|MALLOC_CONF=...' ...] [--rounds N] [--connections 32] [--duration 6]
                  [--perf DIR]

For each binary (alternating order each round) a fresh server with the 32-member room of
targets.py's send section; one wrk warm-up, then for each --connections value one wrk run of
send.lua. Server CPU (utime+stime of every thread, /proc/PID/task/*/stat) per 2xx is reported
in all, for the push evaluator thread alone, and for the rest (HTTP I/O threads, the worker pool
where handlers and the group commit run, SQLite). The evaluator's thread is found once per
server with gdb (`thread apply all bt`: the thread whose stack holds run_evaluator), so baseline
binaries without thread names are split the same way. --perf DIR records `perf record -g` of the
last run per binary into DIR. Medians over rounds, and B/A ratios against the first binary.
Only 127.0.0.1 is contacted.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import targets  # noqa: E402
import trestle_bench as tb  # noqa: E402


def evaluator_tids(pid):
    """tids whose stack holds the push evaluator's loop (gdb; a pause of ~1 s before the load)."""
    p = subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-ex", "set pagination off",
                        "-ex", "thread apply all bt 40"], capture_output=True, text=True, timeout=120)
    tids, current = set(), None
    for line in p.stdout.splitlines():
        m = re.match(r"Thread \S+ \(Thread 0x[0-9a-f]+ \(LWP (\d+)\)", line)
        if m:
            current = int(m.group(1))
        elif current is not None and "run_evaluator" in line:
            tids.add(current)
    return tids


def measure(spec, args, label, perf_dir):
    # "PATH" or "PATH|NAME=VALUE|...": environment variables for the server (e.g. MALLOC_CONF).
    binary, *env = spec.split("|")
    saved = dict(os.environ)
    os.environ.update(dict(e.split("=", 1) for e in env))
    workdir = tempfile.mkdtemp(prefix="trestle-send-threads-")
    ns = argparse.Namespace(log_level=args.log_level)
    srv, as_token = targets.members_server(binary, workdir, ns)
    out = {}
    try:
        srv.start()
        os.environ.clear()
        os.environ.update(saved)
        tokens, room_id = targets.senders_and_room(srv, as_token, args.senders, "s")
        tag = f"st{os.getpid()}x{int(time.time() * 1000)}{label}"
        tb.run_wrk(srv.port, tokens, room_id, min(4, max(args.conns)), max(args.conns), args.warmup, tag + "w", 30)
        targets.settled(srv.port, tokens[0])
        evals = evaluator_tids(srv.pid)
        if not evals:
            tb.log(f"[send_threads] {label}: no push evaluator thread found")
        for i, conns in enumerate(args.conns):
            targets.settled(srv.port, tokens[0])
            perf = None
            if perf_dir and i == len(args.conns) - 1:
                os.makedirs(perf_dir, exist_ok=True)
                perf = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-p", str(srv.pid), "-o",
                                         os.path.join(perf_dir, f"{label}.data")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
            th0 = tb.thread_cpu_ms(srv.pid)
            res, _ = tb.run_wrk(srv.port, tokens, room_id, min(4, conns), conns, args.duration, f"{tag}c{conns}", 30)
            th1 = tb.thread_cpu_ms(srv.pid)
            if perf:
                perf.send_signal(2)
                perf.wait(60)
            ok = max(1, res["ok_2xx"])
            delta = {t: th1[t] - th0.get(t, 0.0) for t in th1}
            total = sum(delta.values())
            ev = sum(v for t, v in delta.items() if t in evals)
            key = f"c{conns}"
            out[f"{key}_req_per_s"] = res["requests"] / (res["duration_us"] / 1e6)
            out[f"{key}_cpu_ms_per_event"] = total / ok
            out[f"{key}_push_cpu_ms_per_event"] = ev / ok
            out[f"{key}_rest_cpu_ms_per_event"] = (total - ev) / ok
            out[f"{key}_p50_ms"] = res["lat_p50_us"] / 1000.0
            if res["non_2xx"] or res["err_connect"] + res["err_read"] + res["err_write"]:
                tb.log(f"[send_threads] {label} {key}: {res['non_2xx']} non-2xx {res.get('last_bad_body', '')}")
                out[f"{key}_errors"] = res["non_2xx"]
    finally:
        os.environ.clear()
        os.environ.update(saved)
        srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", action="append", required=True)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--connections", default="32")
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--senders", type=int, default=32)
    ap.add_argument("--log-level", default=None)
    ap.add_argument("--perf", default=None, help="record perf of the last run of each binary here")
    args = ap.parse_args()
    args.conns = [int(c) for c in args.connections.split(",")]
    targets.raise_nofile(4096)
    results = {b: [] for b in args.binary}
    for r in range(args.rounds):
        order = args.binary if r % 2 == 0 else list(reversed(args.binary))
        for b in order:
            idx = args.binary.index(b)
            label = f"b{idx}"
            res = measure(b, args, label, args.perf if r == args.rounds - 1 else None)
            tb.log(f"[send_threads] round {r + 1} {b}: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(res.items())))
            results[b].append(res)
    keys = sorted(results[args.binary[0]][0])
    med = {b: {k: statistics.median(x[k] for x in results[b] if k in x) for k in keys} for b in args.binary}
    head = f"{'metric':34}" + "".join(f"{'b' + str(i):>10}" for i in range(len(args.binary)))
    head += "".join(f"{'b' + str(i) + '/b0':>9}" for i in range(1, len(args.binary)))
    print(head)
    for k in keys:
        a = med[args.binary[0]][k]
        row = f"{k:34}" + "".join(f"{med[b][k]:10.4g}" for b in args.binary)
        row += "".join(f"{(med[b][k] / a if a else float('nan')):9.3f}" for b in args.binary[1:])
        print(row)
    for i, b in enumerate(args.binary):
        print(f"b{i} = {b}")


if __name__ == "__main__":
    main()
