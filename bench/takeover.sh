#!/usr/bin/env bash
# Hot-standby take-over (run by hand): two `slipway server`s on one PostgreSQL database (a
# throwaway cluster from scripts/pg.sh); N times, `kill -9` whichever leads and time until
# the other one leads (as `GET /api/v1/servers` on the survivor reports it, polled every
# 20 ms), then start the killed one again as the new standby. Prints every take-over and the
# median, min and max. Target (issue #16): <= 15 s.
#
# Usage: bench/takeover.sh [N]   (default 10)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
n=${1:-10}

cargo build --quiet --release --locked -p slipway --bin slipway
bin="$root/target/release/slipway"
work=$(mktemp -d)
# The PostgreSQL cluster in a directory of its own (pg.sh hands it to the postgres user).
pgdir=$(mktemp -d)
declare -A pid
cleanup() {
  for s in a b; do [ -n "${pid[$s]:-}" ] && kill -9 "${pid[$s]}" 2>/dev/null || true; done
  scripts/pg.sh stop "$pgdir" >/dev/null 2>&1 || true
  rm -rf "$pgdir"
  rm -rf "$work"
}
trap cleanup EXIT
db=$(scripts/pg.sh start "$pgdir")

start() { # NAME
  local s=$1
  rm -f "$work/$s/api.addr"
  "$bin" server --data-dir "$work/$s" --api-addr 127.0.0.1:0 --no-ingress --database "$db" \
    --registry-storage "$work/registry" --secret-key "$work/secret.key" >>"$work/$s.log" 2>&1 &
  pid[$s]=$!
  for _ in $(seq 300); do [ -s "$work/$s/api.addr" ] && return 0; sleep 0.05; done
  echo "server $s did not start:" >&2
  tail -5 "$work/$s.log" >&2
  exit 1
}
leader_seen_by() { # NAME -> the leader's server id, as NAME reports it
  curl -fsS -H "Authorization: Bearer $(cat "$work/a/admin.token")" "$(cat "$work/$1/api.addr")/api/v1/servers" |
    python3 -c 'import json,sys; print(next((s["id"] for s in json.load(sys.stdin) if s["leader"]), ""))'
}
id_of() {
  curl -fsS -H "Authorization: Bearer $(cat "$work/a/admin.token")" "$(cat "$work/$1/api.addr")/api/v1/info" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["server"])'
}

start a
mkdir -p "$work/b"
cp "$work/a/admin.token" "$work/b/admin.token"
start b
sleep 2
times=()
for i in $(seq "$n"); do
  # Who leads now?
  lead=""
  for _ in $(seq 200); do
    l=$(leader_seen_by a 2>/dev/null || true)
    if [ -n "$l" ]; then lead=$l; break; fi
    sleep 0.05
  done
  if [ "$lead" = "$(id_of a)" ]; then victim=a survivor=b; else victim=b survivor=a; fi
  want=$(id_of "$survivor")
  kill -9 "${pid[$victim]}"
  wait "${pid[$victim]}" 2>/dev/null || true
  t0=$(date +%s%N)
  while [ "$(leader_seen_by "$survivor" 2>/dev/null || true)" != "$want" ]; do sleep 0.02; done
  t1=$(date +%s%N)
  ms=$(( (t1 - t0) / 1000000 ))
  times+=("$ms")
  echo "take-over $i: server $survivor leads ${ms} ms after server $victim was killed"
  start "$victim"
  sleep 1
done
printf '%s\n' "${times[@]}" | sort -n | python3 -c '
import sys
t = [int(x) for x in sys.stdin]
m = sorted(t)[len(t) // 2] if len(t) % 2 else sum(sorted(t)[len(t)//2-1:len(t)//2+1]) / 2
print(f"take-over over {len(t)} kills: median {m:.0f} ms, min {min(t)} ms, max {max(t)} ms (target <= 15000 ms)")'
