#!/usr/bin/env bash
# Slipway quickstart: builds Slipway and the example app, starts a server with SQLite state
# in ./.slipway, deploys examples/hello (3 copies behind health checks) and prints where it
# answers (through the ingress, http://127.0.0.1:8080/ unless SLIPWAY_QUICKSTART_INGRESS says
# otherwise). Run it again to redeploy; `scripts/quickstart.sh down` removes the app and stops
# the server and the ingress; `scripts/quickstart.sh stop` stops only the server (the app keeps
# serving through the ingress). Honours CARGO_TARGET_DIR; SLIPWAY_QUICKSTART_STATE moves the
# state directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib/target-dir.sh"
slipway_target_dir "$root"
cd "$root"
state="${SLIPWAY_QUICKSTART_STATE:-$root/.slipway}"
case "$state" in /*) ;; *) state="$OLDPWD/$state" ;; esac
bin="$target_dir/debug/slipway"
addr="${SLIPWAY_QUICKSTART_ADDR:-127.0.0.1:7780}"
ingress_addr="${SLIPWAY_QUICKSTART_INGRESS:-0.0.0.0:8080}"
mkdir -p "$state"

server_pid() {
  local pid
  pid=$(cat "$state/server.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

stop_server() {
  local pid; pid=$(server_pid)
  if [ -n "$pid" ]; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    echo "Stopped the Slipway server (PID $pid)."
  fi
  rm -f "$state/server.pid"
}

case "${1:-up}" in
  stop) stop_server; exit 0 ;;
  down)
    if [ -n "$(server_pid)" ]; then
      SLIPWAY_SERVER=$(cat "$state/data/api.addr") SLIPWAY_TOKEN=$(cat "$state/data/admin.token") \
        "$bin" delete web -f examples/hello/slipway.yml || true
    fi
    stop_server
    # The ingress is the data plane: it outlives the server, so stop it explicitly.
    ing=$(cat "$state/data/ingress/ingress.pid" 2>/dev/null || true)
    if [ -n "$ing" ] && kill -0 "$ing" 2>/dev/null; then kill "$ing"; echo "Stopped the ingress (PID $ing)."; fi
    exit 0 ;;
  up) ;;
  *) echo "usage: scripts/quickstart.sh [up|stop|down]" >&2; exit 2 ;;
esac

if ! docker info >/dev/null 2>&1; then
  echo "error: the Docker engine is not reachable (is dockerd running, and may this user use /var/run/docker.sock?)" >&2
  exit 1
fi

echo "==> Building Slipway"
cargo build --quiet --locked -p slipway
echo "==> Building the example app image (FROM scratch, nothing is pulled)"
scripts/build-example.sh

if [ -z "$(server_pid)" ]; then
  echo "==> Starting the Slipway server on $addr (state in $state/data, log in $state/server.log)"
  rm -f "$state/data/api.addr"
  nohup "$bin" server --data-dir "$state/data" --api-addr "$addr" --ingress-addr "$ingress_addr" >"$state/server.log" 2>&1 &
  echo $! >"$state/server.pid"
  for _ in $(seq 100); do
    [ -s "$state/data/api.addr" ] && break
    if [ -z "$(server_pid)" ]; then
      echo "error: the server did not start; its log ($state/server.log) says:" >&2
      tail -n 5 "$state/server.log" >&2
      exit 1
    fi
    sleep 0.1
  done
fi
export SLIPWAY_SERVER SLIPWAY_TOKEN
SLIPWAY_SERVER=$(cat "$state/data/api.addr")
SLIPWAY_TOKEN=$(cat "$state/data/admin.token")

echo "==> Deploying examples/hello"
"$bin" deploy -f examples/hello/slipway.yml

cat <<MSG

Slipway is running (PID $(server_pid)), API at $SLIPWAY_SERVER.
Web console: $SLIPWAY_SERVER/ui/ (log in with the token in $state/data/admin.token)
Use the CLI with:
  export SLIPWAY_SERVER=$SLIPWAY_SERVER SLIPWAY_TOKEN=\$(cat $state/data/admin.token)
  $bin status web -f examples/hello/slipway.yml
Remove the app and stop the server with: scripts/quickstart.sh down
MSG
