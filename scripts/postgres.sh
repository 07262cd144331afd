#!/usr/bin/env bash
# A private PostgreSQL for the tests: its own cluster in a directory, reached only through a unix
# socket in that directory (no TCP port, so it never meets the system's server on 5432).
#
#   scripts/postgres.sh start DIR        creates the cluster in DIR/data if there is none, starts it,
#                                        prints DIR (the socket directory: psql -h DIR -U postgres)
#   scripts/postgres.sh stop DIR [MODE]  stops it (the cluster stays, for the next start); MODE is
#                                        pg_ctl's: fast (the default), immediate (a crash: recovery at
#                                        the next start) or smart
#   scripts/postgres.sh run CMD [ARG...] a fresh cluster in a temporary directory for one command:
#                                        starts it, runs CMD with TRESTLE_TEST_PG=<socket dir> (and
#                                        TRESTLE_TEST_PG_DISPOSABLE=1: no need to drop databases),
#                                        stops it, removes it, exits with CMD's status
#
# The superuser is `postgres`, trusted on the socket (the directory is the only way in). fsync stays
# on: the tests check durability. PostgreSQL refuses to run as root, so as root the cluster belongs to
# an unprivileged user (TRESTLE_PG_USER, default `nobody`), which must be able to reach DIR.
# initdb and pg_ctl come from Debian's postgresql package (/usr/lib/postgresql/<version>/bin).
set -euo pipefail

usage() {
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$dir" ] && [ -x "$dir/$1" ]; then
    echo "$dir/$1"
  elif command -v "$1" >/dev/null; then
    command -v "$1"
  else
    echo "postgres.sh: no $1 (install Debian's postgresql package)" >&2
    exit 1
  fi
}

PG_USER=${TRESTLE_PG_USER:-nobody}

# Runs a command as the cluster's owner: that user when we are root, ourselves otherwise.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u "$PG_USER" -- "$@")  # from a directory that user can read
  else
    "$@"
  fi
}

start() {
  local dir=$1
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  # The socket's path (DIR/.s.PGSQL.5432) must fit in a sockaddr_un (107 bytes).
  if [ ${#dir} -gt 90 ]; then
    echo "postgres.sh: $dir is too long for a unix socket path; use a shorter directory" >&2
    exit 1
  fi
  if [ "$(id -u)" -eq 0 ]; then
    chown "$PG_USER" "$dir"
    if ! runuser -u "$PG_USER" -- test -w "$dir"; then
      echo "postgres.sh: user $PG_USER cannot reach $dir (a parent directory is closed to it);" \
        "use a directory under /tmp" >&2
      exit 1
    fi
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_owner "$(pg_bin initdb)" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    cat >>"$dir/data/postgresql.conf" <<EOF
# scripts/postgres.sh: unix socket only, in the cluster's own directory
listen_addresses = ''
unix_socket_directories = '$dir'
max_connections = 200
fsync = on
EOF
  fi
  as_owner "$(pg_bin pg_ctl)" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null \
    || { tail -n 20 "$dir/postgres.log" >&2; exit 1; }
  echo "$dir"
}

# stop DIR [MODE]: fast (the default) writes a shutdown checkpoint; immediate, for a cluster about
# to be removed, does not.
stop() {
  local dir
  dir=$(cd "$1" && pwd)
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$(pg_bin pg_ctl)" -D "$dir/data" -m "${2:-fast}" -w -t 60 stop >/dev/null
  fi
}

case "${1:-}" in
  start)
    [ $# -eq 2 ] || usage
    start "$2"
    ;;
  stop)
    [ $# -eq 2 ] || [ $# -eq 3 ] || usage
    case "${3:-fast}" in fast | immediate | smart) ;; *) usage ;; esac
    stop "$2" "${3:-fast}"
    ;;
  run)
    [ $# -ge 2 ] || usage
    shift
    tmp=$(mktemp -d /tmp/trestle-pg.XXXXXX)
    chmod 755 "$tmp"
    cleanup() {
      stop "$tmp" immediate || true
      rm -rf "$tmp"
    }
    trap cleanup EXIT
    start "$tmp" >/dev/null
    # In the background so that a TERM (a ctest timeout) reaches the command and the cluster
    # still stops.
    TRESTLE_TEST_PG=$tmp TRESTLE_TEST_PG_DISPOSABLE=1 "$@" &
    child=$!
    trap 'kill -TERM $child 2>/dev/null; wait $child; exit 143' TERM INT
    status=0
    wait $child || status=$?
    exit $status
    ;;
  *)
    usage
    ;;
esac
