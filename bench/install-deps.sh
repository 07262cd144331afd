#!/usr/bin/env bash
# Benchmark-only tools (not needed to build or test): wrk (the load generator) and Debian's nginx
# (the ceiling of bench/targets.sh: a trivial server answering the same PUTs). Run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends wrk nginx-light >/dev/null 2>&1 \
  || apt-get install -y -qq --no-install-recommends wrk nginx >/dev/null
# The package's own service is not needed (targets.py starts a private nginx): leave none running.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
command -v wrk >/dev/null && [ -x /usr/sbin/nginx ] && echo "wrk and nginx installed"
