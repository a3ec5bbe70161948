#!/usr/bin/env bash
# Ingress throughput benchmark (run by hand), after ../shared/research/proxy.md §6/§8:
# the same nginx `return 200` backend behind Slipway's ingress, nginx 1.22 and HAProxy 2.6
# (Debian packages), and direct. Load generator (wrk) pinned to core 0; backend and proxy
# pinned together to core 1, each proxy with one worker. Interleaved runs, medians.
#
# Prints per target: max rps (wrk, 64 keep-alive connections), p50/p99 at that load, p50/p99
# at a fixed rate of 50% of nginx's max (hey), proxy CPU-µs per request, proxy RSS after load;
# and Slipway with 1000 routes vs 1 route. Everything listens on 127.0.0.1 only.
#
# Usage: bench/ingress.sh [RUNS] [SECONDS]   (default 5 runs of 10 s)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-5}
secs=${2:-10}
for p in nginx haproxy wrk hey; do
  command -v "$p" >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx haproxy wrk hey >/dev/null; break; }
done
cd "$root"
cargo build --quiet --release --locked -p slipway
bin="$root/target/release/slipway"
B=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$B/be.pid" ] && kill "$(cat "$B/be.pid")" 2>/dev/null || true
  [ -f "$B/px.pid" ] && kill "$(cat "$B/px.pid")" 2>/dev/null || true
  [ -f "$B/hap.pid" ] && kill "$(cat "$B/hap.pid")" 2>/dev/null || true
  sleep 0.5
  rm -rf "$B"
}
trap cleanup EXIT

cat >"$B/be.conf" <<CONF
worker_processes 1; daemon on;
pid $B/be.pid; error_log $B/be.err;
events { worker_connections 8192; }
http { access_log off;
  server { listen 127.0.0.1:9001 backlog=4096; keepalive_requests 1000000;
           location / { return 200 "blue\n"; } } }
CONF
cat >"$B/px.conf" <<CONF
worker_processes 1; daemon on;
pid $B/px.pid; error_log $B/px.err;
events { worker_connections 8192; }
http { access_log off;
  upstream be { server 127.0.0.1:9001; keepalive 128; }
  server { listen 127.0.0.1:8082 backlog=4096; keepalive_requests 1000000;
           location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
cat >"$B/hap.cfg" <<CONF
global
  nbthread 1
  maxconn 8000
  pidfile $B/hap.pid
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:8083
  default_backend be
backend be
  server s1 127.0.0.1:9001
CONF
mkdir -p "$B/px"
taskset -c 1 nginx -p "$B/" -c "$B/be.conf"
taskset -c 1 nginx -p "$B/" -c "$B/px.conf"
taskset -c 1 haproxy -D -f "$B/hap.cfg"

start_slipway() { # dir port
  taskset -c 1 "$bin" ingress --data-dir "$1" --addr "127.0.0.1:$2" --workers 1 --access-log off >"$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [ -S "$1/ingress.sock" ] && break; sleep 0.05; done
}
push() { # dir json
  curl -fsS --unix-socket "$1/ingress.sock" -X PUT -H 'content-type: application/json' --data-binary @"$2" http://ingress/config
}
one='{"services":[{"name":"bench","routes":[{"path":"/"}],"targets":[{"id":"be","addr":"127.0.0.1:9001"}]}]}'
echo "$one" >"$B/one.json"
python3 - "$B/many.json" <<'PY'
import json, sys
services = [{"name": f"s{i}", "routes": [{"path": f"/r{i}"}, {"host": f"h{i}.example.com", "path": "/"}],
             "targets": [{"id": f"t{i}", "addr": "127.0.0.1:9001"}]} for i in range(999)]
services.append({"name": "bench", "routes": [{"path": "/"}], "targets": [{"id": "be", "addr": "127.0.0.1:9001"}]})
json.dump({"services": services}, open(sys.argv[1], "w"))
PY
start_slipway "$B/s1" 8080; push "$B/s1" "$B/one.json"
start_slipway "$B/s1000" 8084; push "$B/s1000" "$B/many.json"
slip1=${pids[0]}; slip1000=${pids[1]}

ticks() { local t=0; for p in "$@"; do set -- $(cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null || echo "0 0"); t=$((t + $1 + $2)); done; echo $t; }
proc_pids() { # target name -> pids of the proxy
  case $1 in
    direct) echo "" ;;
    nginx) pgrep -P "$(cat "$B/px.pid")" | tr '\n' ' '; cat "$B/px.pid" ;;
    haproxy) cat "$B/hap.pid" ;;
    slipway) echo "$slip1" ;;
    slipway1000) echo "$slip1000" ;;
  esac
}
url() {
  case $1 in
    direct) echo "http://127.0.0.1:9001/" ;; nginx) echo "http://127.0.0.1:8082/" ;; haproxy) echo "http://127.0.0.1:8083/" ;;
    slipway) echo "http://127.0.0.1:8080/" ;; slipway1000) echo "http://127.0.0.1:8084/r500x" ;;
  esac
}
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}'; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

targets="direct nginx haproxy slipway slipway1000"
declare -A RPS P50 P99 CPU
for run in $(seq "$runs"); do
  for t in $targets; do
    u=$(url "$t"); ps_=$(proc_pids "$t")
    taskset -c 0 wrk -t1 -c64 -d2s "$u" >/dev/null
    c0=$(ticks $ps_)
    out=$(taskset -c 0 wrk -t1 -c64 -d"${secs}s" --latency "$u")
    c1=$(ticks $ps_)
    req=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    RPS[$t]+="$rps "
    P50[$t]+="$(echo "$out" | awk '$1=="50%" {print $2}' | to_ms) "
    P99[$t]+="$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms) "
    [ -n "$ps_" ] && CPU[$t]+="$(awk -v c=$((c1 - c0)) -v n="$req" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", c / hz * 1e6 / n}') "
    errs=$(echo "$out" | awk '/Non-2xx|Socket errors/')
    [ -n "$errs" ] && echo "  run $run $t: $errs"
  done
done
med() { echo "$1" | tr ' ' '\n' | grep -v '^$' | median; }
nginx_rps=$(med "${RPS[nginx]}")
rate=$(awk -v r="$nginx_rps" 'BEGIN {printf "%d", r / 2}')
declare -A L50 L99
for t in nginx haproxy slipway; do
  for run in $(seq 3); do
    out=$(taskset -c 0 hey -z "${secs}s" -c 64 -q $((rate / 64)) "$(url "$t")" 2>/dev/null)
    L50[$t]+="$(echo "$out" | awk '/ 50%/ {print $3 * 1000}') "
    L99[$t]+="$(echo "$out" | awk '/ 99%/ {print $3 * 1000}') "
  done
done

printf '\n%-12s %10s %8s %8s %9s %9s %10s %10s %8s\n' target rps "vs nginx" "vs dir" "p50 ms" "p99 ms" "CPU µs/req" "RSS MB" ""
direct_rps=$(med "${RPS[direct]}")
for t in $targets; do
  r=$(med "${RPS[$t]}")
  rss=""; p=$(proc_pids "$t")
  if [ -n "$p" ]; then rss=$(for x in $p; do awk '/VmRSS/ {print $2}' "/proc/$x/status"; done | awk '{s+=$1} END {printf "%.1f", s/1024}'); fi
  cpu=""; [ -n "${CPU[$t]:-}" ] && cpu=$(med "${CPU[$t]}")
  printf '%-12s %10.0f %8.2f %8.2f %9s %9s %10s %10s\n' "$t" "$r" "$(awk -v a="$r" -v b="$nginx_rps" 'BEGIN {print a/b}')" \
    "$(awk -v a="$r" -v b="$direct_rps" 'BEGIN {print a/b}')" "$(med "${P50[$t]}")" "$(med "${P99[$t]}")" "$cpu" "$rss"
done
echo
echo "fixed rate $rate rps (50% of nginx's max), hey, 3 runs, medians:"
for t in nginx haproxy slipway; do
  printf '  %-8s p50 %6.2f ms  p99 %6.2f ms\n' "$t" "$(med "${L50[$t]}")" "$(med "${L99[$t]}")"
done
awk -v a="$(med "${RPS[slipway1000]}")" -v b="$(med "${RPS[slipway]}")" 'BEGIN {printf "\nslipway 1000 routes / 1 route rps: %.3f\n", a/b}'
