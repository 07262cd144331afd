#!/usr/bin/env bash
# Fuzzes the request parser/router, canonical JSON and identifier parsing with libFuzzer
# (clang, AddressSanitizer + UBSan), each target for a bounded time.
#
#   bash scripts/fuzz.sh                 # every target, 60 s each
#   bash scripts/fuzz.sh 300 request     # one target, 5 minutes
#
# Builds in build-fuzz/ (cmake -DTRESTLE_FUZZ=ON, nothing else of the project). Seeds are read from
# fuzz/corpus/<target>/; inputs the fuzzer finds go to build-fuzz/corpus/<target>/ (kept between
# runs, not committed). A crash, leak, timeout or failed property is copied to
# fuzz/regressions/<target>/ and the script exits non-zero: fix the bug and commit the file, which
# the unit tests (test_fuzz_regressions.cpp) then replay in every CI run.
# Environment: NICE (default 10), JOBS (ninja jobs, default 2), FUZZ_ARGS (extra libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(request canonical_json identifiers)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

CXX=$(command -v clang++-14 || command -v clang++ || true)
FUZZER_RT=$(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a 2>/dev/null | head -1 || true)
if [ -z "$CXX" ] || [ -z "$FUZZER_RT" ]; then
  echo "fuzz.sh: installing clang (libFuzzer)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null
  CXX=$(command -v clang++-14 || command -v clang++)
fi

BUILD_DIR=build-fuzz
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD} CCACHE_NOHASHDIR=1
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$CXX" -DTRESTLE_FUZZ=ON >/dev/null
ninja -C "$BUILD_DIR" -j "${JOBS:-2}" $(printf 'fuzz_%s ' "${TARGETS[@]}")

status=0
for t in "${TARGETS[@]}"; do
  corpus="$BUILD_DIR/corpus/$t" artifacts="$BUILD_DIR/artifacts/$t/" kept="fuzz/regressions/$t"
  mkdir -p "$corpus" "$artifacts" "$kept"
  # What was found before must still pass in this (sanitized) build.
  mapfile -t old < <(find "$kept" -type f ! -name '.*')
  if [ ${#old[@]} -gt 0 ] && ! "$BUILD_DIR/fuzz_$t" "${old[@]}" >"$BUILD_DIR/replay-$t.log" 2>&1; then
    echo "fuzz.sh: $t: a kept regression fails again, see $BUILD_DIR/replay-$t.log"
    status=1
    continue
  fi
  echo "fuzz.sh: $t for ${SECONDS_EACH}s"
  log="$BUILD_DIR/fuzz-$t.log"
  # shellcheck disable=SC2086
  if ! nice -n "${NICE:-10}" "$BUILD_DIR/fuzz_$t" "$corpus" "fuzz/corpus/$t" -max_total_time="$SECONDS_EACH" \
      -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 -artifact_prefix="$artifacts" \
      ${FUZZ_ARGS:-} >"$log" 2>&1; then
    status=1
    echo "fuzz.sh: $t FAILED (see $log):"
    grep -E "ERROR|FUZZ_CHECK|SUMMARY|runtime error" "$log" | head -5 || true
    for f in "$artifacts"*; do
      [ -f "$f" ] || continue
      cp "$f" "$kept/$(basename "$f")"
      echo "  kept $kept/$(basename "$f")"
    done
  fi
  grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)" "$log" | sed "s/^/  $t /" || true
  grep -E "^#[0-9]+.*(DONE|cov:)" "$log" | tail -1 | sed "s/^/  $t /" || true
done
exit $status
