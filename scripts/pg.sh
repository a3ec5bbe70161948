#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks, from Debian's postgresql package:
#
#   scripts/pg.sh start DIR   # initdb + pg_ctl start on a free loopback port; prints the URL
#   scripts/pg.sh stop DIR    # stops the cluster started in DIR (pg_ctl, by its PID file)
#
# It never uses a system service: the cluster lives in DIR, listens on 127.0.0.1 and a Unix
# socket in DIR, and runs as an unprivileged user (`postgres` when run as root, else the
# caller; then DIR must be reachable by that user, e.g. a fresh `mktemp -d`). The URL
# (postgres://USER@127.0.0.1:PORT/slipway) is also written to DIR/url.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: scripts/pg.sh start|stop DIR" >&2
  exit 2
fi
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "error: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); install Debian's postgresql package" >&2
  exit 1
fi

if [ "$(id -u)" = 0 ]; then
  user=postgres
  as_user() { runuser -u "$user" -- "$@"; }
else
  user=$(id -un)
  as_user() { "$@"; }
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ "$(id -u)" = 0 ] && chown "$user" "$dir"
    as_user "$bin/initdb" -D "$dir/data" -U "$user" --auth=trust --encoding=UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    for _ in 1 2 3 4 5; do
      port=$(free_port)
      if as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
          -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on" start >/dev/null; then
        as_user "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$user" slipway
        url="postgres://$user@127.0.0.1:$port/slipway"
        echo "$url" >"$dir/url"
        echo "$url"
        exit 0
      fi
    done
    echo "error: PostgreSQL did not start (see $dir/server.log)" >&2
    exit 1
    ;;
  stop)
    [ -d "$dir/data" ] || exit 0
    as_user "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    ;;
  *)
    echo "usage: scripts/pg.sh start|stop DIR" >&2
    exit 2
    ;;
esac
