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
bash scripts/build.sh
(cd build && ctest --output-on-failure)
# Sanitizer build: its own directory, same tests.
BUILD_DIR=build-asan BUILD_TYPE=Debug bash scripts/build.sh -DTRESTLE_SANITIZE=ON
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -L sanitizer-safe)
