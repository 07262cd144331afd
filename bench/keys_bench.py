#!/usr/bin/python3
"""E2EE key benchmarks, against a fresh server (trestle_bench.Server):

  ceiling  GET /_matrix/client/versions from --threads client threads (keep-alive), the request
           rate this client reaches on this machine: the other rates are also given as a ratio to it
  upload   POST /keys/upload: every device uploads its device keys and --otks one-time keys
           (signed_curve25519, signed key objects; the server does not verify them), from
           --threads threads: keys/s and requests/s
  claim    POST /keys/claim from --threads threads, each claiming one key of one device per
           request (claims/s), then, after a second upload, one key of each of --batch devices per
           request (requests/s and keys/s). Every claimed key is recorded: none may be handed out
           twice, every uploaded key must be handed out once, and a claim on an exhausted device
           must return nothing (no fallback key is uploaded)
  query    POST /keys/query for one user with --query-devices devices (each logged in and with
           device keys): one client (p50/p99 unloaded) and --threads clients (requests/s, p50/p99)

Usage: /usr/bin/python3 bench/keys_bench.py [--binary build/trestle] [--users 20] [--devices 5]
       [--otks 50] [--threads 4] [--batch 10] [--query-devices 50] [--out FILE.json]
Only 127.0.0.1 is contacted; every loop is bounded in count and in time (--max-seconds a phase).
"""

import argparse
import base64
import json
import os
import random
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trestle_bench as tb  # noqa: E402

ALG = "signed_curve25519"


def cpu_s():
    t = os.times()
    return t.user + t.system


def register(port, name):
    """Returns (token, user_id, device_id, password)."""
    c = tb.Client(port)
    try:
        pw = "bench-password-" + name
        r = c.call("POST", tb.CLIENT + "/register",
                   {"username": name, "password": pw, "auth": {"type": "m.login.dummy"}})
        return r["access_token"], r["user_id"], r["device_id"], pw
    finally:
        c.close()


def login(port, user_id, pw, device_id):
    c = tb.Client(port)
    try:
        r = c.call("POST", tb.CLIENT + "/login",
                   {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
                    "password": pw, "device_id": device_id, "initial_device_display_name": device_id})
        return r["access_token"]
    finally:
        c.close()


def parallel(n_threads, items, fn, max_seconds):
    """Runs fn(client_index, item) over items from n_threads threads sharing one work list.
    Returns (elapsed_s, results in item order, client cpu_s). Stops early after max_seconds."""
    lock = threading.Lock()
    it = iter(enumerate(items))
    results = [None] * len(items)
    errors = []
    deadline = time.perf_counter() + max_seconds

    def worker(ti):
        while not errors and time.perf_counter() < deadline:
            with lock:
                nxt = next(it, None)
            if nxt is None:
                return
            i, item = nxt
            try:
                results[i] = fn(ti, item)
            except Exception as e:  # reported to the caller below
                errors.append(e)

    threads = [threading.Thread(target=worker, args=(ti,)) for ti in range(n_threads)]
    c0 = cpu_s()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0] if isinstance(errors[0], tb.BenchError) else tb.BenchError(
            f"{type(errors[0]).__name__}: {errors[0]}")
    return elapsed, results, cpu_s() - c0


class Pool:
    """One keep-alive connection per client thread; the token is set per request."""

    def __init__(self, port):
        self.port = port
        self.local = threading.local()
        self.all = []
        self.lock = threading.Lock()

    def get(self, token):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = self.local.conn = tb.Client(self.port)
            with self.lock:
                self.all.append(c)
        c.token = token
        return c

    def close(self):
        for c in self.all:
            c.close()


def timed_call(pool, token, method, path, body=None):
    c = pool.get(token)
    t0 = time.perf_counter()
    r = c.call(method, path, body)
    return (time.perf_counter() - t0) * 1000.0, r


def ceiling(srv, args, out):
    pool = Pool(srv.port)
    n = args.ceiling_requests
    elapsed, lat, cpu = parallel(args.threads, range(n), lambda ti, _: timed_call(pool, None, "GET",
                                 "/_matrix/client/versions")[0], args.max_seconds)
    pool.close()
    done = sum(1 for x in lat if x is not None)
    out["versions_rps"] = done / elapsed
    out["versions_p50_ms"] = tb.percentile([x for x in lat if x is not None], 50)
    out["versions_client_cores"] = cpu / elapsed
    tb.log(f"ceiling: GET /versions {out['versions_rps']:.0f} req/s (p50 {out['versions_p50_ms']:.2f} ms, "
           f"client {out['versions_client_cores']:.2f} cores)")


def make_devices(srv, args, prefix, n_users, n_devices):
    """n_users users with n_devices devices each (register + logins). Returns [(token, user_id, device_id)]."""
    users = [register(srv.port, f"{prefix}{i}") for i in range(n_users)]
    devs = [(t, u, d) for t, u, d, _ in users]
    logins = [(u, pw, f"DEV{j}") for _, u, _, pw in users for j in range(1, n_devices)]
    _, tokens, _ = parallel(2, logins, lambda ti, x: login(srv.port, *x), 120)
    devs += [(tok, u, d) for tok, (u, _, d) in zip(tokens, logins)]
    return devs


def device_keys(user, device):
    return {"user_id": user, "device_id": device,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"curve25519:{device}": b64(32), f"ed25519:{device}": b64(32)},
            "signatures": {user: {f"ed25519:{device}": b64(64)}}}


def b64(n):
    return base64.b64encode(os.urandom(n)).decode().rstrip("=")


def otk_body(user, device, n, tag):
    keys = {}
    for i in range(n):
        keys[f"{ALG}:{tag}{i:04d}"] = {"key": b64(32), "signatures": {user: {f"ed25519:{device}": b64(64)}}}
    return keys


def upload(srv, args, devs, tag, with_device_keys, out, name, rounds=1):
    """Every device uploads args.otks new one-time keys, `rounds` times (key IDs differ per round)."""
    bodies = []
    for r in range(rounds):
        for tok, u, d in devs:
            b = {"one_time_keys": otk_body(u, d, args.otks, f"{tag}{r}_" if rounds > 1 else tag)}
            if with_device_keys:
                b["device_keys"] = device_keys(u, d)
            bodies.append((tok, b))
    pool = Pool(srv.port)
    c0 = tb.proc_cpu_ms(srv.pid)
    elapsed, res, cpu = parallel(args.threads, bodies, lambda ti, x: timed_call(pool, x[0], "POST",
                                 tb.CLIENT + "/keys/upload", x[1]), args.max_seconds)
    srv_ms = tb.proc_cpu_ms(srv.pid) - c0
    pool.close()
    if any(r is None for r in res):
        raise tb.BenchError(f"{name}: not all uploads finished within {args.max_seconds} s")
    counts = [r[1]["one_time_key_counts"].get(ALG) for r in res]
    if rounds == 1 and any(n != args.otks for n in counts):
        raise tb.BenchError(f"{name}: unexpected one_time_key_counts {counts[:5]}")
    if max(counts) != rounds * args.otks:
        raise tb.BenchError(f"{name}: at most {max(counts)} keys on a device, expected {rounds * args.otks}")
    keys = len(bodies) * args.otks
    out[f"{name}_keys_per_s"] = keys / elapsed
    out[f"{name}_req_per_s"] = len(bodies) / elapsed
    out[f"{name}_p50_ms"] = tb.percentile([r[0] for r in res], 50)
    out[f"{name}_server_cpu_us_per_key"] = srv_ms * 1000.0 / keys
    tb.log(f"{name}: {keys} one-time keys in {len(bodies)} requests, {elapsed:.2f} s: {out[f'{name}_keys_per_s']:.0f} "
           f"keys/s ({out[f'{name}_req_per_s']:.0f} req/s, p50 {out[f'{name}_p50_ms']:.1f} ms, "
           f"server {out[f'{name}_server_cpu_us_per_key']:.0f} us CPU/key)")


def claim(srv, args, devs, claimer_token, batch, expected_prefix, out, name):
    """Claims every uploaded key from args.threads threads at once. batch 1: one device per
    request, device after device (so the threads race for the same device's keys); else requests
    of `batch` distinct devices, in args.otks rounds (each a fresh shuffle of all devices)."""
    rng = random.Random(1234 + batch)
    reqs = []
    if batch == 1:
        # Device after device: the client threads race for the keys of the same device.
        reqs = [[(u, d)] for _, u, d in devs for _ in range(args.otks)]
    else:
        for _ in range(args.otks):
            order = [(u, d) for _, u, d in devs]
            rng.shuffle(order)
            reqs += [order[i:i + batch] for i in range(0, len(order), batch)]

    def one(ti, targets):
        body = {"one_time_keys": {}}
        for u, d in targets:
            body["one_time_keys"].setdefault(u, {})[d] = ALG
        ms, r = timed_call(pool, claimer_token, "POST", tb.CLIENT + "/keys/claim", body)
        got = []
        for u, per_dev in r.get("one_time_keys", {}).items():
            for d, keys in per_dev.items():
                for kid, key in keys.items():
                    got.append((u, d, kid, key["key"]))
        return ms, got

    pool = Pool(srv.port)
    c0 = tb.proc_cpu_ms(srv.pid)
    elapsed, res, cpu = parallel(args.threads, reqs, one, args.max_seconds)
    srv_ms = tb.proc_cpu_ms(srv.pid) - c0
    done = [r for r in res if r is not None]
    claimed = [k for _, got in done for k in got]
    ids = [(u, d, kid) for u, d, kid, _ in claimed]
    dup = len(ids) - len(set(ids))
    dup_material = len(claimed) - len(set(k[3] for k in claimed))
    wrong = sum(1 for _, _, kid, _ in claimed if not kid.startswith(f"{ALG}:{expected_prefix}"))
    # Every device is now exhausted: one more claim of all of them must return nothing.
    left = 0
    for i in range(0, len(devs), 100):
        _, got = one(0, [(u, d) for _, u, d in devs[i:i + 100]])
        left += len(got)
    pool.close()
    expected = len(devs) * args.otks if len(done) == len(reqs) else None
    n_keys = len(claimed)
    out[f"{name}_batch"] = batch
    out[f"{name}_requests"] = len(done)
    out[f"{name}_req_per_s"] = len(done) / elapsed
    out[f"{name}_keys_per_s"] = n_keys / elapsed
    out[f"{name}_p50_ms"] = tb.percentile([r[0] for r in done], 50)
    out[f"{name}_p99_ms"] = tb.percentile([r[0] for r in done], 99)
    out[f"{name}_server_cpu_us_per_key"] = srv_ms * 1000.0 / max(1, n_keys)
    out[f"{name}_client_cores"] = cpu / elapsed
    out[f"{name}_keys_claimed"] = n_keys
    out[f"{name}_duplicate_keys"] = dup
    out[f"{name}_duplicate_key_material"] = dup_material
    out[f"{name}_wrong_round_keys"] = wrong
    out[f"{name}_keys_missing"] = (expected - n_keys) if expected is not None else None
    out[f"{name}_keys_after_exhaustion"] = left
    tb.log(f"{name} ({batch} device(s)/request): {len(done)} requests, {n_keys} keys in {elapsed:.2f} s: "
           f"{out[f'{name}_req_per_s']:.0f} req/s, {out[f'{name}_keys_per_s']:.0f} keys/s, p50 "
           f"{out[f'{name}_p50_ms']:.2f} ms, p99 {out[f'{name}_p99_ms']:.2f} ms; server "
           f"{out[f'{name}_server_cpu_us_per_key']:.0f} us CPU/key, client {out[f'{name}_client_cores']:.2f} cores; "
           f"duplicates {dup}, missing {out[f'{name}_keys_missing']}, after exhaustion {left}")
    return dup == 0 and dup_material == 0 and wrong == 0 and left == 0 and out[f"{name}_keys_missing"] == 0


def query(srv, args, out):
    devs = make_devices(srv, args, "many", 1, args.query_devices)
    user = devs[0][1]
    pool = Pool(srv.port)
    parallel(2, devs, lambda ti, x: timed_call(pool, x[0], "POST", tb.CLIENT + "/keys/upload",
                                               {"device_keys": device_keys(x[1], x[2])}), 60)
    pool.close()
    # The querier is another user (the usual case: a client fetching a contact's devices).
    token = register(srv.port, "querier")[0]
    body = {"device_keys": {user: []}}
    qc = tb.Client(srv.port, token)
    first = qc.call("POST", tb.CLIENT + "/keys/query", body)
    qc.close()
    n = len(first["device_keys"].get(user, {}))
    if n != args.query_devices:
        raise tb.BenchError(f"query: {n} devices in the answer, expected {args.query_devices}")
    out["query_devices"] = n
    out["query_response_bytes"] = len(json.dumps(first))
    for label, threads, count in (("query_1client", 1, args.query_requests // 4),
                                  ("query", args.threads, args.query_requests)):
        pool = Pool(srv.port)
        c0 = tb.proc_cpu_ms(srv.pid)
        elapsed, lat, cpu = parallel(threads, range(count), lambda ti, _: timed_call(
            pool, token, "POST", tb.CLIENT + "/keys/query", body)[0], args.max_seconds)
        srv_ms = tb.proc_cpu_ms(srv.pid) - c0
        pool.close()
        lat = [x for x in lat if x is not None]
        out[f"{label}_req_per_s"] = len(lat) / elapsed
        out[f"{label}_p50_ms"] = tb.percentile(lat, 50)
        out[f"{label}_p99_ms"] = tb.percentile(lat, 99)
        out[f"{label}_server_cpu_us_per_req"] = srv_ms * 1000.0 / max(1, len(lat))
        out[f"{label}_client_cores"] = cpu / elapsed
        tb.log(f"{label} ({threads} thread(s), {n} devices, {out['query_response_bytes']} bytes): {len(lat)} requests "
               f"in {elapsed:.2f} s: {out[f'{label}_req_per_s']:.0f} req/s, p50 {out[f'{label}_p50_ms']:.2f} ms, "
               f"p99 {out[f'{label}_p99_ms']:.2f} ms; server {out[f'{label}_server_cpu_us_per_req']:.0f} us CPU/req")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/trestle")
    ap.add_argument("--users", type=int, default=20, help="users for upload/claim")
    ap.add_argument("--devices", type=int, default=5, help="devices per user for upload/claim")
    ap.add_argument("--otks", type=int, default=50, help="one-time keys uploaded per device")
    ap.add_argument("--threads", type=int, default=4, help="concurrent client threads")
    ap.add_argument("--batch", type=int, default=10, help="devices per /keys/claim in the batched claim")
    ap.add_argument("--query-devices", type=int, default=50)
    ap.add_argument("--query-requests", type=int, default=4000)
    ap.add_argument("--ceiling-requests", type=int, default=10000)
    ap.add_argument("--upload-rounds", type=int, default=10,
                    help="rounds of --otks keys per device in the upload-rate phase (0: skip it)")
    ap.add_argument("--max-seconds", type=float, default=30.0, help="bound of every timed phase")
    ap.add_argument("--only", default="upload,claim,query", help="upload,claim,query (claim needs upload)")
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = ap.parse_args()
    only = set(s.strip() for s in args.only.split(",") if s.strip())
    if "claim" in only:
        only.add("upload")
    out = {"binary": os.path.abspath(args.binary), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
           "loadavg_before": os.getloadavg()[0], "threads": args.threads}
    if out["loadavg_before"] > 0.5:
        tb.log(f"[keys] note: load average is {out['loadavg_before']:.2f}; other work on this machine skews the numbers")
    ok = True
    with tempfile.TemporaryDirectory(prefix="trestle-bench-keys-") as work:
        srv = tb.Server(args.binary, work, "warn")
        srv.start()
        try:
            ceiling(srv, args, out)
            if "upload" in only:
                t0 = time.perf_counter()
                devs = make_devices(srv, args, "k", args.users, args.devices)
                tb.log(f"setup: {len(devs)} devices ({args.users} users x {args.devices}) in "
                       f"{time.perf_counter() - t0:.1f} s")
                upload(srv, args, devs, "A", True, out, "upload")
            if "claim" in only:
                claimer = register(srv.port, "claimer")[0]
                ok &= claim(srv, args, devs, claimer, 1, "A", out, "claim")
                upload(srv, args, devs, "B", False, out, "upload2")
                ok &= claim(srv, args, devs, claimer, args.batch, "B", out, "claim_batch")
            if "upload" in only and args.upload_rounds > 0:
                # The upload rate on a longer run (the keys stay unclaimed).
                upload(srv, args, devs, "C", False, out, "upload_rate", args.upload_rounds)
            if "query" in only:
                query(srv, args, out)
            srv.check_alive()
        finally:
            srv.stop()
    out["loadavg_after"] = os.getloadavg()[0]
    v = out["versions_rps"]
    for k in ("claim_req_per_s", "claim_batch_req_per_s", "upload_rate_req_per_s", "query_req_per_s"):
        if k in out:
            out[k.replace("_per_s", "_vs_versions")] = out[k] / v
    tb.log("ratios to GET /versions req/s: " + ", ".join(
        f"{k} {out[k]:.2f}" for k in out if k.endswith("_vs_versions")))
    tb.log(f"load average before {out['loadavg_before']:.2f}, after {out['loadavg_after']:.2f}")
    out["ok"] = ok
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))
    if not ok:
        tb.log("[keys] FAILED: a key was handed out twice, lost, or handed out after exhaustion")
    sys.exit(0 if ok else 2)


if __name__ == "__main__":
    try:
        main()
    except (tb.BenchError, OSError, ValueError, KeyError) as e:
        tb.log(f"[keys] FAILED: {type(e).__name__}: {e}")
        sys.exit(1)
