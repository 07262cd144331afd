#!/usr/bin/env bash
# Runs every benchmark (start-up and RSS, send throughput, sync wake latency, 1,000 idle long-polls,
# appservice delivery) against a fresh server (new temp dir and database, free loopback port; the
# appservice benchmark gets a second fresh server with its appservice registered) and prints a
# compact summary. Not part of CI.
#
#   bash bench/run_all.sh                      # benchmarks build/trestle as it is
#   BUILD=1 bash bench/run_all.sh              # ninja -C build -j2 trestle first
#   TRESTLE_BINARY=/path/to/trestle bash bench/run_all.sh
#   bash bench/run_all.sh --only send,sync --send-duration 20   # extra args go to trestle_bench.py run
#   bash bench/run_all.sh --only appservice                      # appservice delivery only (~30 s)
#
# The metrics are also written as JSON to $OUT (default /tmp/trestle-bench-results-<time>.json).
# Exit status: 0 ok, 1 a benchmark failed, 2 ran but saw errors (non-2xx, a long-poll not woken,
# an event not delivered to the appservice, or the appservice benchmark failed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
BINARY=${TRESTLE_BINARY:-build/trestle}
OUT=${OUT:-/tmp/trestle-bench-results-$(date +%Y%m%d-%H%M%S).json}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
if [ "${BUILD:-0}" = 1 ]; then
  ninja -C build -j2 trestle
fi
[ -x "$BINARY" ] || { echo "no server binary at $BINARY (build it: bash scripts/build.sh)" >&2; exit 1; }
if [ "$BINARY" = build/trestle ] && [ -n "$(find src CMakeLists.txt -newer build/trestle -print -quit)" ]; then
  echo "note: build/trestle is older than some sources (BUILD=1 rebuilds it)" >&2
fi
rc=0
"$PY" bench/trestle_bench.py run --binary "$BINARY" \
  --label "$(git rev-parse --short HEAD 2>/dev/null || echo '?') $BINARY" --out "$OUT" "$@" || rc=$?
[ -f "$OUT" ] && echo "(metrics: $OUT)"
exit $rc
