#!/usr/bin/env bash
# Configures and builds into build/ (the server binary is always build/trestle).
# BUILD_DIR and extra cmake arguments (e.g. -DTRESTLE_SANITIZE=ON) may be given.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD} CCACHE_NOHASHDIR=1  # cache hits across checkouts
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
ninja -C "$BUILD_DIR"
