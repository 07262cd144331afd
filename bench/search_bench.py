#!/usr/bin/python3
"""POST /search latency over a large index: a fresh server (trestle_bench.Server), `--messages`
messages (default 20,000) sent into `--rooms` rooms by one user, each of 8-15 words drawn from a
Zipf-like vocabulary of 5,000 words (so some words are in most messages and some in a handful),
then `--samples` searches of each kind, timed one at a time from the client (p50/p99, ms):

  rare     a word in ~10 messages, order_by recent
  common   the most frequent word (in most messages), order_by recent, 10 results
  rank     the same word, order_by rank (bm25 over every match)
  context  common + event_context (5 before, 5 after, profiles)
  two      two mid-frequency words ANDed, order_by recent
  page5    the 5th page of `common` (a next_batch token)

Usage: /usr/bin/python3 bench/search_bench.py [--binary build/trestle] [--messages 20000] [--samples 50]
"""

import argparse
import json
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trestle_bench as tb  # noqa: E402


def words(n):
    rnd = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyz"
    out, seen = [], set()
    while len(out) < n:
        w = "".join(rnd.choice(letters) for _ in range(rnd.randint(4, 9)))
        if w not in seen and w not in ("the", "and", "but", "you"):
            seen.add(w)
            out.append(w)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/trestle")
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--rooms", type=int, default=5)
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = ap.parse_args()
    vocab = words(5000)
    weights = [1.0 / (i + 1) for i in range(len(vocab))]  # Zipf: word i is 1/(i+1) as frequent
    rnd = random.Random(11)
    with tempfile.TemporaryDirectory(prefix="trestle-bench-search-") as work:
        srv = tb.Server(args.binary, work, "warn")
        srv.start()
        try:
            users, first = tb.make_room(srv.port, f"se{int(time.time())}", 1)
            c = tb.Client(srv.port, users[0][0])
            rooms = [first] + [c.call("POST", tb.CLIENT + "/createRoom", {})["room_id"] for _ in range(args.rooms - 1)]
            freq = {}
            t0 = time.perf_counter()
            for i in range(args.messages):
                body = rnd.choices(vocab, weights, k=rnd.randint(8, 15))
                for w in set(body):
                    freq[w] = freq.get(w, 0) + 1
                c.call("PUT", f"{tb.CLIENT}/rooms/{tb.q(rooms[i % len(rooms)])}/send/m.room.message/b{i}",
                       {"msgtype": "m.text", "body": " ".join(body)})
            send_s = time.perf_counter() - t0
            tb.log(f"sent {args.messages} messages in {send_s:.1f} s ({args.messages / send_s:.0f}/s)")
            by_freq = sorted(freq.items(), key=lambda kv: -kv[1])
            common = by_freq[0][0]
            rare = min((kv for kv in by_freq if kv[1] >= 10), key=lambda kv: kv[1])[0]
            mid = [w for w, n in by_freq if 500 <= n <= 2000][:2] or [by_freq[5][0], by_freq[6][0]]

            def body(term, order="recent", **extra):
                re = {"search_term": term, "order_by": order}
                re.update(extra)
                return {"search_categories": {"room_events": re}}

            path = tb.CLIENT + "/search"
            page_token = None
            token = None
            for _ in range(4):
                r = c.call("POST", path + (f"?next_batch={tb.q(token)}" if token else ""), body(common))
                token = r["search_categories"]["room_events"]["next_batch"]
            page_token = token
            kinds = {
                "rare": (path, body(rare)),
                "common": (path, body(common)),
                "rank": (path, body(common, "rank")),
                "context": (path, body(common, event_context={"before_limit": 5, "after_limit": 5, "include_profile": True})),
                "two": (path, body(" ".join(mid))),
                "page5": (path + f"?next_batch={tb.q(page_token)}", body(common)),
            }
            out = {"messages": args.messages, "rooms": args.rooms, "send_per_s": args.messages / send_s,
                   "terms": {"rare": [rare, freq[rare]], "common": [common, freq[common]],
                             "two": [mid, [freq[w] for w in mid]]}}
            for name, (p, b) in kinds.items():
                times = []
                count = None
                for _ in range(args.samples):
                    t = time.perf_counter()
                    r = c.call("POST", p, b)
                    times.append((time.perf_counter() - t) * 1000)
                    count = r["search_categories"]["room_events"]["count"]
                out[name] = {"p50_ms": tb.percentile(times, 50), "p99_ms": tb.percentile(times, 99), "count": count}
                tb.log(f"{name:8s} count {count:6d}  p50 {out[name]['p50_ms']:7.2f} ms  p99 {out[name]['p99_ms']:7.2f} ms")
            c.close()
            if args.out:
                with open(args.out, "w") as f:
                    json.dump(out, f, indent=1)
            print(json.dumps(out))
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
