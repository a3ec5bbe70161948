#!/usr/bin/env bash
# What the hardening of issue 20 costs (run by hand): an old and a new `slipway` binary side
# by side in one run, alternating (old/new, then new/old, ... so drift cancels). For each
# binary and run: a fresh server (`--api-addr 127.0.0.1:0 --ingress-addr 127.0.0.1:0`, its own
# data directory), one web service (slipway-hello:v1, 2 tasks), then
#   API      sequential authenticated requests on one keep-alive connection for API_SECS
#            each (crates/slipway/examples/aws_load.rs, concurrency 1):
#              GET  /api/v1/services
#              POST /api/v1/services/cost/default/web/scale {"count":2}  (the count it has:
#                   nothing changes; the new binary audits it: one database write of an
#                   audit entry before the answer)
#              PUT  /api/v1/secrets/cost/s {"value":"v"}  (a real change: a new version of
#                   the secret, one synced commit; the new binary adds its audit entry)
#            -> p50/p99 latency;
#   ingress  wrk, 1 thread, CONC keep-alive connections, SECS seconds, through the ingress to
#            the service -> requests/s and the ingress process' CPU time per request
#            (utime+stime of /proc/PID/stat over the requests wrk counted).
# wrk runs on core 0; the ingress process and the service's containers on core 1 (as in
# bench/ingress.sh); the API runs unpinned. The new binary runs with `--rate-limit 0` for
# these (its default of 100 req/s per identity would throttle the load, not measure the
# checks); one more run of the new binary with the default limit shows what a client
# that fast gets (429s). The old binary does not know the flag.
#
# Prints per run, then the medians over RUNS, their new/old ratios, the spread (min-max of
# the runs) and the median of each run's own new/old ratio (the pair ran back to back).
#
# Usage: bench/cost.sh OLD_BIN NEW_BIN [RUNS]   (default 5 runs)
#        SECS (ingress, default 10), API_SECS (each API measure, default 5), CONC (default 64)
# Everything listens on loopback, on ports the kernel hands out; the script stops what it
# started (by PID, and the containers by the cluster's label).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 2 ] || { echo "usage: bench/cost.sh OLD_BIN NEW_BIN [RUNS]" >&2; exit 2; }
old=$(realpath "$1"); new=$(realpath "$2")
runs=${3:-5}
secs=${SECS:-10}
api_secs=${API_SECS:-5}
conc=${CONC:-64}
. "$root/scripts/lib/target-dir.sh"
slipway_target_dir "$root"
for p in wrk curl python3; do
  command -v "$p" >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk curl python3 >/dev/null; break; }
done
cd "$root"
cargo build --quiet --release --locked -p slipway --example aws_load
load="$target_dir/release/examples/aws_load"
docker image inspect slipway-hello:v1 >/dev/null 2>&1 || scripts/build-example.sh >/dev/null

B=$(mktemp -d)
server=""; ingress=""; cluster=""
stop_server() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  # The ingress is its own process group (it outlives the server by design): stop it by PID.
  if [ -n "$ingress" ]; then
    kill "$ingress" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$ingress" 2>/dev/null || break; sleep 0.1; done
  fi
  if [ -n "$cluster" ]; then
    docker ps -aq --filter "label=slipway.cluster=$cluster" | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker network ls -q --filter "label=slipway.cluster=$cluster" | xargs -r docker network rm >/dev/null 2>&1 || true
  fi
  server=""; ingress=""; cluster=""
}
cleanup() { stop_server; rm -rf "$B"; }
trap cleanup EXIT

cat >"$B/slipway.yml" <<'YML'
app: cost
services:
  web:
    type: Load Balanced Web Service
    image:
      location: slipway-hello:v1
      port: 8080
    http:
      path: /
      healthcheck: /healthz
    count: 2
    memory: 32
YML

# start BIN NAME [server flags...]: a fresh server; sets url, token, cluster, ingress, ing_addr.
start() {
  local b=$1 name=$2; shift 2
  local data="$B/data-$name"
  rm -rf "$data"
  "$b" server --data-dir "$data" --api-addr 127.0.0.1:0 "$@" >"$B/server-$name.log" 2>&1 &
  server=$!
  for _ in $(seq 300); do [ -s "$data/api.addr" ] && break; sleep 0.1; done
  [ -s "$data/api.addr" ] || { echo "the $name server did not start:" >&2; tail -5 "$B/server-$name.log" >&2; exit 1; }
  url=$(cat "$data/api.addr"); token=$(cat "$data/admin.token")
  cluster=$(curl -fsS -H "Authorization: Bearer $token" "$url/api/v1/info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cluster"])')
  ingress=$(cat "$data/ingress/ingress.pid" 2>/dev/null || true)
  ing_addr=$(cut -d' ' -f1 "$data/ingress/ingress.addr" 2>/dev/null || true)
}

ticks() { set -- $(cut -d' ' -f14,15 "/proc/$ingress/stat"); echo $(($1 + $2)); }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
med() { echo "$1" | tr ' ' '\n' | grep -v '^$' | median; }
spread() { echo "$1" | tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {print lo "-" hi}'; }
jget() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d[sys.argv[2]])' "$1" "$2"; }
hz=$(getconf CLK_TCK)
new_flags=(); old_flags=()
"$new" server --help | grep -q -- '--rate-limit' && new_flags=(--rate-limit 0)
# An old binary that has the limit too (a later comparison) runs without it as well.
"$old" server --help | grep -q -- '--rate-limit' && old_flags=(--rate-limit 0)

declare -A V   # V[metric,binary] = "run values..."
declare -A R   # R[metric] = "per-run new/old ratios..."
declare -A LAST
metrics="get_p50 get_p99 scale_p50 scale_p99 secret_p50 secret_p99 rps cpu"

measure() { # NAME BIN
  local name=$1 b=$2 flags=()
  if [ "$name" = new ]; then flags=("${new_flags[@]}"); else flags=("${old_flags[@]}"); fi
  start "$b" "$name" --ingress-addr 127.0.0.1:0 "${flags[@]}"
  SLIPWAY_SERVER=$url SLIPWAY_TOKEN=$token "$b" deploy -f "$B/slipway.yml" >"$B/deploy-$name.log" 2>&1 ||
    { echo "the $name deploy failed:" >&2; tail -5 "$B/deploy-$name.log" >&2; exit 1; }
  curl -fsS -o /dev/null "http://$ing_addr/" || { echo "the $name ingress does not serve the service" >&2; exit 1; }
  # Ingress and the service's containers on core 1, wrk on core 0.
  taskset -a -p -c 1 "$ingress" >/dev/null
  docker ps -q --filter "label=slipway.cluster=$cluster" | xargs -r docker update --cpuset-cpus 1 >/dev/null
  sleep 1
  # API: one keep-alive connection, one request at a time.
  local g s w
  g=$("$load" "$url" bearer "$token" "GET /api/v1/services" '' 1 "$api_secs")
  s=$("$load" "$url" bearer "$token" "POST /api/v1/services/cost/default/web/scale" '{"count":2}' 1 "$api_secs")
  w=$("$load" "$url" bearer "$token" "PUT /api/v1/secrets/cost/s" '{"value":"v"}' 1 "$api_secs")
  for j in "$g" "$s" "$w"; do
    [ "$(jget "$j" errors)" = 0 ] || echo "  $name: API errors: $j"
  done
  # Ingress.
  taskset -c 0 wrk -t1 -c"$conc" -d1s "http://$ing_addr/" >/dev/null
  local c0 c1 out req rps cpu
  c0=$(ticks)
  out=$(taskset -c 0 wrk -t1 -c"$conc" -d"${secs}s" "http://$ing_addr/")
  c1=$(ticks)
  req=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  cpu=$(awk -v c=$((c1 - c0)) -v n="$req" -v hz="$hz" 'BEGIN {printf "%.2f", c / hz * 1e6 / n}')
  local errs; errs=$(echo "$out" | awk '/Non-2xx|Socket errors/')
  [ -n "$errs" ] && echo "  $name: wrk: $errs"
  LAST[get_p50]=$(jget "$g" p50_ms); LAST[get_p99]=$(jget "$g" p99_ms)
  LAST[scale_p50]=$(jget "$s" p50_ms); LAST[scale_p99]=$(jget "$s" p99_ms)
  LAST[secret_p50]=$(jget "$w" p50_ms); LAST[secret_p99]=$(jget "$w" p99_ms)
  LAST[rps]=$rps; LAST[cpu]=$cpu
  printf '  run %d %-3s GET p50/p99 %5s/%5s ms (%5s req)  scale p50/p99 %5s/%5s ms (%5s req)  secret p50/p99 %5s/%5s ms (%5s req)  ingress %7.0f rps %6s CPU-µs/req  load %s\n' \
    "$run" "$name" "${LAST[get_p50]}" "${LAST[get_p99]}" "$(jget "$g" requests)" \
    "${LAST[scale_p50]}" "${LAST[scale_p99]}" "$(jget "$s" requests)" \
    "${LAST[secret_p50]}" "${LAST[secret_p99]}" "$(jget "$w" requests)" "$rps" "$cpu" "$(cut -d' ' -f1 /proc/loadavg)"
  for m in $metrics; do V[$m,$name]+="${LAST[$m]} "; done
  stop_server
}

echo "old: $old (${old_flags[*]:-no --rate-limit flag})"
echo "new: $new (${new_flags[*]:-no --rate-limit flag})"
for run in $(seq "$runs"); do
  if [ $((run % 2)) = 1 ]; then order="old new"; else order="new old"; fi
  declare -A PAIR=()
  for name in $order; do
    if [ "$name" = old ]; then measure old "$old"; else measure new "$new"; fi
    for m in $metrics; do PAIR[$m,$name]=${LAST[$m]}; done
  done
  for m in $metrics; do
    R[$m]+="$(awk -v a="${PAIR[$m,new]}" -v b="${PAIR[$m,old]}" 'BEGIN {printf "%.3f", a/b}') "
  done
done

printf '\nmedians of %d runs (spread: min-max of the runs)\n' "$runs"
printf '%-10s %22s %22s %7s %15s %13s\n' measure old new new/old "runs' ratios" "ratio spread"
for m in $metrics; do
  o=$(med "${V[$m,old]}"); n=$(med "${V[$m,new]}")
  printf '%-10s %9s (%11s) %9s (%11s) %7.3f %15s %13s\n' "$m" "$o" "$(spread "${V[$m,old]}")" "$n" "$(spread "${V[$m,new]}")" \
    "$(awk -v a="$n" -v b="$o" 'BEGIN {print a/b}')" "$(med "${R[$m]}")" "$(spread "${R[$m]}")"
done
echo "(get/scale/secret: ms, rps: requests/s, cpu: ingress CPU-µs per request; for rps higher is better)"

# What a client as fast as this one gets from the new binary with the default limit.
if [ ${#new_flags[@]} -gt 0 ]; then
  start "$new" limited --no-ingress
  j=$("$load" "$url" bearer "$token" "GET /api/v1/services" '' 1 "$api_secs")
  # The bucket refills while the tool exits: empty it again and show the first refusal.
  read -r n429 ra < <(python3 - "$url" "$token" <<'PY'
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1].removeprefix("http://"))
for _ in range(1000):
    c.request("GET", "/api/v1/services", headers={"Authorization": "Bearer " + sys.argv[2]})
    r = c.getresponse(); r.read()
    if r.status == 429:
        break
print(r.status, r.getheader("Retry-After", "none"))
PY
)
  req=$(jget "$j" requests); errs=$(jget "$j" errors)
  printf '\nnew binary, default --rate-limit (100/s, bursts of 200), GET /api/v1/services for %ss at concurrency 1:\n' "$api_secs"
  printf '  %s requests, %s refused (429), %s answered 200 (%.0f/s); a refusal: %s, Retry-After: %s\n' \
    "$req" "$errs" $((req - errs)) "$(awk -v a=$((req - errs)) -v s="$api_secs" 'BEGIN {print a/s}')" "$n429" "${ra:-none}"
  stop_server
fi
