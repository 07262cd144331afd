#!/usr/bin/env bash
# Issue 12's targets in one command (~6-10 min): nginx ceiling and Trestle side by side (send into
# rooms of 32 / 1,000 / 10,000 members), /sync wake-up with 200 other long-polls, KiB per idle
# long-poll, appservice latency under load and backlog drain, RSS after the load, start-up.
#
#   bash bench/targets.sh                               # build/trestle
#   bash bench/targets.sh --binary /work/baseline-12/trestle --markdown
#   bash bench/targets.sh --only send --members 32,1000  # a section, smaller rooms
#   bash bench/targets.sh --compare A B [--rounds 2]     # two binaries alternately: B/A ratios
#   /usr/bin/python3 bench/targets.py --help             # every knob
#
# JSON goes to $OUT (default /tmp/trestle-targets-<time>.json). Exit 0 ran (targets met or not: see
# the PASS/MISS table), 1 a section failed, 2 ran but saw errors (non-2xx send, a long-poll not
# woken with the event, an event the appservice did not get). Needs bench/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/trestle-targets-$(date +%Y%m%d-%H%M%S).json}
command -v wrk >/dev/null && [ -x /usr/sbin/nginx ] || { echo "run bench/install-deps.sh first (wrk, nginx)" >&2; exit 1; }
exec /usr/bin/python3 bench/targets.py --out "$OUT" "$@"
