#!/usr/bin/env bash
# Errors per deploy under load (run by hand): the same example app switched from v1 to v2
# while wrk (64 keep-alive connections, loopback only) runs, three ways:
#   1. the seed-000 way: `docker-compose down` then `up -d` with the new image (published port);
#   2. an nginx reload-based switch between two containers;
#   3. Slipway: `slipway deploy` through its ingress.
# Usage: bench/switch.sh [DEPLOYS]   (default 3 per way). Prints errors per deploy.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-3}
cd "$root"
command -v wrk >/dev/null && command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx wrk >/dev/null; }
cargo build --quiet --release --locked -p slipway
scripts/build-example.sh >/dev/null
bin="$root/target/release/slipway"
B=$(mktemp -d)
server_pid=""
cleanup() {
  (cd "$B/compose" 2>/dev/null && docker-compose -p slipwaybench down >/dev/null 2>&1) || true
  docker rm -f slipway-bench-blue slipway-bench-green >/dev/null 2>&1 || true
  [ -f "$B/ng.pid" ] && kill "$(cat "$B/ng.pid")" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -f "$B/data/ingress/ingress.pid" ] && kill "$(cat "$B/data/ingress/ingress.pid")" 2>/dev/null || true
  if [ -n "${cluster:-}" ]; then
    docker ps -aq --filter "label=slipway.cluster=$cluster" | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker network ls -q --filter "label=slipway.cluster=$cluster" | xargs -r docker network rm >/dev/null 2>&1 || true
  fi
  rm -rf "$B"
}
trap cleanup EXIT

errors() { # wrk output -> total errors (socket errors + non-2xx/3xx)
  awk '/Socket errors/ {gsub(/,/,""); s += $4 + $6 + $8 + $10} /Non-2xx/ {s += $5} END {print s + 0}'
}
load_with() { # url, seconds, command to run after 3 s
  local url=$1 secs=$2; shift 2
  ( sleep 3; "$@" >/dev/null 2>&1 ) &
  local bg=$!
  local out; out=$(wrk -t2 -c64 -d"${secs}s" "$url")
  wait $bg
  echo "$out" | errors
}

echo "== 1. seed-000 way: docker-compose down / up -d"
mkdir -p "$B/compose"
compose() { # image
  cat >"$B/compose/docker-compose.yml" <<YAML
version: "3"
services:
  web:
    image: $1
    ports: ["127.0.0.1:18090:8080"]
YAML
}
compose slipway-hello:v1
(cd "$B/compose" && docker-compose -p slipwaybench up -d >/dev/null 2>&1)
until curl -fs -o /dev/null http://127.0.0.1:18090/; do sleep 0.1; done
switch_compose() { # image
  compose "$1"; cd "$B/compose"; docker-compose -p slipwaybench down; docker-compose -p slipwaybench up -d
  until curl -fs -o /dev/null http://127.0.0.1:18090/; do sleep 0.1; done
}
c=()
for i in $(seq "$n"); do
  img=slipway-hello:v2; [ $((i % 2)) -eq 0 ] && img=slipway-hello:v1
  c+=($(load_with http://127.0.0.1:18090/ 10 switch_compose "$img"))
done
(cd "$B/compose" && docker-compose -p slipwaybench down >/dev/null 2>&1)
echo "  errors per deploy: ${c[*]}"

echo "== 2. nginx reload between two containers"
docker run -d --name slipway-bench-blue -p 127.0.0.1:18091:8080 slipway-hello:v1 >/dev/null
docker run -d --name slipway-bench-green -p 127.0.0.1:18092:8080 slipway-hello:v2 >/dev/null
ngconf() { # port
  cat >"$B/ng.conf" <<CONF
worker_processes 1; daemon on; pid $B/ng.pid; error_log $B/ng.err;
events { worker_connections 4096; }
http { access_log off;
  upstream be { server 127.0.0.1:$1; keepalive 64; }
  server { listen 127.0.0.1:18093; location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
}
ngconf 18091; nginx -p "$B/" -c "$B/ng.conf"
until curl -fs -o /dev/null http://127.0.0.1:18093/; do sleep 0.1; done
switch_nginx() { ngconf "$1"; nginx -p "$B/" -c "$B/ng.conf" -s reload; }
r=()
for i in $(seq "$n"); do
  port=18092; [ $((i % 2)) -eq 0 ] && port=18091
  r+=($(load_with http://127.0.0.1:18093/ 10 switch_nginx "$port"))
done
kill "$(cat "$B/ng.pid")"; rm -f "$B/ng.pid"
docker rm -f slipway-bench-blue slipway-bench-green >/dev/null
echo "  errors per deploy: ${r[*]}"

echo "== 3. Slipway deploy through its ingress"
"$bin" server --data-dir "$B/data" --api-addr 127.0.0.1:0 --ingress-addr 127.0.0.1:0 >"$B/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do [ -s "$B/data/api.addr" ] && [ -s "$B/data/ingress/ingress.addr" ] && break; sleep 0.1; done
export SLIPWAY_SERVER SLIPWAY_TOKEN
SLIPWAY_SERVER=$(cat "$B/data/api.addr"); SLIPWAY_TOKEN=$(cat "$B/data/admin.token")
cluster=$(curl -fsS -H "Authorization: Bearer $SLIPWAY_TOKEN" "$SLIPWAY_SERVER/api/v1/info" | sed 's/.*"cluster":"\([^"]*\)".*/\1/')
cat >"$B/slipway.yml" <<YAML
app: switch
services:
  web:
    type: Load Balanced Web Service
    image: { location: slipway-hello:v1, port: 8080 }
    http: { path: /, healthcheck: /healthz }
    count: 2
YAML
"$bin" deploy -f "$B/slipway.yml" >/dev/null
ing=$(cat "$B/data/ingress/ingress.addr")
s=()
for i in $(seq "$n"); do
  img=slipway-hello:v2; [ $((i % 2)) -eq 0 ] && img=slipway-hello:v1
  s+=($(load_with "http://$ing/" 10 "$bin" deploy -f "$B/slipway.yml" --image "web=$img"))
done
echo "  errors per deploy: ${s[*]}"
echo
printf 'errors per deploy (sum over %d deploys): compose down/up %d, nginx reload %d, slipway %d\n' "$n" \
  "$(printf '%s\n' "${c[@]}" | awk '{s+=$1} END {print s}')" "$(printf '%s\n' "${r[@]}" | awk '{s+=$1} END {print s}')" \
  "$(printf '%s\n' "${s[@]}" | awk '{s+=$1} END {print s}')"
