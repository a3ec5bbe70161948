#!/usr/bin/env bash
# What weighting requests by version costs the ingress (run by hand). One `slipway ingress`
# (one worker), two nginx `return 200` backends, and two services on the same two backends,
# told apart by host only:
#   plain     no weights, no versions: round robin over both (what every service did before)
#   weighted  the same targets as versions v1/v2 weighted 95/5, measured per version,
#             `sticky: true`. wrk sends no cookie back, so every request is a fresh
#             assignment and its response gets a Set-Cookie: the costliest case.
# Load generator (wrk, 64 keep-alive connections) pinned to core 0; backends and ingress
# together on core 1, as in bench/ingress.sh. Rounds alternate plain/weighted; prints the
# medians of rps and of ingress CPU per request (utime+stime from /proc/PID/stat over the
# requests wrk counted), weighted/plain ratios of the medians, and the median of each round's
# own weighted/plain ratio. Everything listens on 127.0.0.1, on ports
# the kernel hands out.
#
# Usage: bench/weights.sh [ROUNDS] [SECONDS]   (default 7 rounds of 10 s)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-7}
secs=${2:-10}
. "$root/scripts/lib/target-dir.sh"
slipway_target_dir "$root"
for p in nginx wrk curl python3; do
  command -v "$p" >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx wrk curl python3 >/dev/null; break; }
done
cd "$root"
cargo build --quiet --release --locked -p slipway
bin="$target_dir/release/slipway"
B=$(mktemp -d)
slip=""
cleanup() {
  [ -n "$slip" ] && kill "$slip" 2>/dev/null || true
  [ -f "$B/be.pid" ] && kill "$(cat "$B/be.pid")" 2>/dev/null || true
  sleep 0.5
  rm -rf "$B"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
p1=$(free_port); p2=$(free_port)
while [ "$p2" = "$p1" ]; do p2=$(free_port); done
cat >"$B/be.conf" <<CONF
worker_processes 1; daemon on;
pid $B/be.pid; error_log $B/be.err;
events { worker_connections 8192; }
http { access_log off;
  server { listen 127.0.0.1:$p1 backlog=4096; keepalive_requests 1000000;
           location / { return 200 "v1\n"; } }
  server { listen 127.0.0.1:$p2 backlog=4096; keepalive_requests 1000000;
           location / { return 200 "v2\n"; } } }
CONF
taskset -c 1 nginx -p "$B/" -c "$B/be.conf"

mkdir -p "$B/ing"
taskset -c 1 "$bin" ingress --data-dir "$B/ing" --addr 127.0.0.1:0 --workers 1 --access-log off >"$B/ing.log" 2>&1 &
slip=$!
for _ in $(seq 200); do [ -S "$B/ing/ingress.sock" ] && [ -s "$B/ing/ingress.addr" ] && break; sleep 0.05; done
addr=$(cut -d' ' -f1 "$B/ing/ingress.addr")
python3 - "$B/cfg.json" "$p1" "$p2" <<'PY'
import json, sys
out, p1, p2 = sys.argv[1], sys.argv[2], sys.argv[3]
def targets(prefix, versions):
    return [dict({"id": f"{prefix}-{i}", "addr": f"127.0.0.1:{p}"}, **({"version": v} if versions else {}))
            for i, (p, v) in enumerate([(p1, "v1"), (p2, "v2")])]
json.dump({"services": [
    {"name": "plain", "routes": [{"host": "plain.test", "path": "/"}], "targets": targets("p", False)},
    {"name": "weighted", "routes": [{"host": "weighted.test", "path": "/"}], "targets": targets("w", True),
     "weights": [{"version": "v1", "weight": 95}, {"version": "v2", "weight": 5}], "sticky": True},
]}, open(out, "w"))
PY
curl -fsS --unix-socket "$B/ing/ingress.sock" -X PUT -H 'content-type: application/json' \
  --data-binary @"$B/cfg.json" http://ingress/config
# The weighted service answers by weight and sets its cookie.
curl -fsS -D - -o /dev/null -H 'Host: weighted.test' "http://$addr/" | grep -qi '^set-cookie: slipway-v-' ||
  { echo "the weighted service sets no cookie" >&2; exit 1; }

ticks() { set -- $(cut -d' ' -f14,15 "/proc/$slip/stat"); echo $(($1 + $2)); }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
med() { echo "$1" | tr ' ' '\n' | grep -v '^$' | median; }
hz=$(getconf CLK_TCK)
declare -A RPS CPU
PR=""; PC=""; prev_rps=1; prev_cpu=1
for round in $(seq "$rounds"); do
  for t in plain weighted; do
    taskset -c 0 wrk -t1 -c64 -d1s -H "Host: $t.test" "http://$addr/" >/dev/null
    c0=$(ticks)
    out=$(taskset -c 0 wrk -t1 -c64 -d"${secs}s" -H "Host: $t.test" "http://$addr/")
    c1=$(ticks)
    req=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    cpu=$(awk -v c=$((c1 - c0)) -v n="$req" -v hz="$hz" 'BEGIN {printf "%.2f", c / hz * 1e6 / n}')
    RPS[$t]+="$rps "
    CPU[$t]+="$cpu "
    if [ "$t" = weighted ]; then
      PR+="$(awk -v a="$rps" -v b="$prev_rps" 'BEGIN {print a/b}') "
      PC+="$(awk -v a="$cpu" -v b="$prev_cpu" 'BEGIN {print a/b}') "
    fi
    prev_rps=$rps; prev_cpu=$cpu
    printf '  round %d %-8s %9.0f rps %6s CPU-µs/req\n' "$round" "$t" "$rps" "$cpu"
    errs=$(echo "$out" | awk '/Non-2xx|Socket errors/')
    [ -n "$errs" ] && echo "  round $round $t: $errs"
  done
done

# The split the weighted service made over the whole run, from its own counters.
curl -fsS --unix-socket "$B/ing/ingress.sock" http://ingress/metrics |
  grep '^slipway_ingress_version_requests_total{service="weighted"' | sed 's/^/  /'
printf '\n%-9s %10s %11s\n' service rps "CPU µs/req"
for t in plain weighted; do
  printf '%-9s %10.0f %11s\n' "$t" "$(med "${RPS[$t]}")" "$(med "${CPU[$t]}")"
done
awk -v a="$(med "${RPS[weighted]}")" -v b="$(med "${RPS[plain]}")" -v c="$(med "${CPU[weighted]}")" -v d="$(med "${CPU[plain]}")" \
  'BEGIN {printf "\nweighted/plain: rps %.3f (%+.1f %%), CPU per request %.3f (%+.1f %%)\n", a/b, (a/b-1)*100, c/d, (c/d-1)*100}'
# Each round's weighted/plain pair ran back to back: their ratios drift less with the load.
printf 'median of the rounds'"'"' own ratios: rps %.3f, CPU per request %.3f\n' "$(med "$PR")" "$(med "$PC")"
