#!/usr/bin/env bash
# AWS-compatible API benchmarks (run by hand; not part of the test suite).
#
#  1. DescribeServices (10 services per call) with 100 services, 32 concurrent signed clients.
#  2. RegisterTaskDefinition, 32 concurrent signed clients.
#  3. SigV4 verification cost per request (the server-side check alone, release build).
#
# Usage: bench/aws.sh [SECONDS]   (default 15 per load run). Target: DescribeServices p99 <= 10 ms.
# RATE (default 300) is the total request rate of the fixed-rate runs.
# The latencies are measured by the load generator (crates/slipway/examples/aws_load.rs:
# one keep-alive connection per client, every request signed with SigV4 on its own, all
# clients on one thread so the generator takes at most one of the machine's cores).
# Each load is run twice: closed loop (every client sends as fast as it is answered) and at
# a fixed total rate well below saturation (each latency from its scheduled send time).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs=${1:-15}
conc=${CONCURRENCY:-32}
rate=${RATE:-300}

cargo build --quiet --release --locked -p slipway --bin slipway --example aws_load
scripts/build-example.sh >/dev/null
bin="$root/target/release/slipway"
load="$root/target/release/examples/aws_load"
work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  if [ -n "${cluster:-}" ]; then
    docker ps -aq --filter "label=slipway.cluster=$cluster" | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker network ls -q --filter "label=slipway.cluster=$cluster" | xargs -r docker network rm >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" server --data-dir "$work/data" --api-addr 127.0.0.1:0 --no-ingress >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do [ -s "$work/data/api.addr" ] && break; sleep 0.1; done
export SLIPWAY_SERVER SLIPWAY_TOKEN
SLIPWAY_SERVER=$(cat "$work/data/api.addr")
SLIPWAY_TOKEN=$(cat "$work/data/admin.token")
cluster=$(curl -fsS -H "Authorization: Bearer $SLIPWAY_TOKEN" "$SLIPWAY_SERVER/api/v1/info" | sed 's/.*"cluster":"\([^"]*\)".*/\1/')
key=$("$bin" --json access-key create --name bench)
id=$(echo "$key" | python3 -c 'import json, sys; print(json.load(sys.stdin)["AccessKeyId"])')
secret=$(echo "$key" | python3 -c 'import json, sys; print(json.load(sys.stdin)["SecretAccessKey"])')
T=AmazonEC2ContainerServiceV20141113

echo "== setup: 100 services (desired count 0, so no containers)"
python3 crates/slipway/tests/it/aws_sign.py "$SLIPWAY_SERVER" "$id" "$secret" "$T.RegisterTaskDefinition" \
  '{"family":"bench","containerDefinitions":[{"name":"web","image":"slipway-hello:v1","memory":32,"portMappings":[{"containerPort":8080}]}]}' >/dev/null
for i in $(seq 0 99); do
  python3 crates/slipway/tests/it/aws_sign.py "$SLIPWAY_SERVER" "$id" "$secret" "$T.CreateService" \
    "{\"serviceName\":\"svc-$i\",\"taskDefinition\":\"bench\",\"desiredCount\":0}" | head -1 | grep -q 200
done

echo "load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== 1. DescribeServices, 10 of 100 services per call, $conc clients, ${secs}s"
"$load" "$SLIPWAY_SERVER" "$id" "$secret" "$T.DescribeServices" '{"services":{svc10}}' "$conc" "$secs"
"$load" "$SLIPWAY_SERVER" "$id" "$secret" "$T.DescribeServices" '{"services":{svc10}}' "$conc" "$secs" "$rate"
echo "== 2. RegisterTaskDefinition, $conc clients, ${secs}s"
td='{"family":"load","containerDefinitions":[{"name":"web","image":"slipway-hello:v1","memory":32,"environment":[{"name":"N","value":"{n}"}]}]}'
"$load" "$SLIPWAY_SERVER" "$id" "$secret" "$T.RegisterTaskDefinition" "$td" "$conc" "$secs"
"$load" "$SLIPWAY_SERVER" "$id" "$secret" "$T.RegisterTaskDefinition" "$td" "$conc" "$secs" "$rate"
echo "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== 3. SigV4 verification cost per request"
cargo test --quiet --release --locked -p slipway-aws --lib -- --ignored --nocapture sigv4_verification_cost 2>&1 | grep 'per request'
