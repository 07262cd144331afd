#!/usr/bin/env python3
"""Cost of the access log and metrics: requests/s of an authenticated GET /account/whoami with wrk,
access log (info) and metrics on vs both off (log_level warning, enable_metrics false), and
optionally a baseline binary (its default config). One run each; prints requests/s, the server's
CPU time per request (steadier on a shared machine) and the ratios.

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
            cpu0 = tb.proc_cpu_ms(srv.pid)
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 30)
            cpu1 = tb.proc_cpu_ms(srv.pid)
            m = re.search(r"Requests/sec:\s+([\d.]+)", p.stdout)
            n = re.search(r"(\d+) requests in", p.stdout)
            if not m or not n:
                raise tb.BenchError("wrk: " + p.stdout + p.stderr)
            # Server CPU per request: steadier than requests/s on a machine others share.
            return float(m.group(1)), round((cpu1 - cpu0) * 1000.0 / int(n.group(1)), 2)
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
    runs = {"on": (args.binary, "info", True), "off": (args.binary, "warning", False)}
    if args.baseline:
        runs["baseline"] = (args.baseline, "info", False)
    out = {}
    for name, (binary, level, metrics) in runs.items():
        out[name + "_rps"], out[name + "_cpu_us_per_req"] = measure(binary, level, metrics, args)
    for other in [k for k in runs if k != "on"]:
        out["rps_on_over_" + other] = round(out["on_rps"] / out[other + "_rps"], 3)
        out["cpu_on_over_" + other] = round(out["on_cpu_us_per_req"] / out[other + "_cpu_us_per_req"], 3)
    print("BENCH_JSON " + json.dumps(out))


if __name__ == "__main__":
    main()
