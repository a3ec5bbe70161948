#!/usr/bin/env bash
# Developer-workflow benchmarks (run by hand; not part of the test suite), on examples/shop
# (gateway + users + products, built from source) in a scratch git clone:
#
#  1. Edit one source file (users/users.json) without committing → `slipway deploy` → the new
#     version answers through the ingress. Phases from `deploy --json` (pack, build, push of
#     each image; the rest is the rollout), and the peer in the same run: the docker CLI's own
#     `docker build` + `docker push` of the same edit to the same registry (what a deploy
#     script does before it even starts replacing containers).
#  2. No-change redeploy: `slipway deploy` with nothing edited (target ≤ 1 s; nothing built,
#     pushed or rolled out).
#
# Usage: bench/workflow.sh [RUNS]   (default 5). Prints medians and ratios.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${1:-5}

cargo build --quiet --release --locked -p slipway
scripts/build-example.sh >/dev/null
bin="$root/target/release/slipway"
work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -f "$work/data/ingress/ingress.pid" ] && kill "$(cat "$work/data/ingress/ingress.pid")" 2>/dev/null || true
  if [ -n "${cluster:-}" ]; then
    docker ps -aq --filter "label=slipway.cluster=$cluster" | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker network ls -q --filter "label=slipway.cluster=$cluster" | xargs -r docker network rm >/dev/null 2>&1 || true
  fi
  docker images --format '{{.Repository}}:{{.Tag}}' | grep -F "${host:-none}/shop/" | xargs -r docker rmi -f >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

"$bin" server --data-dir "$work/data" --api-addr 127.0.0.1:0 --ingress-addr 127.0.0.1:0 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do [ -s "$work/data/api.addr" ] && break; sleep 0.1; done
for _ in $(seq 100); do [ -s "$work/data/ingress/ingress.addr" ] && break; sleep 0.1; done
export SLIPWAY_SERVER SLIPWAY_TOKEN
SLIPWAY_SERVER=$(cat "$work/data/api.addr")
SLIPWAY_TOKEN=$(cat "$work/data/admin.token")
host=${SLIPWAY_SERVER#http://}
ingress=$(cat "$work/data/ingress/ingress.addr")
cluster=$(curl -fsS -H "Authorization: Bearer $SLIPWAY_TOKEN" "$SLIPWAY_SERVER/api/v1/info" | jq -r .cluster)

shop="$work/shop"
mkdir -p "$shop"
cp -r examples/shop/gateway examples/shop/users examples/shop/products examples/shop/slipway.yml "$shop/"
git -C "$shop" init -q
git -C "$shop" add -A
git -C "$shop" -c user.email=b@example.com -c user.name=bench commit -qm shop

echo "== first deploy (cold: three builds, three pushes, three services rolled out)"
t0=$(now_ms)
"$bin" deploy -f "$shop/slipway.yml" >/dev/null 2>"$work/first.err"
echo "   $(( $(now_ms) - t0 )) ms"

echo "== 1. edit users/users.json → serving through the ingress (${runs} runs)"
: >"$work/edit.tsv"
for i in $(seq "$runs"); do
  marker="bench-$i-$RANDOM"
  sed -i "s/\"name\": \"Grace[^\"]*\"/\"name\": \"Grace $marker\"/" "$shop/users/users.json"
  t0=$(now_ms)
  "$bin" --json deploy -f "$shop/slipway.yml" >"$work/deploy.json" 2>/dev/null
  t_deploy=$(( $(now_ms) - t0 ))
  until curl -fsS "http://$ingress/users" | grep -q "$marker"; do sleep 0.02; done
  t_serving=$(( $(now_ms) - t0 ))
  jq -r --arg total "$t_deploy" --arg serving "$t_serving" '
    [ ([.builds[] | .pack_ms] | add), ([.builds[] | .build_ms] | add), ([.builds[] | .push_ms] | add),
      ([.builds[] | .layers_pushed] | add), ([.builds[] | .layers_existing] | add),
      ([.builds[] | select(.reused)] | length), ($total | tonumber), ($serving | tonumber) ] | @tsv' \
    "$work/deploy.json" >>"$work/edit.tsv"
done
col() { cut -f"$1" "$work/edit.tsv" | median; }
pack=$(col 1); build=$(col 2); push=$(col 3); layers=$(col 4); existing=$(col 5); reused=$(col 6)
deploy=$(col 7); serving=$(col 8)
rollout=$(awk -v d="$deploy" -v p="$pack" -v b="$build" -v u="$push" 'BEGIN {print d - p - b - u}')
share() { awk -v x="$1" -v t="$deploy" 'BEGIN {printf "%.0f%%", 100 * x / t}'; }
echo "   edit → deploy SUCCEEDED (median): ${deploy} ms; edit → new version answering: ${serving} ms"
echo "   phases: pack ${pack} ms ($(share "$pack")), build ${build} ms ($(share "$build")), push ${push} ms ($(share "$push")), rollout ${rollout} ms ($(share "$rollout"))"
echo "   layers uploaded per edit: ${layers} (already there: ${existing}); services whose image was reused untouched: ${reused} of 3"

echo "== peer: docker build + docker push of the same edit (docker CLI, same registry, ${runs} runs)"
"$bin" registry password | docker login "$host" -u slipway --password-stdin >/dev/null 2>&1
: >"$work/peer.tsv"
for i in $(seq "$runs"); do
  sed -i "s/\"name\": \"Grace[^\"]*\"/\"name\": \"Grace peer-$i-$RANDOM\"/" "$shop/users/users.json"
  t0=$(now_ms)
  DOCKER_BUILDKIT=0 docker build -q -t "$host/shop/users:peer-$i" "$shop/users" >/dev/null 2>&1
  t1=$(now_ms)
  docker push -q "$host/shop/users:peer-$i" >/dev/null
  t2=$(now_ms)
  printf '%s\t%s\t%s\n' $((t1 - t0)) $((t2 - t1)) $((t2 - t0)) >>"$work/peer.tsv"
done
docker logout "$host" >/dev/null 2>&1 || true
pbuild=$(cut -f1 "$work/peer.tsv" | median); ppush=$(cut -f2 "$work/peer.tsv" | median); ptotal=$(cut -f3 "$work/peer.tsv" | median)
echo "   docker build ${pbuild} ms + docker push ${ppush} ms = ${ptotal} ms (containers not yet replaced)"
awk -v s="$serving" -v p="$ptotal" 'BEGIN {printf "   ratio: slipway edit→serving / docker build+push alone = %.2f\n", s / p}'

echo "== 2. no-change redeploy (${runs} runs)"
git -C "$shop" checkout -q -- users/users.json
"$bin" deploy -f "$shop/slipway.yml" >/dev/null 2>&1   # back to the committed version
: >"$work/nochange.txt"
for _ in $(seq "$runs"); do
  t0=$(now_ms)
  "$bin" --json deploy -f "$shop/slipway.yml" >"$work/nochange.json" 2>/dev/null
  echo $(( $(now_ms) - t0 )) >>"$work/nochange.txt"
  jq -e '[.results[].outcome] | all(. == "UNCHANGED")' "$work/nochange.json" >/dev/null \
    || { echo "error: a no-change redeploy changed something" >&2; cat "$work/nochange.json" >&2; exit 1; }
  jq -e '[.builds[] | .reused] | all' "$work/nochange.json" >/dev/null \
    || { echo "error: a no-change redeploy built or pushed" >&2; exit 1; }
done
nochange=$(median <"$work/nochange.txt")
echo "   no-change redeploy (median): ${nochange} ms (target ≤ 1000 ms); 0 images built, 0 layers pushed, 0 tasks replaced"
