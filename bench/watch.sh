#!/usr/bin/env bash
# `slipway watch` vs the seed-000 cron way (run by hand, loopback only). The same compose
# service (example app, Docker health check, published port) moves from v1 to v2 after a
# push to a local docker-registry (distribution 2.8.2), N times each way:
#   1. seed 000: `docker pull`, `docker-compose down`, `docker-compose up -d`, wait for healthy;
#   2. `slipway watch --once` (HEAD digest check, pull, recreate the one service, health gate).
# Reports seconds from push to healthy v2 and failed requests of a client polling the
# published port during the swap. Then counts the registry requests of check cycles with
# nothing new, from the registry's own access log.
# Usage: bench/watch.sh [N]   (default 3). SLIPWAY_BIN overrides the binary.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-3}
cd "$root"
bin=${SLIPWAY_BIN:-}
if [ -z "$bin" ]; then
  cargo build --quiet --locked -p slipway
  bin="$root/target/debug/slipway"
fi
scripts/build-example.sh >/dev/null
B=$(mktemp -d)
reg_pid=""
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
app=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
R="127.0.0.1:$port/bench/web"
cleanup() {
  (cd "$B/slipwaywatchbench" 2>/dev/null && docker-compose down >/dev/null 2>&1) || true
  [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null || true
  docker images --format '{{.Repository}}:{{.Tag}}' "$R" | grep -v '<none>' | xargs -r docker rmi >/dev/null 2>&1 || true
  docker images --digests --format '{{.Repository}}@{{.Digest}}' "$R" | grep -v '<none>' | xargs -r docker rmi >/dev/null 2>&1 || true
  rm -rf "$B"
}
trap cleanup EXIT

cat > "$B/reg.yml" <<YAML
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $B/regdata
http:
  addr: 127.0.0.1:$port
YAML
docker-registry serve "$B/reg.yml" > "$B/reg.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done

P="$B/slipwaywatchbench"
mkdir -p "$P"
cat > "$P/docker-compose.yml" <<YAML
services:
  web:
    image: $R:stable
    ports: ["127.0.0.1:$app:8080"]
    labels: ["slipway.watch=true"]
    healthcheck:
      test: ["CMD", "/hello", "check"]
      interval: 1s
      timeout: 2s
      retries: 2
YAML

push() { docker tag "slipway-hello:$1" "$R:stable" && docker push -q "$R:stable" >/dev/null; }
now() { date +%s.%N; }
healthy_version() { # waits until the published port answers version $1 and compose says healthy
  for _ in $(seq 600); do
    v=$(curl -fs --max-time 1 "http://127.0.0.1:$app/" 2>/dev/null | sed -n 's/.*"version":"\([^"]*\)".*/\1/p')
    st=$(docker inspect -f '{{.State.Health.Status}}' "$(cd "$P" && docker-compose ps -q web)" 2>/dev/null || true)
    [ "$v" = "$1" ] && [ "$st" = healthy ] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2; return 1
}
load() { # polls the published port until $B/stop exists; prints failed requests
  local fail=0 total=0
  while [ ! -f "$B/stop" ]; do
    total=$((total + 1))
    curl -fs --max-time 2 -o /dev/null "http://127.0.0.1:$app/" || fail=$((fail + 1))
  done
  echo "$fail $total"
}
measure() { # way
  rm -f "$B/stop"; push v1
  (cd "$P" && docker-compose down >/dev/null 2>&1; docker-compose up -d >/dev/null 2>&1)
  healthy_version v1
  [ "$1" = watch ] && "$bin" watch --once --project "$P" --state-dir "$B/state" >/dev/null 2>&1
  load > "$B/load.out" &
  lp=$!
  sleep 0.5
  push v2
  t0=$(now)
  if [ "$1" = seed ]; then
    docker pull -q "$R:stable" >/dev/null
    (cd "$P" && docker-compose down >/dev/null 2>&1 && docker-compose up -d >/dev/null 2>&1)
  else
    "$bin" watch --once --project "$P" --state-dir "$B/state" >/dev/null 2>&1
  fi
  healthy_version v2
  t1=$(now)
  sleep 0.5; touch "$B/stop"; wait $lp
  read -r fail total < "$B/load.out"
  printf '%-6s push→healthy %6.2fs  failed %3d of %4d requests\n' "$1" "$(echo "$t1 - $t0" | bc)" "$fail" "$total"
}
for way in seed watch; do
  for _ in $(seq "$n"); do measure "$way"; done
done

# Request budget: 10 cycles with nothing new, counted in the registry's access log.
push v1
(cd "$P" && docker-compose down >/dev/null 2>&1; docker-compose up -d >/dev/null 2>&1)
healthy_version v1
"$bin" watch --once --project "$P" --state-dir "$B/state" >/dev/null 2>&1 || true
before=$(grep -c '"GET /v2/\|"HEAD /v2/' "$B/reg.log" || true)
"$bin" watch --project "$P" --state-dir "$B/state" --interval 10ms --cycles 10 >/dev/null 2>&1
after=$(grep -c '"GET /v2/\|"HEAD /v2/' "$B/reg.log" || true)
echo "nothing new: $((after - before)) registry requests over 10 cycles, 1 watched image"
