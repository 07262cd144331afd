#!/usr/bin/env python3
"""Cost of the access log and metrics: requests/s of an authenticated GET /account/whoami with wrk,
access log (info) and metrics on vs both off (log_level warning, enable_metrics false), and
optionally a baseline binary (its default config). One run each; prints the ratios.

    python3 bench/observe_bench.py --binary build/trestle [--baseline /work/baseline-11/trestle]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trestle_bench as tb  # noqa: E402


def measure(binary, log_level, metrics, args):
    with tempfile.TemporaryDirectory(prefix="observe-bench-") as d:
        srv = tb.Server(binary, d, log_level)
        if metrics:
            with open(srv.config, "a") as f:
                f.write(f"\nenable_metrics: true\n")
            with open(srv.config) as f:
                text = f.read()
            text = text.replace("listeners:\n", f"listeners:\n  - port: {tb.free_port()}\n    type: metrics\n"
                                "    bind_addresses: ['127.0.0.1']\n", 1)
            with open(srv.config, "w") as f:
                f.write(text)
        srv.start()
        try:
            token, _ = tb.register(srv.port, "bench")
            url = f"http://127.0.0.1:{srv.port}/_matrix/client/v3/account/whoami"
            cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration}s",
                   "-H", f"Authorization: Bearer {token}", url]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 30)
            m = re.search(r"Requests/sec:\s+([\d.]+)", p.stdout)
            if not m:
                raise tb.BenchError("wrk: " + p.stdout + p.stderr)
            return float(m.group(1))
        finally:
            srv.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/trestle")
    ap.add_argument("--baseline")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    out = {"on": measure(args.binary, "info", True, args), "off": measure(args.binary, "warning", False, args)}
    if args.baseline:
        out["baseline"] = measure(args.baseline, "info", False, args)
    out["on_over_off"] = round(out["on"] / out["off"], 3)
    if args.baseline:
        out["on_over_baseline"] = round(out["on"] / out["baseline"], 3)
    print("BENCH_JSON " + json.dumps(out))


if __name__ == "__main__":
    main()
