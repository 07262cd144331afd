#!/usr/bin/env bash
# Installs what building, running and testing Trestle needs, from Debian 12's packages.
set -euo pipefail
PACKAGES=(
  cmake ninja-build g++ pkg-config git ccache
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libsqlite3-dev libpq-dev postgresql libsodium-dev libyaml-cpp-dev libre2-dev libspdlog-dev libfmt-dev libcli11-dev libssl-dev
  libvips-dev libvips-tools libjemalloc-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-matrix-nio wrk nodejs curl
  synadm python3-prometheus-client
  nginx
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
  # nginx: the tests start private ones (tests/integration --topology workers); the package's own
  # service, which Debian starts on install, is not needed.
  if [[ " ${missing[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
fi
