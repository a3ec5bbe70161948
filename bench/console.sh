#!/usr/bin/env bash
# The web console's cost (issue #19's budgets: 200 services x 5 tasks render in <= 50 ms
# server time and <= 150 KB; 500 open live streams cost <= 50 MB of extra RSS).
#   1. Server render time and bytes of the overview, a service and a deployment page at 10,
#      200 and 1000 services (in process, release build, the store's SQLite in memory:
#      crates/console/examples/render.rs): the first (cold) render, then median and p90.
#   2. Live fan-out: a real `slipway server`, 500 live streams of one service's page
#      (bench/lib/sse_clients.py, loopback), then EVENTS scale changes of that service:
#      the server's RSS with 0 and 500 streams, and its CPU time per change delivered to all.
# Usage: bench/console.sh [EVENTS]   (default 20)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib/target-dir.sh"
slipway_target_dir "$root"
events=${1:-20}
cd "$root"
cargo build --quiet --release --locked -p slipway
cargo build --quiet --release --locked -p slipway-console --example render
scripts/build-example.sh >/dev/null
echo "== render (in process)"
for n in 10 200 1000; do
  "$target_dir/release/examples/render" "$n" 21 | tee -a "${TMPDIR:-/tmp}/console-render.$$"
done
# The budget: the overview of 200 services (first page) within 50 ms (median) and 150 KB.
awk '/^overview/ && /services=200 / {
  for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  ok = v["median_ms"] <= 50 && v["bytes"] <= 150 * 1024
  printf "budget overview@200: median %.2f ms (<= 50), %d bytes (<= 153600): %s\n", v["median_ms"], v["bytes"], ok ? "within" : "OVER"
  exit ok ? 0 : 1
}' "${TMPDIR:-/tmp}/console-render.$$" || { rm -f "${TMPDIR:-/tmp}/console-render.$$"; exit 1; }
rm -f "${TMPDIR:-/tmp}/console-render.$$"

bin="$target_dir/release/slipway"
B=$(mktemp -d)
server_pid="" clients_pid=""
cleanup() {
  [ -n "$clients_pid" ] && kill "$clients_pid" 2>/dev/null || true
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
cd "$B"
printf '%s\n' "app: uibench" "services:" "  web:" "    type: Backend Service" \
  "    image: { location: slipway-hello:v1, port: 8080 }" "    count: 1" "    memory: 32" >slipway.yml
"$bin" deploy >/dev/null
# A session: the login form's nonce cookie, then the token.
curl -fsS -c "$B/jar" -o "$B/login.html" "$SLIPWAY_SERVER/ui/login"
nonce=$(sed -n 's/.*name="login_csrf" value="\([0-9a-f]*\)".*/\1/p' "$B/login.html")
curl -fsS -b "$B/jar" -c "$B/jar" -o /dev/null --data-urlencode "login_csrf=$nonce" --data-urlencode "token=$SLIPWAY_TOKEN" "$SLIPWAY_SERVER/ui/login"
cookie="slipway_session=$(awk '$6 == "slipway_session" {print $7}' "$B/jar")"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status"; }
ticks() { set -- $(cut -d' ' -f14,15 "/proc/$server_pid/stat"); echo $(($1 + $2)); }
hz=$(getconf CLK_TCK)
sleep 2
rss0=$(rss)
hostport=${SLIPWAY_SERVER#http://}
python3 "$root/bench/lib/sse_clients.py" "${hostport%:*}" "${hostport##*:}" "/ui/live?service=uibench/default/web" "$cookie" 500 "$B/ready" >"$B/clients.out" &
clients_pid=$!
until [ -s "$B/ready" ]; do sleep 0.2; done
sleep 2
rss500=$(rss)
t0=$(ticks)
for i in $(seq 1 "$events"); do
  "$bin" scale web $((1 + i % 2)) >/dev/null
  sleep 0.5
done
sleep 2
t1=$(ticks)
kill "$clients_pid"; wait "$clients_pid" 2>/dev/null || true
clients_pid=""
cat "$B/clients.out"
changes=$(sed -n 's/.*changes_min=\([0-9]*\).*/\1/p' "$B/clients.out")
echo "== live fan-out (real server, 500 streams, $events scale changes)"
awk -v a="$rss0" -v b="$rss500" -v t0="$t0" -v t1="$t1" -v hz="$hz" -v ch="$changes" 'BEGIN {
  printf "rss_kb idle=%d with_500_streams=%d extra_mb=%.1f per_stream_kb=%.1f (budget 50 MB: %s)\n", a, b, (b - a) / 1024, (b - a) / 500, (b - a) / 1024 <= 50 ? "within" : "OVER"
  printf "cpu_ms total=%.0f changes_per_client=%d cpu_ms_per_change_to_500=%.1f\n", (t1 - t0) * 1000 / hz, ch, (t1 - t0) * 1000 / hz / (ch > 0 ? ch : 1)
}'
