#!/usr/bin/env bash
# A version that passes its health checks but fails users (one request in five answers 500:
# slipway-hello:bad), deployed under steady load (wrk, 16 keep-alive connections, loopback
# only) three ways, each watched for the same window:
#   1. canary: 5 % of requests, analysis every 5 s, 3 bad intervals roll back;
#   2. rolling with a bake: a plain rolling update, then the same analysis over a 60 s bake;
#   3. the ECS way: a rolling update with the circuit breaker on (the default) and no bake:
#      every task is healthy, so the breaker never trips and the version stays.
# Reports, per way, the failed client requests in the window and the time from the deploy
# to traffic being back on the good version (medians over ROUNDS).
# Usage: bench/canary.sh [ROUNDS] [WINDOW_SECONDS]   (defaults 3 and 60)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib/target-dir.sh"
slipway_target_dir "$root"
rounds=${1:-3}
window=${2:-60}
cd "$root"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk >/dev/null; }
cargo build --quiet --release --locked -p slipway
scripts/build-example.sh >/dev/null
bin="$target_dir/release/slipway"
B=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -f "$B/data/ingress/ingress.pid" ] && kill "$(cat "$B/data/ingress/ingress.pid")" 2>/dev/null || true
  if [ -n "${cluster:-}" ]; then
    docker ps -aq --filter "label=slipway.cluster=$cluster" | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker network ls -q --filter "label=slipway.cluster=$cluster" | xargs -r docker network rm >/dev/null 2>&1 || true
  fi
  rm -rf "$B"
}
trap cleanup EXIT

mkdir -p "$B/data"
"$bin" server --data-dir "$B/data" --api-addr 127.0.0.1:0 --ingress-addr 127.0.0.1:0 >"$B/server.log" 2>&1 &
server_pid=$!
until [ -s "$B/data/api.addr" ] && [ -s "$B/data/ingress/ingress.addr" ]; do sleep 0.1; done
export SLIPWAY_SERVER=$(cat "$B/data/api.addr") SLIPWAY_TOKEN=$(cat "$B/data/admin.token")
cluster=$(curl -fsS -H "Authorization: Bearer $SLIPWAY_TOKEN" "$SLIPWAY_SERVER/api/v1/info" | sed -n 's/.*"cluster":"\([^"]*\)".*/\1/p')
url="http://$(cat "$B/data/ingress/ingress.addr")/"
cd "$B"
cat >slipway.yml <<YAML
app: canarybench
services:
  web:
    type: Load Balanced Web Service
    image: { location: slipway-hello:v1, port: 8080 }
    http: { path: /, healthcheck: /healthz }
    count: 2
    memory: 32
    deployment:
      strategy: canary
      canary: { percent: 5, bake: 10m }
      analysis: { interval: 5s, failures: 3 }
YAML
"$bin" deploy >/dev/null

errors() { # wrk output -> failed requests (socket errors + non-2xx/3xx)
  awk '/Socket errors/ {gsub(/,/,""); s += $4 + $6 + $8 + $10} /Non-2xx/ {s += $5} END {print s + 0}'
}
requests() { awk '/requests in/ {print $1}'; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) {print "-"} else if (NR % 2) {print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'; }
ms() { date +%s%3N; }

declare -A fails back reqs
run_way() { # name, deploy args...
  local name=$1; shift
  wrk -t2 -c16 -d"${window}s" "$url" >"$B/wrk.out" 2>&1 &
  local wrk_pid=$!
  sleep 2
  local t0; t0=$(ms)
  local took="never"
  if "$bin" deploy --json --timeout 10m "$@" >"$B/deploy.json" 2>/dev/null; then :; fi
  if grep -q '"outcome": *"ROLLED_BACK"' "$B/deploy.json"; then took=$(( $(ms) - t0 )); fi
  wait "$wrk_pid"
  fails[$name]+="$(errors <"$B/wrk.out") "
  reqs[$name]+="$(requests <"$B/wrk.out") "
  back[$name]+="$took "
  # Back to the good version for the next round.
  "$bin" deploy --strategy rolling --image web=slipway-hello:v1 >/dev/null 2>&1 || true
}

for i in $(seq "$rounds"); do
  echo "round $i/$rounds" >&2
  run_way canary --image web=slipway-hello:bad
  run_way rolling+bake --image web=slipway-hello:bad --strategy rolling --bake 60s
  run_way ecs-breaker --image web=slipway-hello:bad --strategy rolling
done

echo "bad-but-healthy version (20 % of requests answer 500), ${window} s under load, $rounds rounds, $(date -u +%F)"
printf '%-14s %14s %20s %22s\n' way "requests" "failed (median)" "back on v1 after (ms)"
for w in canary rolling+bake ecs-breaker; do
  f=$(echo "${fails[$w]}" | tr ' ' '\n' | { grep . || true; } | median)
  r=$(echo "${reqs[$w]}" | tr ' ' '\n' | { grep . || true; } | median)
  t=$(echo "${back[$w]}" | tr ' ' '\n' | { grep -v never || true; } | { grep . || true; } | median)
  [ "$t" = "-" ] && t="never"
  printf '%-14s %14s %20s %22s   (each round: %s; %s)\n' "$w" "$r" "$f" "$t" "${fails[$w]% }" "${back[$w]% }"
done
cf=$(echo "${fails[canary]}" | tr ' ' '\n' | { grep . || true; } | median)
ef=$(echo "${fails[ecs-breaker]}" | tr ' ' '\n' | { grep . || true; } | median)
awk -v c="$cf" -v e="$ef" 'BEGIN { if (c > 0) printf "ratio: the ECS way fails %.1fx the requests of canary\n", e / c; else print "ratio: canary failed no request" }'
