#!/usr/bin/env bash
# Run SyTest (matrix-org's homeserver suite) against build/trestle and check the result against
# tests/sytest-expected-failures.txt. Not part of CI: it needs a SyTest checkout, set up as
# ../shared/sytest/README.md says (about 6 minutes for the whole suite on 2 cores).
#
#   SYTEST_DIR=<checkout> scripts/sytest.sh [test files relative to the checkout]
#
# Env: TRESTLE_BIN (default build/trestle), OUT_DIR (default /tmp/sytest-trestle),
#      BASELINE_TAP (a previous results.tap: tests that passed there and not now are reported),
#      SYTEST_DATABASE=postgres (the server on an empty database of a private PostgreSQL that
#      scripts/postgres.sh starts for the run, through the driver's TRESTLE_EXTRA_CONFIG).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "${SYTEST_DATABASE:-sqlite}" = postgres ]; then
  if [ -z "${TRESTLE_TEST_PG:-}" ]; then
    exec bash "$ROOT/scripts/postgres.sh" run bash "${BASH_SOURCE[0]}" "$@"
  fi
  psql -X -q -h "$TRESTLE_TEST_PG" -U postgres -d postgres \
    -c "CREATE DATABASE sytest TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
  mkdir -p "${OUT_DIR:-/tmp/sytest-trestle}"
  export TRESTLE_EXTRA_CONFIG=${OUT_DIR:-/tmp/sytest-trestle}/postgres.yaml
  printf 'database: {name: psycopg2, args: {host: "%s", user: postgres, dbname: sytest}}\n' \
    "$TRESTLE_TEST_PG" >"$TRESTLE_EXTRA_CONFIG"
fi
DRIVER=${SYTEST_DRIVER:-$ROOT/../shared/sytest}
: "${SYTEST_DIR:?set SYTEST_DIR to a SyTest checkout (see $DRIVER/README.md)}"
export SYTEST_DIR
export TRESTLE_BIN=${TRESTLE_BIN:-$ROOT/build/trestle}
export OUT_DIR=${OUT_DIR:-/tmp/sytest-trestle}
# SyTest's OpenID tests call userinfo on the client port: serve the openid resource there.
export TRESTLE_CLIENT_RESOURCES=${TRESTLE_CLIENT_RESOURCES:-client,openid}
bash "$DRIVER/run.sh" "$@" | tail -1
python3 "$ROOT/scripts/sytest_check.py" "$OUT_DIR/results.tap" ${BASELINE_TAP:+--baseline "$BASELINE_TAP"}
