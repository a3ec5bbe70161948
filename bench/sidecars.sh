#!/usr/bin/env bash
# Start time of a task of three containers (app + stand-in agent + log router), run by hand.
#
# The same three containers, in one run, three ways:
#   1. Slipway, a task of one container (the app alone);
#   2. Slipway, a task of three: the app `depends_on: {agent: healthy}`, its output to the
#      log router (examples/logrouter) over the fluentd forward protocol;
#   3. docker-compose up -d with `depends_on: {agent: {condition: service_healthy}}`, the app
#      logging to the router through the fluentd driver as well.
# Measured: from the command's start to the engine's `start` event of the app container
# (`docker events`, nanosecond times): the agent's health check (1 s interval) is in 2 and 3.
# For Slipway also until `slipway deploy` returned SUCCEEDED (the app healthy, routed).
#
# Usage: bench/sidecars.sh [RUNS]   (default 5). Prints medians and ratios.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${1:-5}
[ -n "${SLIPWAY_BIN:-}" ] || cargo build --quiet --release --locked -p slipway
docker image inspect slipway-hello:v1 slipway-logrouter:v1 >/dev/null 2>&1 || scripts/build-example.sh >/dev/null
bin=${SLIPWAY_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/slipway}
work=$(mktemp -d)
server_pid=""
projects=()
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -f "$work/data/ingress/ingress.pid" ] && kill "$(cat "$work/data/ingress/ingress.pid")" 2>/dev/null || true
  for p in "${projects[@]}"; do
    (cd "$work/compose-$p" && docker-compose -p "$p" down -t 1 >/dev/null 2>&1 || true)
  done
  if [ -n "${cluster:-}" ]; then
    docker ps -aq --filter "label=slipway.cluster=$cluster" | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker network ls -q --filter "label=slipway.cluster=$cluster" | xargs -r docker network rm >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

now_ns() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# The first `start` event since $1 (ns) of a container whose name matches $2 (a regex).
start_event() {
  local since_s=$(( $1 / 1000000000 ))
  # `--until` is in whole seconds: one past now, so this second's events are in.
  docker events --since "$since_s" --until "$(( $(date +%s) + 1 ))" --filter event=start \
    --format '{{.TimeNano}} {{.Actor.Attributes.name}}' | awk -v re="$2" -v t0="$1" '$2 ~ re && $1 >= t0 {print $1; exit}'
}

SLIPWAY_LOG=warn "$bin" server --data-dir "$work/data" --api-addr 127.0.0.1:0 --ingress-addr 127.0.0.1:0 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do [ -s "$work/data/api.addr" ] && break; sleep 0.1; done
export SLIPWAY_SERVER SLIPWAY_TOKEN
SLIPWAY_SERVER=$(cat "$work/data/api.addr")
SLIPWAY_TOKEN=$(cat "$work/data/admin.token")
cluster=$(curl -fsS -H "Authorization: Bearer $SLIPWAY_TOKEN" "$SLIPWAY_SERVER/api/v1/info" | sed 's/.*"cluster":"\([^"]*\)".*/\1/')

manifest() { # app sidecars(0|1)
  local app=$1 side=$2
  cat <<YAML
app: $app
services:
  web:
    type: Load Balanced Web Service
    image:
      location: slipway-hello:v1
      port: 8080
YAML
  [ "$side" = 1 ] && cat <<YAML
      depends_on:
        agent: healthy
YAML
  cat <<YAML
    http: { path: /$app, healthcheck: /healthz }
    count: 1
    memory: 32
YAML
  [ "$side" = 1 ] && cat <<YAML
    variables:
      HELLO_REQUIRE: 127.0.0.1:8126
    sidecars:
      agent:
        image: slipway-hello:v1
        port: 8126
        variables: { PORT: "8126" }
        healthcheck: { command: ["/hello", "check"], interval: 1s, retries: 30 }
    logging:
      image: slipway-logrouter:v1
YAML
  return 0
}

compose() { # port
  cat <<YAML
version: "2.4"
services:
  agent:
    image: slipway-hello:v1
    environment: { PORT: "8126" }
    healthcheck: { test: ["CMD", "/hello", "check"], interval: 1s, retries: 30 }
  router:
    image: slipway-logrouter:v1
    ports: ["127.0.0.1:$1:24224"]
  app:
    image: slipway-hello:v1
    environment: { HELLO_REQUIRE: "agent:8126" }
    depends_on:
      agent: { condition: service_healthy }
      router: { condition: service_started }
    logging:
      driver: fluentd
      options: { fluentd-address: "127.0.0.1:$1", fluentd-async: "true", tag: app }
YAML
}

declare -a one_start one_done three_start three_done comp_start
for i in $(seq "$runs"); do
  # 1. one container
  app="b1x$i$RANDOM"; mkdir -p "$work/$app"; manifest "$app" 0 > "$work/$app/slipway.yml"
  t0=$(now_ns)
  (cd "$work/$app" && "$bin" deploy --timeout 120s >/dev/null)
  t1=$(now_ns)
  s=$(start_event "$t0" "^$app-default-web-[0-9a-f]+$")
  one_start+=($(( (s - t0) / 1000000 ))); one_done+=($(( (t1 - t0) / 1000000 )))
  (cd "$work/$app" && "$bin" delete --app "$app" --yes >/dev/null 2>&1 || true)

  # 2. three containers
  app="b3x$i$RANDOM"; mkdir -p "$work/$app"; manifest "$app" 1 > "$work/$app/slipway.yml"
  t0=$(now_ns)
  (cd "$work/$app" && "$bin" deploy --timeout 120s >/dev/null)
  t1=$(now_ns)
  s=$(start_event "$t0" "^$app-default-web-[0-9a-f]+-web$")
  three_start+=($(( (s - t0) / 1000000 ))); three_done+=($(( (t1 - t0) / 1000000 )))
  (cd "$work/$app" && "$bin" delete --app "$app" --yes >/dev/null 2>&1 || true)

  # 3. docker-compose
  p="sidebench$i$RANDOM"; projects+=("$p")
  d="$work/compose-$p"; mkdir -p "$d"; compose "$(free_port)" > "$d/docker-compose.yml"
  t0=$(now_ns)
  (cd "$d" && docker-compose -p "$p" up -d >/dev/null 2>&1)
  s=$(start_event "$t0" "^${p}_app_1$")
  comp_start+=($(( (s - t0) / 1000000 )))
  (cd "$d" && docker-compose -p "$p" down -t 1 >/dev/null 2>&1 || true)
  echo "run $i: 1-container ${one_start[-1]} ms (deploy ${one_done[-1]} ms), 3-container ${three_start[-1]} ms (deploy ${three_done[-1]} ms), compose ${comp_start[-1]} ms"
done

m1=$(printf '%s\n' "${one_start[@]}" | median)
m1d=$(printf '%s\n' "${one_done[@]}" | median)
m3=$(printf '%s\n' "${three_start[@]}" | median)
m3d=$(printf '%s\n' "${three_done[@]}" | median)
mc=$(printf '%s\n' "${comp_start[@]}" | median)
echo
echo "== app container started (median of $runs), from the command's start"
echo "   Slipway, 1 container:   $m1 ms (deploy SUCCEEDED: $m1d ms)"
echo "   Slipway, 3 containers:  $m3 ms (deploy SUCCEEDED: $m3d ms)"
echo "   docker-compose, 3:      $mc ms"
awk -v a="$m3" -v b="$mc" -v c="$m1" 'BEGIN { printf "   3-container / compose: %.2fx   3-container / 1-container: %.2fx\n", a/b, a/c }'
