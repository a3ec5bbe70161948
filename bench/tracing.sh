#!/usr/bin/env bash
# What request tracing costs the ingress (run by hand; issue 22's target: 1 % sampling costs
# at most 2 % of throughput). Four `slipway ingress` processes (one worker each) in front of
# the same nginx `return 200` backend, differing only in their trace settings:
#   off    no OTLP endpoint: requests still get and forward a `traceparent`, nothing sampled
#   0      --otlp-endpoint set, --trace-sample-ratio 0   (the exporter runs, samples nothing)
#   1      --trace-sample-ratio 0.01
#   100    --trace-sample-ratio 1    (every request a span, batched to the sink)
# The OTLP sink is a small HTTP server on loopback (python3) answering 200 to every
# `POST /v1/traces`; it counts the bytes it got. Load generator (wrk, 64 keep-alive
# connections) and sink on core 0; backend and ingresses on core 1, as in bench/ingress.sh.
# Rounds go through the four in turn; prints the medians of rps and of ingress CPU per request
# (utime+stime from /proc/PID/stat over the requests wrk counted), and their ratios to 0 %.
# Everything listens on 127.0.0.1, on ports the kernel hands out.
#
# Usage: bench/tracing.sh [ROUNDS] [SECONDS]   (default 7 rounds of 10 s)
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
declare -A PID ADDR
sink=""
cleanup() {
  for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$sink" ] && kill "$sink" 2>/dev/null || true
  [ -f "$B/be.pid" ] && kill "$(cat "$B/be.pid")" 2>/dev/null || true
  sleep 0.5
  rm -rf "$B"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
be=$(free_port)
cat >"$B/be.conf" <<CONF
worker_processes 1; daemon on;
pid $B/be.pid; error_log $B/be.err;
events { worker_connections 8192; }
http { access_log off;
  server { listen 127.0.0.1:$be backlog=4096; keepalive_requests 1000000;
           location / { return 200 "ok\n"; } } }
CONF
taskset -c 1 nginx -p "$B/" -c "$B/be.conf"

# The OTLP sink: answers every POST with 200 and an empty ExportTraceServiceResponse.
cat >"$B/sink.py" <<'PY'
import http.server, sys, threading
total = {"bytes": 0, "posts": 0}
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("content-length", 0))
        self.rfile.read(n)
        with lock:
            total["bytes"] += n; total["posts"] += 1
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def do_GET(self):
        body = f'{total["posts"]} {total["bytes"]}\n'.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_address[1]))
s.serve_forever()
PY
taskset -c 0 python3 "$B/sink.py" "$B/sink.port" &
sink=$!
for _ in $(seq 100); do [ -s "$B/sink.port" ] && break; sleep 0.05; done
otlp="http://127.0.0.1:$(cat "$B/sink.port")"

cfg="{\"services\":[{\"name\":\"bench\",\"routes\":[{\"path\":\"/\"}],\"targets\":[{\"id\":\"be\",\"addr\":\"127.0.0.1:$be\"}]}]}"
variants="off 0 1 100"
for v in $variants; do
  mkdir -p "$B/$v"
  case $v in
    off) flags=() ;;
    0) flags=(--otlp-endpoint "$otlp" --trace-sample-ratio 0) ;;
    1) flags=(--otlp-endpoint "$otlp" --trace-sample-ratio 0.01) ;;
    100) flags=(--otlp-endpoint "$otlp" --trace-sample-ratio 1) ;;
  esac
  env -u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_EXPORTER_OTLP_TRACES_ENDPOINT -u OTEL_SDK_DISABLED \
    taskset -c 1 "$bin" ingress --data-dir "$B/$v" --addr 127.0.0.1:0 --workers 1 --access-log off \
    "${flags[@]}" >"$B/$v.log" 2>&1 &
  PID[$v]=$!
  for _ in $(seq 200); do [ -S "$B/$v/ingress.sock" ] && [ -s "$B/$v/ingress.addr" ] && break; sleep 0.05; done
  ADDR[$v]=$(cut -d' ' -f1 "$B/$v/ingress.addr")
  echo "$cfg" | curl -fsS --unix-socket "$B/$v/ingress.sock" -X PUT -H 'content-type: application/json' \
    --data-binary @- http://ingress/config
  curl -fsS -o /dev/null "http://${ADDR[$v]}/" || { echo "ingress $v does not answer" >&2; exit 1; }
done

ticks() { set -- $(cut -d' ' -f14,15 "/proc/$1/stat"); echo $(($1 + $2)); }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
med() { echo "$1" | tr ' ' '\n' | grep -v '^$' | median; }
hz=$(getconf CLK_TCK)
declare -A RPS CPU
for round in $(seq "$rounds"); do
  for v in $variants; do
    u="http://${ADDR[$v]}/"
    taskset -c 0 wrk -t1 -c64 -d1s "$u" >/dev/null
    c0=$(ticks "${PID[$v]}")
    out=$(taskset -c 0 wrk -t1 -c64 -d"${secs}s" "$u")
    c1=$(ticks "${PID[$v]}")
    req=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    cpu=$(awk -v c=$((c1 - c0)) -v n="$req" -v hz="$hz" 'BEGIN {printf "%.2f", c / hz * 1e6 / n}')
    RPS[$v]+="$rps "
    CPU[$v]+="$cpu "
    printf '  round %d %-4s %9.0f rps %6s CPU-µs/req\n' "$round" "$v" "$rps" "$cpu"
    errs=$(echo "$out" | awk '/Non-2xx|Socket errors/')
    [ -n "$errs" ] && echo "  round $round $v: $errs"
  done
done
sleep 1
read -r posts bytes < <(curl -fsS "$otlp/")
echo "  the sink got $posts OTLP requests, $bytes bytes"
grep -h 'spans dropped' "$B"/*.log | tail -n 3 | sed 's/^/  /' || true

printf '\n%-8s %10s %11s %9s %9s\n' sampling rps "CPU µs/req" "rps/0%" "CPU/0%"
r0=$(med "${RPS[0]}"); c0=$(med "${CPU[0]}")
for v in $variants; do
  r=$(med "${RPS[$v]}"); c=$(med "${CPU[$v]}")
  label=$v; [ "$v" != off ] && label="$v %"
  printf '%-8s %10.0f %11s %9.3f %9.3f\n' "$label" "$r" "$c" \
    "$(awk -v a="$r" -v b="$r0" 'BEGIN {print a/b}')" "$(awk -v a="$c" -v b="$c0" 'BEGIN {print a/b}')"
done
