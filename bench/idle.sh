#!/usr/bin/env bash
# 10 000 idle connections to the ingress (run by hand; issue 20). A server with its ingress
# on a loopback port the kernel hands out and one web service (slipway-hello:v1, 2 tasks);
# then a Python client (one process, one socket per connection) opens, in two phases:
#   keep-alive  connections that each sent one request through the ingress to the service,
#               read its answer and then stay open, sending nothing (the ingress' idle
#               timeout for these is 60 s);
#   bare        connections that are accepted and send nothing at all (what a slowloris
#               does; the ingress closes them after its 10 s header deadline, so this phase
#               is measured within a few seconds of opening them).
# In each phase: the ingress' RSS (VmRSS of /proc/PID/status) with 0, 5 000 and 10 000 such
# connections open, then one new client beyond the cap, whose answer is read and printed
# (the global cap, `--ingress-max-connections`, is 10 000 by default), then the RSS after
# all are closed. The per-address cap (`--ingress-max-connections-per-ip`, default 256) is
# left as it is: the connections come from 200 source addresses, 127.0.0.1-127.0.0.200
# (loopback accepts any 127/8 address; each socket is bound to one), 50 each; the client
# beyond the cap comes from 127.0.0.201. A last check opens 257 connections from one address
# to show the per-address cap's 503.
#
# Usage: bench/idle.sh BIN [OLD_BIN]   (OLD_BIN, a binary without the caps, for comparison)
#        N (default 10000)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { echo "usage: bench/idle.sh BIN [OLD_BIN]" >&2; exit 2; }
n=${N:-10000}
command -v curl >/dev/null && command -v python3 >/dev/null ||
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends curl python3 >/dev/null; }
# The client needs N descriptors and so does the ingress (it inherits the server's limit).
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((n + 500)) ] || { echo "ulimit -n $(ulimit -n) is too low for $n connections" >&2; exit 1; }
cd "$root"
docker image inspect slipway-hello:v1 >/dev/null 2>&1 || scripts/build-example.sh >/dev/null

B=$(mktemp -d)
server=""; ingress=""; cluster=""
stop_server() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
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
app: idle
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

cat >"$B/idle.py" <<'PY'
import socket, sys, time
addr, port = sys.argv[1].rsplit(":", 1)
port, pid, n = int(port), int(sys.argv[2]), int(sys.argv[3])
REQ = b"GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n"

def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])  # kB

def source(i):  # 127.0.0.1 .. 127.0.0.200, 50 connections each for 10 000
    return f"127.0.0.{1 + i % 200}"

def read_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body

BATCH = 200  # connections opened, then asked, then read together (one at a time is too slow)

def open_batch(ids, request):
    socks = []
    for i in ids:
        s = socket.socket()
        s.bind((source(i), 0))
        s.connect((addr, port))
        socks.append(s)
    if request:
        for s in socks:
            s.sendall(REQ)
        for i, s in zip(ids, socks):
            r = read_response(s)
            if not r.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"connection {i}: {r[:200]!r}")
    return socks

def beyond(src, label):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(5)
    try:
        s.connect((addr, port))
        s.sendall(REQ)
        r = read_response(s)
        status = r.split(b"\r\n", 1)[0].decode()
        body = r.partition(b"\r\n\r\n")[2].decode(errors="replace").strip()
        print(f"  {label}: {status!r}, body {body!r}")
    except OSError as e:
        print(f"  {label}: {type(e).__name__}: {e}")
    finally:
        s.close()

def phase(request):
    name = "keep-alive (one request each, then idle)" if request else "bare (accepted, nothing sent)"
    print(f"{name}:")
    time.sleep(1)
    r0 = rss()
    socks, marks = [], {}
    t0 = time.monotonic()
    for first in range(0, n, BATCH):
        socks += open_batch(range(first, min(first + BATCH, n)), request)
        if n // 2 not in marks and len(socks) >= n // 2:
            time.sleep(0.5)
            marks[n // 2] = rss()
    time.sleep(0.5)
    marks[n] = rss()
    opened = time.monotonic() - t0
    beyond("127.0.0.201", f"client {n + 1} (from 127.0.0.201)")
    print(f"  opened {n} in {opened:.1f} s; RSS {r0 / 1024:.1f} MB at 0, "
          f"{marks[n // 2] / 1024:.1f} MB at {n // 2}, {marks[n] / 1024:.1f} MB at {n}: "
          f"{(marks[n] - r0) * 1024 / n / 1024:.2f} kB per idle connection")
    for s in socks:
        s.close()
    time.sleep(2)
    print(f"  all closed: RSS {rss() / 1024:.1f} MB after 2 s", end="")
    time.sleep(8)
    print(f", {rss() / 1024:.1f} MB after 10 s")

phase(True)
phase(False)
if len(sys.argv) > 4:
    print("per-address cap:")
    socks = open_batch([i * 200 for i in range(int(sys.argv[4]))], True)
    beyond("127.0.0.1", f"connection {len(socks) + 1} from 127.0.0.1")
    for s in socks:
        s.close()
PY

run() { # NAME BIN
  local name=$1 b=$2
  local data="$B/data-$name"
  "$b" server --data-dir "$data" --api-addr 127.0.0.1:0 --ingress-addr 127.0.0.1:0 >"$B/server-$name.log" 2>&1 &
  server=$!
  for _ in $(seq 300); do [ -s "$data/api.addr" ] && break; sleep 0.1; done
  [ -s "$data/api.addr" ] || { echo "the $name server did not start" >&2; tail -5 "$B/server-$name.log" >&2; exit 1; }
  local url token ing_addr
  url=$(cat "$data/api.addr"); token=$(cat "$data/admin.token")
  cluster=$(curl -fsS -H "Authorization: Bearer $token" "$url/api/v1/info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cluster"])')
  ingress=$(cat "$data/ingress/ingress.pid")
  ing_addr=$(cut -d' ' -f1 "$data/ingress/ingress.addr")
  SLIPWAY_SERVER=$url SLIPWAY_TOKEN=$token "$b" deploy -f "$B/slipway.yml" >"$B/deploy-$name.log" 2>&1 ||
    { echo "the $name deploy failed" >&2; tail -5 "$B/deploy-$name.log" >&2; exit 1; }
  echo "== $name: $b (ingress PID $ingress, open files limit $(awk '/Max open files/ {print $4}' "/proc/$ingress/limits"))"
  local per_ip=""
  [ "$name" = new ] && per_ip=256
  python3 "$B/idle.py" "$ing_addr" "$ingress" "$n" $per_ip
  if [ "$name" = new ]; then
    curl -fsS --unix-socket "$data/ingress/ingress.sock" http://ingress/metrics |
      grep -E '^slipway_ingress_connections_(refused_total|open)' | sed 's/^/  /'
  fi
  stop_server
}

run new "$(realpath "$1")"
[ $# -ge 2 ] && run old "$(realpath "$2")"
exit 0
