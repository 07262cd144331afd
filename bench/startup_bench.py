#!/usr/bin/python3
"""Start-up of server binaries, alternating in one run (issue 12: start-up < 50 ms).

  startup_bench.py [--variant NAME=BINARY ...] [--starts 20] [--out FILE]

Per start and variant, on a fresh data dir (trestle_bench.Server: the generated config, a free
loopback port, a private copy of the binary):
  fresh    exec -> the first 200 of GET /_matrix/client/versions (polled every ~1 ms): the database
           created, its schema made, the signing key generated;
  restart  SIGTERM, then the same again on that data dir.
For each: wall ms, the server's CPU ms at that moment (the sum of its threads' run time from
/proc/PID/task/*/schedstat, in ns: /proc/PID/stat counts 10 ms ticks) and its minor page faults
(/proc/PID/stat; on this VM a fault costs 13-25 us, so they are much of a start's CPU).
Medians per variant, and ratios to the first. The variants alternate start by start (A B B A ...),
so machine load hits them alike; compare ratios, not absolute numbers across runs.
Needs nothing beyond Python; only 127.0.0.1 is contacted; every loop is bounded.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trestle_bench as tb  # noqa: E402


def cpu_ms(pid):
    """Run time of the process's live threads, ms (ns resolution)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1e6


def minflt(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[7])  # field 10, minflt (fields[0] is field 3, state)


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def one(binary):
    out = {}
    with tempfile.TemporaryDirectory(prefix="trestle-bench-startup-") as work:
        srv = tb.Server(binary, work, "warn")
        try:
            for phase in ("fresh", "restart"):
                wall = srv.start()
                pid = srv.pid
                out[phase] = {"ms": wall, "cpu_ms": cpu_ms(pid), "minflt": minflt(pid), "threads": threads(pid)}
                srv.stop()
        finally:
            srv.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", help="NAME=BINARY (repeatable; default base=build/trestle)")
    ap.add_argument("--starts", type=int, default=20)
    ap.add_argument("--out", help="write every start's numbers as JSON here")
    args = ap.parse_args()
    variants = {}
    for v in args.variant or ["base=build/trestle"]:
        name, _, path = v.partition("=")
        path = os.path.abspath(path)
        if not path or not os.access(path, os.X_OK):
            raise SystemExit(f"--variant {v}: expected NAME=BINARY, an executable")
        variants[name] = path
    names = list(variants)
    runs = []
    tb.log(f"[startup] load average before: {os.getloadavg()[0]:.2f}")
    for r in range(args.starts):
        for name in (names if r % 2 == 0 else names[::-1]):
            res = one(variants[name])
            runs.append({"variant": name, "round": r, **res})
    tb.log(f"[startup] load average after: {os.getloadavg()[0]:.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"variants": variants, "runs": runs}, f, indent=1)
    cols = [(p, k) for p in ("fresh", "restart") for k in ("ms", "cpu_ms", "minflt")]
    med = {n: {c: statistics.median(x[c[0]][c[1]] for x in runs if x["variant"] == n) for c in cols} for n in names}
    print(f"medians over {args.starts} starts each (fresh: new data dir; restart: the same again)")
    print(f"{'variant':<12}" + "".join(f"{p[:5] + ' ' + k:>16}" for p, k in cols) + f"{'threads':>9}")
    for n in names:
        th = statistics.median(x["restart"]["threads"] for x in runs if x["variant"] == n)
        print(f"{n:<12}" + "".join(f"{med[n][c]:>16.1f}" for c in cols) + f"{th:>9.0f}")
    for n in names[1:]:
        print(f"{n + '/' + names[0]:<12}" + "".join(f"{med[n][c] / med[names[0]][c]:>16.2f}" for c in cols))


if __name__ == "__main__":
    main()
