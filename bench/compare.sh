#!/usr/bin/env bash
# Benchmarks a baseline commit against the current build (or a second commit) in one run and prints
# new/baseline ratios. This machine is noisy: compare ratios from one run, not absolute numbers
# from different runs.
#
#   bash bench/compare.sh BASELINE_COMMIT              # baseline vs build/trestle (working tree)
#   bash bench/compare.sh BASELINE_COMMIT NEW_COMMIT   # two commits
#   ROUNDS=3 bash bench/compare.sh HEAD~1              # more rounds (default 2), medians compared
#   BUILD=1 bash bench/compare.sh HEAD                 # rebuild build/trestle first
#   bash bench/compare.sh HEAD~1 -- --only send,sync   # extra args after -- go to every run
#   bash bench/compare.sh HEAD~1 -- --only appservice  # appservice delivery only (events/s, drain, latency)
#   NEW_BINARY=/tmp/x/trestle bash bench/compare.sh HEAD   # baseline vs any binary
#
# A commit is built once in a git worktree under /tmp with its own build dir (cmake + ninja -j2,
# target trestle only); the binary is cached in $BENCH_CACHE (default /tmp/trestle-compare-builds/<sha>)
# and the worktree removed. The benchmark scripts used for both sides are this checkout's bench/.
# Rounds alternate the order (base,new then new,base ...) so drift hits both sides alike.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=/usr/bin/python3
ROUNDS=${ROUNDS:-2}
CACHE=${BENCH_CACHE:-/tmp/trestle-compare-builds}

[ $# -ge 1 ] || { sed -n '2,14p' "$0" >&2; exit 2; }
HEAD_SHA=$(git rev-parse HEAD)
# Commits are resolved once, here: HEAD may move while a build runs.
BASE_REF=$(git rev-parse --verify "$1^{commit}") || { echo "unknown commit $1" >&2; exit 2; }
shift
NEW_REF=""
if [ $# -ge 1 ] && [ "$1" != "--" ]; then
  NEW_REF=$(git rev-parse --verify "$1^{commit}") || { echo "unknown commit $1" >&2; exit 2; }
  shift
fi
[ "${1:-}" = "--" ] && shift
EXTRA=("$@")
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

WT=""
cleanup() {
  if [ -n "$WT" ] && [ -d "$WT" ]; then
    git -C "$ROOT" worktree remove --force "$WT/src" >/dev/null 2>&1 || true
    rm -rf "$WT"
    git -C "$ROOT" worktree prune
  fi
}
trap cleanup EXIT

# Prints the path of a trestle binary built from commit $1 (cached per commit).
build_commit() {
  local sha out
  sha=$(git rev-parse --verify "$1^{commit}")
  out="$CACHE/$sha/trestle"
  if [ -x "$out" ]; then
    echo "using cached $out" >&2
    echo "$out"
    return
  fi
  WT=$(mktemp -d /tmp/trestle-bench-wt-XXXXXX)
  trap cleanup EXIT  # this function runs in a $(...) subshell, which does not inherit traps
  echo "building $1 ($sha) in $WT ..." >&2
  git worktree add --detach "$WT/src" "$sha" >&2
  if ! cmake -S "$WT/src" -B "$WT/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$WT/cmake.log" 2>&1; then
    cat "$WT/cmake.log" >&2
    exit 1
  fi
  ninja -C "$WT/build" -j2 trestle >&2
  mkdir -p "$CACHE/$sha"
  cp "$WT/build/trestle" "$out.tmp" && mv "$out.tmp" "$out"
  cleanup
  WT=""
  echo "$out"
}

BASE_BIN=$(build_commit "$BASE_REF")
BASE_LABEL="baseline ${BASE_REF:0:10}"
if [ -n "${NEW_BINARY:-}" ]; then
  NEW_BIN=$(realpath "$NEW_BINARY")
  NEW_LABEL="new $NEW_BIN"
elif [ -n "$NEW_REF" ]; then
  NEW_BIN=$(build_commit "$NEW_REF")
  NEW_LABEL="new ${NEW_REF:0:10}"
else
  [ "${BUILD:-0}" = 1 ] && ninja -C build -j2 trestle >&2
  NEW_BIN=$ROOT/build/trestle
  [ -x "$NEW_BIN" ] || { echo "no $NEW_BIN (bash scripts/build.sh)" >&2; exit 1; }
  if [ -n "$(find src CMakeLists.txt -newer build/trestle -print -quit)" ]; then
    echo "note: build/trestle is older than some sources (BUILD=1 rebuilds it)" >&2
  fi
  NEW_LABEL="new build/trestle (working tree at ${HEAD_SHA:0:10})"
fi

OUTDIR=$(mktemp -d /tmp/trestle-compare-results-XXXXXX)
BASE_JSON=(); NEW_JSON=(); status=0
run_one() {  # side label binary json
  local rc=0
  "$PY" bench/trestle_bench.py run --binary "$3" --label "$2" --out "$4" "${EXTRA[@]}" || rc=$?
  if [ $rc -eq 1 ] || [ ! -f "$4" ]; then echo "benchmark run failed: $2" >&2; exit 1; fi
  [ $rc -ne 0 ] && status=2
  return 0
}
for ((i = 1; i <= ROUNDS; i++)); do
  echo "--- round $i/$ROUNDS" >&2
  if ((i % 2 == 1)); then
    run_one base "$BASE_LABEL" "$BASE_BIN" "$OUTDIR/base-$i.json"
    run_one new "$NEW_LABEL" "$NEW_BIN" "$OUTDIR/new-$i.json"
  else
    run_one new "$NEW_LABEL" "$NEW_BIN" "$OUTDIR/new-$i.json"
    run_one base "$BASE_LABEL" "$BASE_BIN" "$OUTDIR/base-$i.json"
  fi
  BASE_JSON+=("$OUTDIR/base-$i.json"); NEW_JSON+=("$OUTDIR/new-$i.json")
done
echo
echo "baseline: $BASE_LABEL ($BASE_BIN)"
echo "new:      $NEW_LABEL ($NEW_BIN)"
"$PY" bench/trestle_bench.py compare "${BASE_JSON[@]}" -- "${NEW_JSON[@]}"
echo "(per-run metrics in $OUTDIR)"
exit $status
