#!/usr/bin/python3
"""The cost of MSC3202 E2EE data (device lists, one-time / fallback key counts) in appservice
transactions (issue 8). Stdlib only; run with Debian's /usr/bin/python3.

  appservice_e2ee_bench.py --binary build/trestle [--users 10000] [--small-users 1000] [--devices 2000]
                           [--messages 2000] [--otk-every 20] [--out FILE.json]

Three runs, each on its own fresh server (bench/trestle_bench.py's Server and as-listener) with one
appservice (`io.element.msc4190: true` so it can create devices):
  a      `org.matrix.msc3202: false`, --users bridged users
  b      `org.matrix.msc3202: true`,  --users bridged users
  b_small `org.matrix.msc3202: true`, --small-users bridged users
  a_small `org.matrix.msc3202: false`, --small-users bridged users (the user-count effect without MSC3202)
Set-up (not measured): the bridged users are registered with the as_token (concurrently), --devices
devices are created round-robin over the first users with `PUT /devices/{id}?user_id=`, each
uploads 5 one-time keys by masquerading (`?user_id=&device_id=`); one bridged user and one normal
user share a room; the appservice is caught up. Measured: the normal user sends --messages messages
(4 keep-alive connections) and, every --otk-every messages, one bridged device uploads one more
one-time key (in every run, so the runs differ only in the flag / the user count); then until the
appservice is caught up. Per run: delivered events/s, server CPU (utime+stime from /proc) per
delivered event, transactions, bytes per transaction and per event. Then (drain_*) --drain-messages
more with the same key trickle while the listener holds its answer, and the same metrics while the
backlog drains after the release (only the appservice sender works then, so its CPU per event is
the delivery cost without the send handlers'). Printed: b/a, b/b_small and a/a_small of each.
Only 127.0.0.1 is contacted; every loop is bounded.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trestle_bench as tb  # noqa: E402

CLIENT = tb.CLIENT
q = tb.q
MSC = "org.matrix.msc3202"


def otk(user_id, device, ids):
    return {f"signed_curve25519:{k}": {"key": f"{k}" + "x" * 40, "signatures": {user_id: {f"ed25519:{device}": "s" * 86}}}
            for k in ids}


def parallel(n_threads, items, fn, port, token):
    """Runs fn(client, item) for every item over n_threads keep-alive connections; raises the first error."""
    errors = []
    lock = threading.Lock()
    it = iter(items)

    def work():
        c = tb.Client(port, token)
        try:
            while not errors:
                with lock:
                    item = next(it, None)
                if item is None:
                    return
                fn(c, item)
        except Exception as e:  # noqa: BLE001 - reported to the caller
            errors.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    if errors:
        raise tb.BenchError(f"{errors[0]}")


def one_run(binary, workdir, name, msc3202, n_users, args):
    as_token = "as_bench_" + os.urandom(12).hex()
    hs_token = "hs_bench_" + os.urandom(12).hex()
    listener = tb.Listener(hs_token, max_seconds=900)
    srv = status = None
    try:
        d = os.path.join(workdir, name)
        os.makedirs(d)
        reg = os.path.join(d, "reg.yaml")
        with open(reg, "w") as f:  # JSON is YAML
            json.dump({"id": tb.AS_ID, "url": listener.url, "as_token": as_token, "hs_token": hs_token,
                       "sender_localpart": "benchbridgebot", "rate_limited": False, "receive_ephemeral": False,
                       MSC: msc3202, "io.element.msc4190": True,
                       "namespaces": {"users": [{"exclusive": True, "regex": "@bridged_.*:localhost"}],
                                      "aliases": [], "rooms": []}}, f)
        srv = tb.Server(binary, d, args.log_level, appservice_files=[reg])
        srv.start()
        port = srv.port
        status = tb.AsStatus(port, as_token)
        t_setup = tb.mono()

        users = [f"@bridged_{i}:localhost" for i in range(n_users)]

        def reg_user(c, i):
            c.call("POST", CLIENT + "/register",
                   {"type": "m.login.application_service", "username": f"bridged_{i}", "inhibit_login": True})
        parallel(args.threads, range(n_users), reg_user, port, as_token)
        t_reg = tb.mono() - t_setup

        devices = [(users[i % n_users], f"BD{i}") for i in range(args.devices)]

        def make_dev(c, ud):
            u, dev = ud
            c.call("PUT", f"{CLIENT}/devices/{dev}?user_id={q(u)}", {"display_name": "bench"}, expect=None)
            c.call("POST", f"{CLIENT}/keys/upload?user_id={q(u)}&device_id={dev}",
                   {"one_time_keys": otk(u, dev, [f"S{k}" for k in range(5)])})
        parallel(args.threads, devices, make_dev, port, as_token)

        loader_token, _ = tb.register(port, "loader")
        lc = tb.Client(port, loader_token)
        room_id = lc.call("POST", CLIENT + "/createRoom", {"preset": "public_chat", "name": "asbench"})["room_id"]
        lc.close()
        asc = tb.Client(port, as_token)
        asc.call("POST", f"{CLIENT}/rooms/{q(room_id)}/join?user_id={q(users[0])}", {})
        asc.close()
        t_ok, st = tb.wait_caught_up(status, listener, 120)
        if t_ok is None:
            raise tb.BenchError(f"{name}: not caught up after set-up: {st}")
        setup_s = tb.mono() - t_setup
        tb.log(f"[asbench] {name}: {n_users} users registered in {t_reg:.1f} s, set-up {setup_s:.1f} s; sending...")

        # Measured: messages from the loader, a one-time-key upload every otk_every messages.
        n_thr = 4
        tag = os.urandom(4).hex()

        def sender(k, phase="live", count=args.messages):
            c = tb.Client(port, loader_token)
            a = tb.Client(port, as_token)
            try:
                for m in range(k, count, n_thr):
                    c.call("PUT", f"{CLIENT}/rooms/{q(room_id)}/send/m.room.message/{tag}{phase}{m}",
                           {"msgtype": "m.text", "body": f"bench message {m}"})
                    if m % args.otk_every == 0:
                        u, dev = devices[(m // args.otk_every) % len(devices)]
                        a.call("POST", f"{CLIENT}/keys/upload?user_id={q(u)}&device_id={dev}",
                               {"one_time_keys": otk(u, dev, [f"T{phase}{m}"])})
            except Exception as e:  # noqa: BLE001
                errs.append(e)
            finally:
                c.close()
                a.close()

        errs = []
        e2ee0 = len(listener.e2ee_txns)
        cpu0 = tb.proc_cpu_ms(srv.pid)
        t0 = tb.mono()
        ths = [threading.Thread(target=sender, args=(k,)) for k in range(n_thr)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(300)
        t1 = tb.mono()
        if errs:
            raise tb.BenchError(f"{name}: send: {errs[0]}")
        t_caught, st = tb.wait_caught_up(status, listener, 120)
        if t_caught is None:
            raise tb.BenchError(f"{name}: not caught up after the load: {st}")
        cpu1 = tb.proc_cpu_ms(srv.pid)
        srv.check_alive()
        txns = tb.txns_between(listener.snapshot(), t0, float("inf"))
        events = sum(t[3] for t in txns)
        body = sum(t[4] for t in txns)
        if events < args.messages:
            raise tb.BenchError(f"{name}: only {events} of {args.messages} events delivered")
        if listener.bad:
            raise tb.BenchError(f"{name}: listener saw bad requests: {listener.bad[:3]}")

        # Phase 2, the same load with the appservice's answers held back (the sender waits on one
        # transaction), then released: while it drains, the server does nothing but build and send
        # transactions, so its CPU per event there is the delivery cost without the send handlers'.
        e2ee_live = len(listener.e2ee_txns) - e2ee0
        n_release = len(listener.released)
        t_hold = tb.mono()
        listener.command("hold")
        ths = [threading.Thread(target=sender, args=(k, "held", args.drain_messages)) for k in range(n_thr)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(300)
        if errs:
            raise tb.BenchError(f"{name}: send (held): {errs[0]}")
        time.sleep(0.3)  # let the last sends commit
        cpu2 = tb.proc_cpu_ms(srv.pid)
        t2 = tb.mono()
        listener.command("release")
        if listener.wait_release(n_release, 10) is None:
            raise tb.BenchError(f"{name}: the listener did not release")
        t_drained, st = tb.wait_caught_up(status, listener, 120)
        if t_drained is None:
            raise tb.BenchError(f"{name}: backlog not drained: {st}")
        cpu3 = tb.proc_cpu_ms(srv.pid)
        # From the hold on: the one transaction the sender sent (and waited on) before the release
        # is counted in events and bytes but was built before cpu2 (a few events of 2,000).
        dtx = tb.txns_between(listener.snapshot(), t_hold, float("inf"))
        dev_n = sum(t[3] for t in dtx)
        dbody = sum(t[4] for t in dtx)
        if dev_n < args.drain_messages:
            raise tb.BenchError(f"{name}: drain: only {dev_n} of {args.drain_messages} events delivered")
        e2ee_drain = len(listener.e2ee_txns) - e2ee0 - e2ee_live
        if (e2ee_live + e2ee_drain > 0) != msc3202:
            raise tb.BenchError(f"{name}: {e2ee_live + e2ee_drain} transactions with MSC3202 data, flag {msc3202}")
        out = {
            "txns_with_msc3202": e2ee_live, "drain_txns_with_msc3202": e2ee_drain,
            "drain_messages": args.drain_messages, "drain_otk_uploads": len(range(0, args.drain_messages, args.otk_every)),
            "drain_events": dev_n, "drain_txns": len(dtx), "drain_s": t_drained - t2,
            "drain_events_per_s": dev_n / (t_drained - t2),
            "drain_server_cpu_ms": cpu3 - cpu2, "drain_server_cpu_ms_per_event": (cpu3 - cpu2) / dev_n,
            "drain_bytes_per_txn": dbody / max(1, len(dtx)), "drain_bytes_per_event": dbody / dev_n,
            "users": n_users, "devices": args.devices, "msc3202": msc3202, "messages": args.messages,
            "otk_uploads": len(range(0, args.messages, args.otk_every)),
            "register_users_per_s": n_users / t_reg, "setup_s": setup_s,
            "send_s": t1 - t0, "until_caught_up_s": t_caught - t0,
            "delivered_events": events,
            "delivered_events_per_s": events / (t_caught - t0),
            "server_cpu_ms": cpu1 - cpu0,
            "server_cpu_ms_per_event": (cpu1 - cpu0) / events,
            "txns": len(txns), "events_per_txn": events / max(1, len(txns)),
            "txn_bytes": body, "bytes_per_txn": body / max(1, len(txns)), "bytes_per_event": body / events,
            "rss_kb": tb.proc_status(srv.pid)["VmRSS"],
        }
        return out
    finally:
        if status is not None:
            status.close()
        if srv is not None:
            srv.stop()
        listener.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build/trestle")
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--small-users", type=int, default=1000)
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--drain-messages", type=int, default=8000,
                    help="messages sent while the appservice's answers are held (CPU resolution is 10 ms)")
    ap.add_argument("--otk-every", type=int, default=20)
    ap.add_argument("--threads", type=int, default=8, help="concurrent connections for the set-up")
    ap.add_argument("--log-level", default="warn")
    ap.add_argument("--out", default=None)
    ap.add_argument("--json", action="store_true", help="print the whole result as JSON too")
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    workdir = tempfile.mkdtemp(prefix="trestle-asbench-")
    res = {"binary": binary, "loadavg_before": os.getloadavg(), "runs": {}}
    t_all = tb.mono()
    for name, flag, n in (("a", False, args.users), ("b", True, args.users), ("b_small", True, args.small_users),
                          ("a_small", False, args.small_users)):
        r = one_run(binary, workdir, name, flag, n, args)
        res["runs"][name] = r
        tb.log(f"[asbench] {name}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                                  for k, v in r.items()))
    a, b, s, a_s = res["runs"]["a"], res["runs"]["b"], res["runs"]["b_small"], res["runs"]["a_small"]
    ratios = {}
    for key in ("server_cpu_ms_per_event", "bytes_per_txn", "bytes_per_event", "delivered_events_per_s", "txns",
                "drain_server_cpu_ms_per_event", "drain_events_per_s", "drain_bytes_per_event", "drain_txns"):
        ratios[f"b/a {key}"] = b[key] / a[key] if a[key] else float("nan")
        ratios[f"b/b_small {key}"] = b[key] / s[key] if s[key] else float("nan")
        # The same user-count effect without MSC3202: what b/b_small adds on top of it is MSC3202's.
        ratios[f"a/a_small {key}"] = a[key] / a_s[key] if a_s[key] else float("nan")
    res["ratios"] = ratios
    res["loadavg_after"] = os.getloadavg()
    res["total_s"] = tb.mono() - t_all
    if args.json:
        print(json.dumps(res, indent=1))
    tb.log(f"[asbench] load average before {res['loadavg_before'][0]:.2f}, after {res['loadavg_after'][0]:.2f}; "
           f"total {res['total_s']:.0f} s")
    for k, v in ratios.items():
        tb.log(f"[asbench] {k}: {v:.3f}")
    out = args.out or f"/tmp/trestle-asbench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    shutil.rmtree(workdir, ignore_errors=True)
    tb.log(f"[asbench] results in {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except tb.BenchError as e:
        print(f"asbench: {e}", file=sys.stderr)
        sys.exit(1)
