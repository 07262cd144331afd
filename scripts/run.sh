#!/usr/bin/env bash
# The one command to get a running homeserver: installs dependencies, builds, writes a default
# config (server_name localhost, SQLite under ./data, client listener on 127.0.0.1:8008) if there
# is none, and serves in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
CONFIG=${TRESTLE_CONFIG:-homeserver.yaml}
if [ ! -f "$CONFIG" ]; then
  build/trestle generate-config --server-name localhost --data-dir ./data -o "$CONFIG"
  echo "wrote $CONFIG"
fi
exec build/trestle --config "$CONFIG"
