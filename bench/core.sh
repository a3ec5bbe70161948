#!/usr/bin/env bash
# Core platform benchmarks (run by hand; not part of the test suite).
#
#  1. Deploy of a 3-task service of the example app, `slipway deploy` to SUCCEEDED, against the
#     physical limit measured in the same run: Docker's own create+start of 3 containers (in
#     parallel, as Slipway does) plus the first passing health check of each.
#  2. Time from `docker kill` of a task to its replacement starting (engine event times).
#  3. Idle server RSS and CPU with 50 services / 150 tasks (HTTP health probes running).
#
# Usage: bench/core.sh [RUNS]   (default 5). Prints medians and ratios.
#
# Loaded mode: LOAD=N bench/core.sh [RUNS] runs everything beside a reproducible background
# load: N CPU-bound busy loops plus one engine loop that creates, starts and removes a
# container back to back (`docker run --rm slipway-hello:exit`). Section 2 then also prints
# where the time from `docker kill` to the replacement's start goes (event delivery, the
# controller's re-look and planning, the engine's create and start) beside Docker's own
# `docker run -d` time under the same load. SECTIONS="2" runs only some sections.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${1:-5}
services=${SERVICES:-50}
load=${LOAD:-0}
sections=${SECTIONS:-1 2 3}
section() { [[ " $sections " == *" $1 "* ]]; }

# SLIPWAY_BIN: an already built binary to measure (e.g. another checkout's, for a before/after).
[ -n "${SLIPWAY_BIN:-}" ] || cargo build --quiet --release --locked -p slipway
docker image inspect slipway-hello:v1 slipway-hello:exit >/dev/null 2>&1 || scripts/build-example.sh >/dev/null
bin=${SLIPWAY_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/slipway}
work=$(mktemp -d)
server_pid=""
load_pids=()
cleanup() {
  for p in "${load_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -f "$work/data/ingress/ingress.pid" ] && kill "$(cat "$work/data/ingress/ingress.pid")" 2>/dev/null || true
  docker ps -aq --filter "label=slipway.bench=1" | xargs -r docker rm -f >/dev/null 2>&1 || true
  if [ -n "${cluster:-}" ]; then
    docker ps -aq --filter "label=slipway.cluster=$cluster" | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker network ls -q --filter "label=slipway.cluster=$cluster" | xargs -r docker network rm >/dev/null 2>&1 || true
  fi
  docker network rm slipway-bench-net >/dev/null 2>&1 || true
  if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

if [ "$load" -gt 0 ]; then
  echo "== background load: $load busy loops + one engine loop (docker run --rm, back to back)"
  for _ in $(seq "$load"); do (while :; do :; done) & load_pids+=($!); done
  (while :; do docker run --rm --label slipway.bench=1 slipway-hello:exit >/dev/null 2>&1 || true; done) & load_pids+=($!)
  sleep 3
  echo "   load average: $(cut -d' ' -f1-3 /proc/loadavg)"
fi

SLIPWAY_LOG=${BENCH_LOG:-info,slipway_controller=debug} "$bin" server --data-dir "$work/data" --api-addr 127.0.0.1:0 --ingress-addr 127.0.0.1:0 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do [ -s "$work/data/api.addr" ] && break; sleep 0.1; done
export SLIPWAY_SERVER SLIPWAY_TOKEN
SLIPWAY_SERVER=$(cat "$work/data/api.addr")
SLIPWAY_TOKEN=$(cat "$work/data/admin.token")
cluster=$(curl -fsS -H "Authorization: Bearer $SLIPWAY_TOKEN" "$SLIPWAY_SERVER/api/v1/info" | sed 's/.*"cluster":"\([^"]*\)".*/\1/')

manifest() { # app count
  cat <<YAML
app: $1
services:
  web:
    type: Load Balanced Web Service
    image: { location: slipway-hello:v1, port: 8080 }
    http: { path: /, healthcheck: /healthz }
    count: $2
    memory: 32
YAML
}

if section 1; then
echo "== 1. deploy of 3 tasks: slipway deploy vs docker create+start+first healthy (${runs} runs each)"
docker network create slipway-bench-net >/dev/null
phys=(); slip=()
for i in $(seq "$runs"); do
  # Physical limit: three containers created and started in parallel, then each polled until
  # /healthz answers 200.
  t0=$(now_ms)
  ids=$(for _ in 1 2 3; do docker run -d --label slipway.bench=1 --network slipway-bench-net slipway-hello:v1 & done; wait)
  for id in $ids; do
    ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$id")
    until curl -fs -o /dev/null --max-time 1 "http://$ip:8080/healthz"; do sleep 0.01; done
  done
  t1=$(now_ms)
  phys+=($((t1 - t0)))
  docker rm -f $ids >/dev/null

  manifest "bench$i" 3 >"$work/slipway.yml"
  t0=$(now_ms)
  "$bin" deploy -f "$work/slipway.yml" >/dev/null
  t1=$(now_ms)
  slip+=($((t1 - t0)))
  "$bin" delete web -f "$work/slipway.yml" >/dev/null
done
pm=$(printf '%s\n' "${phys[@]}" | median)
sm=$(printf '%s\n' "${slip[@]}" | median)
echo "  docker create+start+healthy (ms): ${phys[*]}  median $pm"
echo "  slipway deploy to SUCCEEDED (ms): ${slip[*]}  median $sm"
awk -v s="$sm" -v p="$pm" 'BEGIN { printf "  overhead: %.0f ms (ratio %.2fx)\n", s - p, s / p }'
docker network rm slipway-bench-net >/dev/null 2>&1 || true
fi

if section 2; then
echo "== 2. docker kill -> replacement started (${runs} runs)"
manifest benchkill 3 >"$work/slipway.yml"
"$bin" deploy -f "$work/slipway.yml" >/dev/null
rep=(); : >"$work/kills"
for i in $(seq "$runs"); do
  victim=$(docker ps -q --no-trunc --filter "label=slipway.cluster=$cluster" --filter label=slipway.app=benchkill | head -n1)
  since=$(date +%s)
  docker kill "$victim" >/dev/null
  # Wait for the replacement to be started, then read both times from the engine's events.
  for _ in $(seq 100); do
    n=$(docker ps -q --filter "label=slipway.cluster=$cluster" --filter label=slipway.app=benchkill | wc -l)
    [ "$n" -ge 3 ] && ! docker ps -q --no-trunc | grep -q "^$victim" && break
    sleep 0.05
  done
  events=$(timeout 2 docker events --since "$since" --until "$(( $(date +%s) + 1 ))" \
    --filter "label=slipway.cluster=$cluster" --filter type=container --format '{{.Action}} {{.ID}} {{.TimeNano}}' || true)
  die=$(echo "$events" | awk -v v="$victim" '$1=="die" && $2==v {print $3; exit}')
  create=$(echo "$events" | awk -v v="$victim" -v d="$die" '$1=="create" && $2!=v && $3 > d {print $3; exit}')
  start=$(echo "$events" | awk -v v="$victim" -v d="$die" '$1=="start" && $2!=v && $3 > d {print $3; exit}')
  rep+=($(( (start - die) / 1000000 )))
  echo "$victim $die $create $start" >>"$work/kills"
  "$bin" deploy -f "$work/slipway.yml" >/dev/null   # waits until 3 healthy again
  sleep 1
done
rm_=$(printf '%s\n' "${rep[@]}" | median)
echo "  kill -> replacement started (ms): ${rep[*]}  median $rm_"
# Where the time goes, from the server's log (its debug lines for engine events and plans)
# and the engine's event times: die -> the server got the event -> it planned the start ->
# the engine created the container -> the engine started it.
python3 - "$work/kills" "$work/server.log" <<'PY'
import re, sys, datetime, statistics
kills = [l.split() for l in open(sys.argv[1]) if l.strip()]
log = [re.sub(r"\x1b\[[0-9;]*m", "", l) for l in open(sys.argv[2]).read().splitlines()]
def ts(line):
    t = line.split()[0].rstrip("Z")
    d = datetime.datetime.fromisoformat(t[:26]).replace(tzinfo=datetime.timezone.utc)
    return int(d.timestamp() * 1e9)
parts = {k: [] for k in ("event delivery", "re-look + observe + plan", "record + engine create", "engine start")}
for victim, die, create, start in kills:
    die, create, start = int(die), int(create), int(start)
    got = next((ts(l) for l in log if "engine event action=die" in l and victim in l), None)
    plan = next((ts(l) for l in log if got and "plan service=benchkill" in l and "Start {" in l and ts(l) >= got), None)
    if got is None or plan is None:
        continue
    parts["event delivery"].append((got - die) / 1e6)
    parts["re-look + observe + plan"].append((plan - got) / 1e6)
    parts["record + engine create"].append((create - plan) / 1e6)
    parts["engine start"].append((start - create) / 1e6)
if not parts["event delivery"]:
    print(f"    (no breakdown: {len(kills)} kills, none matched in the server log)")
for k, v in parts.items():
    if v:
        print(f"    {k:<26} median {statistics.median(v):6.0f} ms  ({' '.join(f'{x:.0f}' for x in v)})")
PY
# Docker's own create+start of one container under the same load.
docker network create slipway-bench-net >/dev/null 2>&1 || true
drun=()
for i in $(seq "$runs"); do
  t0=$(now_ms)
  id=$(docker run -d --label slipway.bench=1 --network slipway-bench-net slipway-hello:v1)
  t1=$(now_ms)
  drun+=($((t1 - t0)))
  docker rm -f "$id" >/dev/null
done
dm=$(printf '%s\n' "${drun[@]}" | median)
echo "  docker run -d (create+start) (ms): ${drun[*]}  median $dm"
awk -v r="$rm_" -v d="$dm" 'BEGIN { printf "  kill -> replacement minus docker run: %.0f ms (target <= 300 ms)\n", r - d }'
"$bin" delete web -f "$work/slipway.yml" >/dev/null
fi

section 3 || exit 0
echo "== 3. idle server with $services services / $((services * 3)) tasks"
# One app with many services: every app environment gets its own network, and the engine's
# default address pools hold about 30 networks.
{
  echo "app: idle"
  echo "services:"
  for i in $(seq "$services"); do
    cat <<YAML
  s$i:
    type: Load Balanced Web Service
    image: { location: slipway-hello:v1, port: 8080 }
    http: { path: /s$i, healthcheck: /healthz }
    count: 3
    memory: 32
YAML
  done
} >"$work/idle.yml"
"$bin" deploy --timeout 20m -f "$work/idle.yml" >/dev/null
sleep 15
ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
hz=$(getconf CLK_TCK)
c0=$(ticks); t0=$(now_ms)
sleep 30
c1=$(ticks); t1=$(now_ms)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$server_pid/status")
awk -v c=$((c1 - c0)) -v hz="$hz" -v ms=$((t1 - t0)) -v rss="$rss" -v n="$(docker ps -q --filter "label=slipway.cluster=$cluster" | wc -l)" \
  'BEGIN { printf "  %d tasks running; server RSS %.1f MB; CPU %.2f%% of one core over %.0f s idle\n", n, rss / 1024, 100 * c / hz / (ms / 1000), ms / 1000 }'
