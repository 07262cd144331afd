#!/usr/bin/python3
"""KiB per idle /sync long-poll, by steps, for binaries alternating in one run (stdlib only).

  idle_polls.py --binary A [--binary B ...] [--rounds 2] [--steps 4] [--step 1000] [--users 200]

Each round starts a fresh server per binary (order alternating), makes `--users` users in one quiet
room (as targets.py's wake section: appservice-registered, every /sync with set_presence=offline),
then opens `--step` more long-polls (each its own connection, round-robin over the users) `--steps`
times, reading VmRSS `--settle` s after each step. Reports the KiB per poll of each step and of the
whole (last step minus before, / polls), then wakes them all with one message and checks that every
poll answered with it (the time that took is printed too). Medians over rounds per binary.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import targets  # noqa: E402
import trestle_bench as tb  # noqa: E402
from trestle_bench import CLIENT, Client, log, q  # noqa: E402


def measure(binary, args):
    workdir = tempfile.mkdtemp(prefix="trestle-idle-polls-")
    srv, as_token = targets.members_server(binary, workdir, args)
    out = {}
    try:
        srv.start()
        users = [targets.as_register(srv.port, as_token, f"bench_c{i}", login=True) for i in range(args.users)]
        c = Client(srv.port, users[0][0])
        room = c.call("POST", CLIENT + "/createRoom", {"preset": "public_chat", "name": "quiet"})["room_id"]
        c.close()
        for token, _ in users[1:]:
            c = Client(srv.port, token)
            c.call("POST", f"{CLIENT}/rooms/{q(room)}/join", {})
            c.close()
        for token, _ in users:
            targets.since_of(srv.port, token)
        sinces = [(t, targets.since_of(srv.port, t)) for t, _ in users]
        time.sleep(1.0)
        rss = [tb.proc_status(srv.pid)["VmRSS"]]
        polls = targets.Polls(srv.port)
        try:
            n = 0
            for _ in range(args.steps):
                for _ in range(args.step):
                    token, since = sinces[n % len(sinces)]
                    polls.open(token, since, timeout_ms=120000)
                    n += 1
                time.sleep(args.settle)
                rss.append(tb.proc_status(srv.pid)["VmRSS"])
            early = len(polls.collect(0))
            c = Client(srv.port, users[0][0])
            eid = c.call("PUT", f"{CLIENT}/rooms/{q(room)}/send/m.room.message/wakeall",
                         {"msgtype": "m.text", "body": "wake all"})["event_id"]
            c.close()
            t0 = time.perf_counter()
            answered = early
            limit = time.monotonic() + 60
            while answered < n and time.monotonic() < limit:
                answered += len(polls.collect(0.5))
            woke = [p for p, _ in polls.polls.values() if p.done_at is not None and eid in targets.poll_events(p)[1]]
            out["early"] = early
            out["woken"] = len(woke)
            out["wake_all_ms"] = (max(p.done_at for p in woke) - t0) * 1000.0 if woke else float("nan")
        finally:
            polls.close()
        out["rss_before_kib"] = rss[0]
        out["steps_kib_per_poll"] = [(rss[i + 1] - rss[i]) / args.step for i in range(args.steps)]
        out["kib_per_poll"] = (rss[-1] - rss[0]) / (args.step * args.steps)
        srv.check_alive()
    finally:
        srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", action="append", required=True)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--step", type=int, default=1000)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--log-level", default="")
    args = ap.parse_args()
    targets.raise_nofile(args.steps * args.step + 512)
    results = {b: [] for b in args.binary}
    for rnd in range(args.rounds):
        order = args.binary if rnd % 2 == 0 else list(reversed(args.binary))
        for b in order:
            r = measure(os.path.abspath(b), args)
            log(f"[idle] round {rnd} {b}: {r['kib_per_poll']:.2f} KiB/poll, steps "
                f"{' '.join(f'{x:.2f}' for x in r['steps_kib_per_poll'])}, woken {r['woken']}/"
                f"{args.steps * args.step} (early {r['early']}) in {r['wake_all_ms']:.0f} ms")
            results[b].append(r)
    for b, rs in results.items():
        med = statistics.median(r["kib_per_poll"] for r in rs)
        steps = [statistics.median(r["steps_kib_per_poll"][i] for r in rs) for i in range(args.steps)]
        wake = statistics.median(r["wake_all_ms"] for r in rs)
        print(f"{b}: {med:.2f} KiB/poll (steps {' '.join(f'{x:.2f}' for x in steps)}), wake all {wake:.0f} ms")
    bad = [r for rs in results.values() for r in rs if r["early"] or r["woken"] != args.steps * args.step]
    return 2 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
