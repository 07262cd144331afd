#!/usr/bin/python3
"""The event builder's memory: the server's RSS (VmRSS, VmHWM) before and after sending many
large events into a few rooms, against a fresh server (trestle_bench.Server).

Usage: /usr/bin/python3 bench/event_cache_bench.py [--binary build/trestle] [--events 5000] [--kb 60]
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trestle_bench as tb  # noqa: E402


def rss_kb(pid):
    st = tb.proc_status(pid)
    return st.get("VmRSS"), st.get("VmHWM")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/trestle")
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--kb", type=int, default=60, help="size of each event's body, KiB")
    ap.add_argument("--rooms", type=int, default=4)
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="trestle-bench-events-") as work:
        srv = tb.Server(args.binary, work, "warn")
        srv.start()
        try:
            users, first = tb.make_room(srv.port, f"ev{int(time.time())}", 1)
            token = users[0][0]
            c = tb.Client(srv.port, token)
            rooms = [first] + [c.call("POST", tb.CLIENT + "/createRoom", {})["room_id"] for _ in range(args.rooms - 1)]
            before = rss_kb(srv.pid)
            filler = "x" * (args.kb * 1024 - 200)
            t0 = time.perf_counter()
            for i in range(args.events):
                room = rooms[i % len(rooms)]
                c.call("PUT", f"{tb.CLIENT}/rooms/{tb.q(room)}/send/m.room.message/t{i}",
                       {"msgtype": "m.text", "body": f"{i} {filler}"})
            send_s = time.perf_counter() - t0
            after = rss_kb(srv.pid)
            time.sleep(1.0)
            settled = rss_kb(srv.pid)
            c.close()
            out = {"events": args.events, "event_kb": args.kb, "send_s": send_s,
                   "events_per_s": args.events / send_s, "rss_kb_before": before[0], "rss_kb_after": after[0],
                   "rss_kb_after_1s": settled[0], "hwm_kb": settled[1],
                   "rss_growth_mib": (settled[0] - before[0]) / 1024.0}
            tb.log(f"{args.events} events of {args.kb} KiB in {send_s:.1f} s ({out['events_per_s']:.0f}/s); RSS "
                   f"before {before[0] / 1024:.1f} MiB, after {after[0] / 1024:.1f} MiB, "
                   f"1 s later {settled[0] / 1024:.1f} MiB (peak {settled[1] / 1024:.1f} MiB)")
            if args.out:
                with open(args.out, "w") as f:
                    json.dump(out, f, indent=1)
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
