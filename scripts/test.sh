#!/usr/bin/env bash
# The one command to install, build and run every test: unit tests, integration tests against
# the real binary, interop tests with real client libraries, and the integration tests again
# under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
if [ -f tests/interop/package.json ]; then
  (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
fi

# ctest in directory $1 (the rest: its arguments). A failed run's log is long and CI keeps its
# ends: the end then repeats what failed (scripts/ctest-digest.awk).
run_ctest() {
  local dir=$1
  shift
  if (cd "$dir" && ctest --output-on-failure "$@"); then return 0; fi
  echo "==== what failed (from $dir/Testing/Temporary/LastTest.log) ===="
  awk -f scripts/ctest-digest.awk "$dir/Testing/Temporary/LastTest.log" | head -n 150
  return 1
}

bash scripts/build.sh
run_ctest build
# Sanitizer build: its own directory, same tests.
BUILD_DIR=build-asan BUILD_TYPE=Debug bash scripts/build.sh -DTRESTLE_SANITIZE=ON
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run_ctest build-asan -L sanitizer-safe
