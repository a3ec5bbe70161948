#!/usr/bin/env bash
# Control-plane benchmarks (run by hand; not part of the test suite), side by side in one run:
#
#   A. today's main before versioned records (BASELINE_REV, SQLite, synchronous=NORMAL),
#   B. this tree on SQLite (the embedded default, synchronous=FULL),
#   C. this tree on PostgreSQL 15 (a throwaway cluster from scripts/pg.sh, fsync on).
#
# On each: 100 services of the app `bench` (desired count 0, so no container runs), then
#   1. DescribeServices (10 of the 100 per call) at a fixed 300 req/s, 32 signed clients;
#   2. scale intents: 32 clients, closed loop, each scaling its own service;
#   3. scale intents on one service: 32 clients, closed loop, all scaling svc-0;
#   4. deploy intents: 32 clients, closed loop, each deploying its own service with the
#      image alternating between slipway-hello:v1 and v2 (every deploy is a new deployment).
# The load generator is crates/slipway/examples/aws_load.rs (one thread, one keep-alive
# connection per client; latencies from the scheduled send time at a fixed rate).
#
# Usage: bench/controlplane.sh [SECONDS]   (default 10 per load run)
# BASELINE=/path/to/old/slipway uses that binary instead of building BASELINE_REV.
# Targets (issue #16): no regression beyond 10 % on SQLite against main; PostgreSQL p99 for
# DescribeServices <= 10 ms at 300 req/s.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs=${1:-10}
conc=${CONCURRENCY:-32}
baseline_rev=${BASELINE_REV:-efaf4c2}

cargo build --quiet --release --locked -p slipway --bin slipway --example aws_load
scripts/build-example.sh >/dev/null
bin="$root/target/release/slipway"
load="$root/target/release/examples/aws_load"
work=$(mktemp -d)
# The PostgreSQL cluster in a directory of its own (pg.sh hands it to the postgres user).
pgdir=$(mktemp -d)
if [ -z "${BASELINE:-}" ]; then
  echo "== building the baseline ($baseline_rev) into target/baseline"
  rm -rf "$work/baseline-src"
  git worktree add -q --detach "$work/baseline-src" "$baseline_rev"
  (cd "$work/baseline-src" && CARGO_TARGET_DIR="$root/target/baseline" cargo build --quiet --release -p slipway --bin slipway)
  git worktree remove --force "$work/baseline-src"
  BASELINE="$root/target/baseline/release/slipway"
fi

server_pid=""
cluster=""
stop_server() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  server_pid=""
  if [ -n "$cluster" ]; then
    docker ps -aq --filter "label=slipway.cluster=$cluster" | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker network ls -q --filter "label=slipway.cluster=$cluster" | xargs -r docker network rm >/dev/null 2>&1 || true
  fi
  cluster=""
}
cleanup() {
  stop_server
  scripts/pg.sh stop "$pgdir" >/dev/null 2>&1 || true
  rm -rf "$pgdir"
  rm -rf "$work"
}
trap cleanup EXIT

pg=$(scripts/pg.sh start "$pgdir")
if [ "$(id -u)" = 0 ]; then pg_user=postgres; else pg_user=$(id -un); fi
T=AmazonEC2ContainerServiceV20141113

spec() { # SERVICE IMAGE
  printf '{"key":{"app":"bench","env":"default","name":"%s"},"kind":"Backend Service","desired_count":0,"container":{"image":"%s","pull":"missing","port":8080,"command":null,"environment":{},"cpu":null,"memory":32,"healthcheck":null,"http_health":null,"stop_timeout_ms":2000},"deployment":{"minimum_healthy_percent":100,"maximum_percent":200,"circuit_breaker":{"enable":true,"rollback":true,"threshold":null},"health_check_grace_period_ms":0,"timeout_ms":600000}}' "$1" "$2"
}

run() { # NAME BINARY [--database URL]
  local name=$1 b=$2; shift 2
  local data="$work/data-$name"
  "$b" server --data-dir "$data" --api-addr 127.0.0.1:0 --no-ingress "$@" >"$work/server-$name.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 200); do [ -s "$data/api.addr" ] && break; sleep 0.1; done
  local url token
  url=$(cat "$data/api.addr")
  token=$(cat "$data/admin.token")
  cluster=$(curl -fsS -H "Authorization: Bearer $token" "$url/api/v1/info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cluster"])')
  {
    printf '{"services":['
    for i in $(seq 0 99); do
      [ "$i" -gt 0 ] && printf ','
      spec "svc-$i" slipway-hello:v1
    done
    printf ']}'
  } >"$work/setup.json"
  curl -fsS -o /dev/null -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    --data-binary @"$work/setup.json" "$url/api/v1/deploy"
  local key id secret
  key=$(SLIPWAY_SERVER=$url SLIPWAY_TOKEN=$token "$b" --json access-key create --name bench)
  id=$(echo "$key" | python3 -c 'import json, sys; print(json.load(sys.stdin)["AccessKeyId"])')
  secret=$(echo "$key" | python3 -c 'import json, sys; print(json.load(sys.stdin)["SecretAccessKey"])')
  sleep 2
  echo "== $name: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo -n "$name describe300 "
  "$load" "$url" "$id" "$secret" "$T.DescribeServices" '{"cluster":"bench","services":{svc10}}' "$conc" "$secs" 300
  echo -n "$name scale "
  "$load" "$url" bearer "$token" "POST /api/v1/services/bench/default/svc-{c}/scale" '{"count":0}' "$conc" "$secs"
  echo -n "$name scale1 "
  "$load" "$url" bearer "$token" "POST /api/v1/services/bench/default/svc-0/scale" '{"count":0}' "$conc" "$secs"
  echo -n "$name deploy "
  "$load" "$url" bearer "$token" "POST /api/v1/deploy" "{\"services\":[$(spec 'svc-{c}' 'slipway-hello:v{v}')]}" "$conc" "$secs"
  stop_server
}

out="$work/results"
{
  run main "$BASELINE"
  run sqlite "$bin"
  createdb_url="${pg%/*}/bench"
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$pg_user" -- /usr/lib/postgresql/*/bin/createdb -h 127.0.0.1 -p "$(echo "$pg" | sed 's/.*:\([0-9]*\)\/.*/\1/')" -U "$pg_user" bench
  else
    createdb -h 127.0.0.1 -p "$(echo "$pg" | sed 's/.*:\([0-9]*\)\/.*/\1/')" bench
  fi
  run postgres "$bin" --database "$createdb_url"
} | tee "$out"

python3 - "$out" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    parts = line.split(" ", 2)
    if len(parts) == 3 and parts[2].startswith("{"):
        rows[(parts[0], parts[1])] = json.loads(parts[2])
names = {"describe300": "DescribeServices at 300 req/s", "scale": "scale, 32 services", "scale1": "scale, 1 service", "deploy": "deploy, 32 services"}
print()
print("| load | store | req/s | p50 ms | p99 ms | errors | req/s vs main | p99 vs main |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for load, title in names.items():
    base = rows.get(("main", load))
    for store in ["main", "sqlite", "postgres"]:
        r = rows.get((store, load))
        if not r:
            continue
        ratio = lambda k: f"{r[k] / base[k]:.2f}x" if base and base[k] else "-"
        print(f"| {title} | {store} | {r['rps']:.0f} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} | {ratio('rps')} | {ratio('p99_ms')} |")
PY
