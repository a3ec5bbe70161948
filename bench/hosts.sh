#!/usr/bin/env bash
# Multi-host clustering, Slipway side by side with Docker Swarm on the same kind of test bed
# (run by hand; never in CI; needs root).
#
# The bed: 3 real Docker engines on this machine, each in its own network namespace, linked
# by veth pairs to a Linux bridge (as crates/slipway/tests/it/testbed.rs builds it). First
# Slipway runs on it (server in the machine's namespace, `slipway agent` on each host), then
# Swarm on the same engines (Slipway's containers removed, agents stopped).
#
#  1. Host loss: a 6-task service spread 2/2/2 over 3 hosts; host 3's veth is set down on the
#     bridge side; time from the cut until 6 tasks run healthy on hosts 1 and 2 (Slipway:
#     also until the host is LOST; Swarm: also until the node is Down). Between runs the link
#     comes back and the service is brought back to 2/2/2 (see rebalance_* below).
#  2. Rolling deploy v1 -> v2 of 12 tasks over 3 hosts: `slipway deploy` to SUCCEEDED (its
#     default rules: minimumHealthyPercent 100 / maximumPercent 200) against
#     `docker service update --image` until 12 v2 tasks are healthy and no v1 task runs, with
#     Swarm's defaults (parallelism 1, stop-first), start-first/parallelism 1, and
#     start-first/parallelism 12 (matching Slipway's rules: all new tasks at once, each old
#     one stopped once new ones are healthy).
#  3. `slipway agent` idle RSS and CPU with 50 tasks on its host (a fresh one-host cluster):
#     Backend Service (no probes), then Load Balanced Web Service (HTTP probes every second,
#     run by the agent).
#
# Usage: bench/hosts.sh [RUNS]   (default 5). PHASES="slipway rss swarm" selects parts.
# Prints every run, medians, min/max and ratios.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${1:-5}
phases=${PHASES:-slipway rss swarm}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/bench-target}
# SLIPWAY_BIN: a slipway binary built elsewhere (e.g. from a clean export of a commit);
# by default this tree is built into $CARGO_TARGET_DIR.
bin=${SLIPWAY_BIN:-$CARGO_TARGET_DIR/release/slipway}

[ "$(id -u)" = 0 ] || { echo "hosts.sh needs root (network namespaces, iptables)" >&2; exit 1; }
for t in ip nsenter dockerd iptables jq python3 curl docker-registry; do
  command -v "$t" >/dev/null || { echo "hosts.sh needs $t" >&2; exit 1; }
done
for img in slipway-hello:v1 slipway-hello:v2; do
  docker image inspect "$img" >/dev/null 2>&1 || { echo "$img is missing: run scripts/build-example.sh" >&2; exit 1; }
done
if [ -z "${SLIPWAY_BIN:-}" ]; then
  cargo build --quiet --release -p slipway
  changes=$(git status --porcelain -- Cargo.toml Cargo.lock crates | wc -l)
  echo "slipway: this tree, commit $(git rev-parse --short HEAD), $changes uncommitted change(s) under crates/"
fi

work=$(mktemp -d /tmp/slwhosts.XXXXXX)
nhosts=3
driver=$(docker info --format '{{.Driver}}')
bridge="" ; net="" ; rule=0
dockerd_pids=() ; pids=() ; socks=() ; nss=() ; veths=() ; ips=()
pushed=()

now_ms() { date +%s%3N; }
log() { echo "$(date +%T) $*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])'; }
dk() { local i=$1; shift; docker -H "unix://${socks[$i]}" "$@"; }

# Kills a process this script started (by PID) and waits for it, at most $2 seconds.
# Stopped PIDs leave the list, so a number the kernel reuses later is never signalled.
stop_pid() {
  local pid=$1 secs=${2:-10} keep=() p
  for p in "${pids[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  pids=("${keep[@]}")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((secs * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# The ingress the server at DIR started (its own process), if it still runs.
stop_ingress() {
  local f="$1/ingress/ingress.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$bin")" ] && stop_pid "$pid" 5
  rm -f "$f"
}

cleanup() {
  local rc=$?
  set +e
  log "cleaning up"
  if [ "$rc" != 0 ]; then
    # Keep the logs of a failed run (server, agents, engines, registry).
    keep="$work-logs"; mkdir -p "$keep"
    (cd "$work" && find . -name '*.log' -exec cp --parents {} "$keep" \;)
    log "exit $rc; logs kept in $keep"
  fi
  for p in "${pids[@]}"; do stop_pid "$p" 5; done
  for d in "$work"/server*; do [ -d "$d" ] && stop_ingress "$d"; done
  for i in "${!socks[@]}"; do
    [ -S "${socks[$i]}" ] || continue
    dk "$i" swarm leave --force >/dev/null 2>&1
    dk "$i" ps -aq | xargs -r docker -H "unix://${socks[$i]}" rm -f >/dev/null 2>&1
  done
  for p in "${dockerd_pids[@]}"; do stop_pid "$p" 20; done
  for v in "${veths[@]}"; do ip link del "$v" 2>/dev/null; done
  for n in "${nss[@]}"; do ip netns del "$n" 2>/dev/null; done
  [ "$rule" = 1 ] && iptables -D FORWARD -i "$bridge" -o "$bridge" -j ACCEPT
  [ -n "$bridge" ] && ip link del "$bridge" 2>/dev/null
  for r in "${pushed[@]}"; do docker rmi "$r" >/dev/null 2>&1; done
  # Engines stopped: nothing is mounted under the bed's directories any more.
  if grep -q " $work/" /proc/mounts; then
    log "mounts left under $work, not removing it"
  else
    rm -rf --one-file-system "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_until SECONDS WHAT CMD...: polls CMD every 200 ms.
wait_until() {
  local deadline=$(( $(date +%s) + $1 )) what=$2; shift 2
  until "$@"; do
    if (( $(date +%s) > deadline )); then log "timed out waiting for $what"; return 1; fi
    sleep 0.2
  done
}

# is VALUE CMD...: CMD prints VALUE (for wait_until; CMD runs at every poll).
is() { local want=$1; shift; [ "$("$@")" = "$want" ]; }
containers_on() { dk "$1" ps -q | wc -l; }

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
minmax() { sort -n | awk 'NR==1 {lo=$1} {hi=$1} END {print lo "/" hi}'; }
secs() { awk -v ms="$1" 'BEGIN {printf "%.1f", ms / 1000}'; }
# summary NAME WHAT VALUES...: one line with every run (s), the median and min/max; sets
# med_NAME.
summary() {
  local name=$1 what=$2; shift 2
  local m mm
  m=$(printf '%s\n' "$@" | median); mm=$(printf '%s\n' "$@" | minmax)
  printf -v "med_$name" '%s' "$m"
  local each=""; for v in "$@"; do each+="$(secs "$v") "; done
  printf '  %-44s %s s; median %s s, min/max %s/%s s\n' "$what:" "${each% }" "$(secs "$m")" \
    "$(secs "${mm%/*}")" "$(secs "${mm#*/}")"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

##### The bed ###############################################################################
for n in $(shuf -i 200-249); do
  ip link show "slwb$n" >/dev/null 2>&1 && continue
  ip -4 addr | grep -q "10\.78\.$n\." && continue
  ip link add "slwb$n" type bridge 2>/dev/null || continue
  net=$n; bridge="slwb$n"; break
done
[ -n "$bridge" ] || { echo "no free bridge slwb200-249" >&2; exit 1; }
gw="10.78.$net.1"
ip addr add "$gw/24" dev "$bridge"
ip link set "$bridge" up
iptables -I FORWARD -i "$bridge" -o "$bridge" -j ACCEPT; rule=1
log "bed: bridge $bridge ($gw/24), $nhosts hosts, storage driver $driver, work dir $work"
for i in $(seq 0 $((nhosts - 1))); do
  ns="slw${net}h$((i + 1))"; veth="vslw${net}h$((i + 1))"; ip_="10.78.$net.$((11 + i))"
  ip netns add "$ns"; nss+=("$ns")
  ip link add "$veth" type veth peer name eth0 netns "$ns"; veths+=("$veth")
  ip link set "$veth" master "$bridge" up
  nsenter --net="/var/run/netns/$ns" sh -c "ip addr add $ip_/24 dev eth0 && ip link set eth0 up && ip link set lo up && ip route add default via $gw"
  d="$work/h$((i + 1))"; mkdir -p "$d"
  printf '{"storage-driver": "%s", "mtu": 1400, "insecure-registries": ["10.78.%s.0/24"]}\n' "$driver" "$net" >"$d/daemon.json"
  nsenter --net="/var/run/netns/$ns" dockerd --config-file "$d/daemon.json" --data-root "$d/data" \
    --exec-root "$d/exec" -H "unix://$d/docker.sock" --pidfile "$d/docker.pid" \
    --containerd-namespace "$ns" --containerd-plugins-namespace "${ns}p" >/dev/null 2>"$d/dockerd.log" &
  dockerd_pids+=($!); socks+=("$d/docker.sock"); ips+=("$ip_")
done
for i in "${!socks[@]}"; do
  wait_until 60 "engine $((i + 1))" dk "$i" info --format '{{.ID}}' >/dev/null 2>&1
done

##### Slipway ###############################################################################
server_pid=""
# start_server DIR: a server with no local agent, API on a free port on every address.
start_server() {
  local dir=$1 port
  port=$(free_port)
  "$bin" server --data-dir "$dir" --api-addr "0.0.0.0:$port" --ingress-addr 127.0.0.1:0 \
    --advertise-addr "$gw" --no-local-agent >"$dir.log" 2>&1 &
  server_pid=$!; pids+=("$server_pid")
  wait_until 30 "the server" test -s "$dir/admin.token"
  wait_until 30 "the server's address" test -s "$dir/api.addr"
  export SLIPWAY_SERVER="http://127.0.0.1:$port" SLIPWAY_TOKEN
  SLIPWAY_TOKEN=$(cat "$dir/admin.token")
  api_port=$port
  lan_url="http://$gw:$port"
}
declare -A agent_pid
# start_agent I DIR: host I+1's agent, joined with a fresh token.
start_agent() {
  local i=$1 dir=$2 token
  token=$("$bin" host join-token 2>/dev/null | tr -d '[:space:]')
  SLIPWAY_LOG=info nsenter --net="/var/run/netns/${nss[$i]}" env -u SLIPWAY_SERVER -u SLIPWAY_TOKEN \
    DOCKER_HOST="unix://${socks[$i]}" "$bin" agent --server "$lan_url" --join-token "$token" \
    --data-dir "$dir" --name "host$((i + 1))" >>"$dir.log" 2>&1 &
  agent_pid[$i]=$!; pids+=($!)
}
connected() { # N: N hosts connected and ACTIVE
  [ "$("$bin" --json host ls | jq '[.[] | select(.connected == true and .state == "ACTIVE")] | length')" = "$1" ]
}
# push LOCAL REPO:TAG: into the server's registry; prints the reference to deploy.
push() {
  local reg="127.0.0.1:$api_port" cfg="$work/docker-config"
  mkdir -p "$cfg"
  SLIPWAY_SERVER="http://$reg" "$bin" registry password | docker --config "$cfg" login "$reg" -u slipway --password-stdin >/dev/null 2>&1
  docker tag "$1" "$reg/$2"; pushed+=("$reg/$2")
  docker --config "$cfg" push "$reg/$2" >/dev/null
  echo "$reg/$2"
}
web_manifest() { # APP IMAGE COUNT [MEMORY]
  cat <<YAML
app: $1
services:
  web:
    type: Load Balanced Web Service
    image:
      location: $2
      port: 8080
    http:
      path: /
      healthcheck: /healthz
    count: $3
    memory: ${4:-32}
    placement:
      strategy:
        - type: spread
          field: host
YAML
}
# Healthy running tasks of web per host (bed order), e.g. "2 2 2".
slip_spread() {
  "$bin" --json ps web --app "$app" | jq -r --argjson ids "$host_ids" \
    '. as $t | [$ids[] as $h | [$t[] | select(.host == $h and .last_status == "RUNNING" and .health == "HEALTHY")] | length | tostring] | join(" ")'
}
slip_host_state() { "$bin" --json host ls | jq -r --arg h "$1" '.[] | select(.id == $h) | .state'; }
cluster_running_on() { # I: running containers of the Slipway cluster on host I+1
  dk "$1" ps -q --filter "label=slipway.cluster=$cluster" | wc -l
}
is_spread() { [ "$(slip_spread)" = "$1" ]; }

# Stops a Slipway cluster's processes and empties the bed's engines.
stop_slipway() {
  for i in "${!agent_pid[@]}"; do stop_pid "${agent_pid[$i]}" 10; done
  agent_pid=()
  stop_pid "$server_pid" 10
  stop_ingress "$server_dir"
  for i in "${!socks[@]}"; do
    dk "$i" ps -aq | xargs -r docker -H "unix://${socks[$i]}" rm -f >/dev/null
    dk "$i" network prune -f >/dev/null
  done
}
# The agent's own process: nsenter and env exec it, so the PID started is the agent's.
agent_proc() {
  local pid=${agent_pid[$1]}
  [ "$(readlink "/proc/$pid/exe")" = "$(readlink -f "$bin")" ] || { log "PID $pid is not the agent"; return 1; }
  echo "$pid"
}
rebalance_slip() {
  # Nothing moves tasks back on its own (as in ECS): `slipway rebalance` where it exists,
  # else scale in (Slipway stops tasks on the hosts with the most first) and out again
  # (spread puts them on the emptiest host).
  if "$bin" rebalance --help >/dev/null 2>&1; then
    "$bin" rebalance web --app "$app" >/dev/null
  else
    "$bin" scale web 4 --app "$app" >/dev/null
    "$bin" scale web 6 --app "$app" >/dev/null
  fi
  wait_until 60 "2/2/2 again" is_spread "2 2 2"
}

if [[ " $phases " == *" slipway "* ]]; then
  log "== Slipway: server, 3 agents"
  server_dir="$work/server"
  start_server "$server_dir"
  for i in 0 1 2; do start_agent "$i" "$work/agent$((i + 1))"; done
  wait_until 60 "3 agents" connected 3
  host_ids=$("$bin" --json host ls | jq -c '[sort_by(.name)[] | .id]')
  cluster=$(curl -fsS -H "Authorization: Bearer $SLIPWAY_TOKEN" "$SLIPWAY_SERVER/api/v1/info" | jq -r .cluster)
  v1=$(push slipway-hello:v1 hello:v1)
  v2=$(push slipway-hello:v2 hello:v2)
  mkdir -p "$work/cli"; cd "$work/cli"
  load_slip=$(cut -d' ' -f1-3 /proc/loadavg)

  echo "== 1. host loss, Slipway: 6 tasks spread over 3 hosts, host 3's link cut ($runs runs)"
  app=loss
  web_manifest "$app" "$v1" 6 >slipway.yml
  "$bin" deploy >/dev/null
  wait_until 60 "2/2/2" is_spread "2 2 2"
  lost_h=$(jq -r '.[2]' <<<"$host_ids")
  slip_lost=(); slip_repl=()
  for r in $(seq "$runs"); do
    t0=$(now_ms)
    ip link set "${veths[2]}" down
    lost=""; done_=""
    while :; do
      [ -z "$lost" ] && [ "$(slip_host_state "$lost_h")" = LOST ] && lost=$(( $(now_ms) - t0 ))
      if [ -z "$done_" ]; then
        s=$(slip_spread); a=${s%% *}; rest=${s#* }; b=${rest%% *}
        [ $((a + b)) -ge 6 ] && done_=$(( $(now_ms) - t0 ))
      fi
      [ -n "$lost" ] && [ -n "$done_" ] && break
      (( $(now_ms) - t0 > 180000 )) && { log "run $r: no replacement within 180 s"; exit 1; }
      sleep 0.1
    done
    slip_lost+=("$lost"); slip_repl+=("$done_")
    log "run $r: host 3 LOST after $(secs "$lost") s; 6 healthy on hosts 1+2 after $(secs "$done_") s ($(slip_spread))"
    # Back: the link up, the agent reconnects, its stale copies are stopped, then 2/2/2.
    ip link set "${veths[2]}" up
    wait_until 90 "host 3 back" connected 3
    wait_until 90 "host 3's stale copies stopped" is 0 cluster_running_on 2
    rebalance_slip
  done
  summary slip_lost "host LOST" "${slip_lost[@]}"
  summary slip_repl "6 healthy on hosts 1+2" "${slip_repl[@]}"
  "$bin" delete --app "$app" --yes >/dev/null

  echo "== 2. rolling deploy v1 -> v2 of 12 tasks over 3 hosts, Slipway ($runs runs)"
  app=roll
  web_manifest "$app" "$v1" 12 >v1.yml
  web_manifest "$app" "$v2" 12 >v2.yml
  cp v1.yml slipway.yml
  "$bin" deploy -f v1.yml >/dev/null
  wait_until 60 "4/4/4" is_spread "4 4 4"
  # Warm-up (untimed): every host pulls v2 once.
  "$bin" deploy -f v2.yml >/dev/null; "$bin" deploy -f v1.yml >/dev/null
  slip_roll=()
  for r in $(seq "$runs"); do
    t0=$(now_ms)
    "$bin" deploy -f v2.yml >"$work/deploy.out"
    t1=$(now_ms)
    grep -q SUCCEEDED "$work/deploy.out" || { log "deploy did not succeed: $(cat "$work/deploy.out")"; exit 1; }
    slip_roll+=($((t1 - t0)))
    log "run $r: slipway deploy v2 SUCCEEDED after $(secs $((t1 - t0))) s ($(slip_spread)); $(grep -o 'first healthy.*' "$work/deploy.out")"
    "$bin" deploy -f v1.yml >/dev/null   # back, untimed
  done
  summary slip_roll "slipway deploy to SUCCEEDED" "${slip_roll[@]}"
  "$bin" delete --app "$app" --yes >/dev/null
  stop_slipway
  cd "$root"
fi

if [[ " $phases " == *" rss "* ]]; then
  echo "== 3. slipway agent idle with 50 tasks on its host (a one-host cluster)"
  server_dir="$work/server-rss"
  start_server "$server_dir"
  start_agent 0 "$work/agent-rss"
  wait_until 60 "the agent" connected 1
  host_ids=$("$bin" --json host ls | jq -c '[.[] | .id]')
  v1=$(push slipway-hello:v1 hello:v1)
  mkdir -p "$work/cli-rss"; cd "$work/cli-rss"
  hz=$(getconf CLK_TCK)
  # sample LABEL: agent RSS now and its CPU over 30 s.
  sample() {
    local pid c0 c1 t0 t1 rss
    pid=$(agent_proc 0)
    c0=$(awk '{print $14 + $15}' "/proc/$pid/stat"); t0=$(now_ms)
    sleep 30
    c1=$(awk '{print $14 + $15}' "/proc/$pid/stat"); t1=$(now_ms)
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    printf -v "rss_$1" '%s' "$(awk -v r="$rss" 'BEGIN {printf "%.1f", r / 1024}')"
    printf -v "cpu_$1" '%s' "$(awk -v c=$((c1 - c0)) -v hz="$hz" -v ms=$((t1 - t0)) 'BEGIN {printf "%.2f", 100 * c / hz / (ms / 1000)}')"
    local r="rss_$1" c="cpu_$1"
    echo "  $2: $(dk 0 ps -q | wc -l) containers running on the host; agent RSS ${!r} MB, CPU ${!c} % of one core over $(( (t1 - t0) / 1000 )) s"
  }
  sleep 10
  sample none "no task"
  cat >slipway.yml <<YAML
app: idle
services:
  api:
    type: Backend Service
    image:
      location: $v1
      port: 8080
    count: 50
    memory: 16
YAML
  "$bin" deploy --timeout 20m >/dev/null
  sleep 15
  sample backend "50 Backend Service tasks (no probes)"
  "$bin" delete --app idle --yes >/dev/null
  wait_until 120 "the host to empty" is 0 containers_on 0
  app=idleweb
  web_manifest "$app" "$v1" 50 16 >slipway.yml
  "$bin" deploy --timeout 20m >/dev/null
  sleep 15
  sample web "50 Load Balanced Web Service tasks (HTTP probes every 1 s, run by the agent)"
  load_rss=$(cut -d' ' -f1-3 /proc/loadavg)
  "$bin" delete --app "$app" --yes >/dev/null
  stop_slipway
  cd "$root"
fi

##### Docker Swarm ##########################################################################
# Healthy running containers of the service on each engine, e.g. "2 2 2".
swarm_spread() {
  local i out=()
  for i in "${!socks[@]}"; do
    out+=("$(dk "$i" ps -q --filter label=com.docker.swarm.service.name=web --filter health=healthy | wc -l)")
  done
  echo "${out[*]}"
}
swarm_running() { # running containers of the service on all engines
  local i n=0
  for i in "${!socks[@]}"; do n=$((n + $(dk "$i" ps -q --filter label=com.docker.swarm.service.name=web | wc -l))); done
  echo "$n"
}
swarm_running_on() { dk "$1" ps -q --filter label=com.docker.swarm.service.name=web | wc -l; }
ready_nodes() { dk 0 node ls --format '{{.Status}}' | grep -c Ready || true; }
update_state() { dk 0 service inspect -f '{{.UpdateStatus.State}}' web; }
swarm_is() { [ "$(swarm_spread)" = "$1" ] && [ "$(swarm_running)" = "$2" ]; }
# Versions of the running containers: "v1 HEALTHY+OTHER v2 HEALTHY+OTHER".
swarm_versions() {
  local i
  for i in "${!socks[@]}"; do
    dk "$i" ps --filter label=com.docker.swarm.service.name=web --format '{{.Image}} {{.Status}}'
  done | awk '{split($1, a, "@"); n = split(a[1], b, ":"); v = b[n]; if ($0 ~ /\(healthy\)/) h[v]++; else o[v]++}
    END {printf "v1 %d+%d v2 %d+%d\n", h["v1"], o["v1"], h["v2"], o["v2"]}'
}
node_state() { dk 0 node inspect -f '{{.Status.State}}' "$1"; }

if [[ " $phases " == *" swarm "* ]]; then
  echo "== Docker Swarm on the same engines"
  # A registry on the bridge, as Swarm is meant to be used: the manager pins each image to its
  # digest, and an engine that has it does not pull again. (With tags and no reachable
  # registry, every task start first tries Docker Hub and waits for DNS to time out.)
  reg_port=$(free_port); reg="$gw:$reg_port"
  mkdir -p "$work/registry"
  cat >"$work/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: $reg}
YML
  docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
  pids+=($!)
  wait_until 30 "the registry" curl -fs "http://$reg/v2/" -o /dev/null
  # The hello images with a container health check (FROM scratch: no shell, so exec form;
  # the service's --health-* flags below set its timing), built on engine 1 and pushed.
  docker save slipway-hello:v1 slipway-hello:v2 | dk 0 load >/dev/null
  mkdir -p "$work/hc"
  for v in v1 v2; do
    printf 'FROM slipway-hello:%s\nHEALTHCHECK CMD ["/hello", "check"]\n' "$v" >"$work/hc/Dockerfile"
    DOCKER_BUILDKIT=0 dk 0 build -q -t "$reg/hello-hc:$v" "$work/hc" >/dev/null 2>&1
    dk 0 push "$reg/hello-hc:$v" >/dev/null
    for i in 1 2; do dk "$i" pull -q "$reg/hello-hc:$v" >/dev/null; done
  done
  dk 0 swarm init --advertise-addr "${ips[0]}" >/dev/null
  wtoken=$(dk 0 swarm join-token -q worker)
  for i in 1 2; do dk "$i" swarm join --token "$wtoken" --advertise-addr "${ips[$i]}" "${ips[0]}:2377" >/dev/null; done
  wait_until 60 "3 ready nodes" is 3 ready_nodes
  node3=$(dk 2 info --format '{{.Swarm.NodeID}}')
  load_swarm=$(cut -d' ' -f1-3 /proc/loadavg)
  # Slipway's task: 32 MiB (limit and reservation), its port behind the load balancer (the
  # routing mesh here), a health check every second with 3 failures to condemn.
  svc_flags=(--limit-memory 32M --reserve-memory 32M --publish published=8080,target=8080
    --health-interval 1s --health-timeout 1s --health-retries 3)

  # host_loss_swarm NAME: the runs of figure 1 against the service as it is; sets
  # swarm_down_NAME and swarm_repl_NAME (arrays).
  host_loss_swarm() {
    local name=$1 r t0 down done_ s a rest b downs=() repls=()
    for r in $(seq "$runs"); do
      t0=$(now_ms)
      ip link set "${veths[2]}" down
      down=""; done_=""
      while :; do
        [ -z "$down" ] && [ "$(node_state "$node3")" = down ] && down=$(( $(now_ms) - t0 ))
        if [ -z "$done_" ]; then
          s=$(swarm_spread); a=${s%% *}; rest=${s#* }; b=${rest%% *}
          [ $((a + b)) -ge 6 ] && done_=$(( $(now_ms) - t0 ))
        fi
        [ -n "$down" ] && [ -n "$done_" ] && break
        (( $(now_ms) - t0 > 180000 )) && { log "run $r: no replacement within 180 s"; exit 1; }
        sleep 0.1
      done
      downs+=("$down"); repls+=("$done_")
      log "run $r: node 3 Down after $(secs "$down") s; 6 healthy on hosts 1+2 after $(secs "$done_") s"
      # Back: the link up, the node Ready, its stale tasks shut down by Swarm (3/3/0), then
      # scale to 4 (Swarm removes tasks from the busiest nodes first: 2/2/0) and to 6 (the
      # new ones go to the emptiest node: 2/2/2).
      ip link set "${veths[2]}" up
      wait_until 90 "node 3 ready" is ready node_state "$node3"
      wait_until 90 "node 3's stale tasks stopped" is 0 swarm_running_on 2
      dk 0 service scale --detach web=4 >/dev/null
      wait_until 90 "2/2/0" swarm_is "2 2 0" 4
      dk 0 service scale --detach web=6 >/dev/null
      wait_until 90 "2/2/2" swarm_is "2 2 2" 6
    done
    eval "swarm_down_$name=(\"\${downs[@]}\"); swarm_repl_$name=(\"\${repls[@]}\")"
  }

  echo "== 1. host loss, Swarm: 6 tasks spread over 3 nodes, node 3's link cut ($runs runs each)"
  dk 0 service create --detach --quiet --name web --replicas 6 "${svc_flags[@]}" "$reg/hello-hc:v1" >/dev/null
  wait_until 120 "2/2/2" swarm_is "2 2 2" 6
  echo "  -- Swarm defaults (restart delay 5 s, dispatcher heartbeat 5 s)"
  host_loss_swarm def
  summary swarm_down_def "node Down" "${swarm_down_def[@]}"
  summary swarm_repl_def "6 healthy on hosts 1+2" "${swarm_repl_def[@]}"
  echo "  -- --restart-delay 0s (Slipway starts replacements at once)"
  dk 0 service rm web >/dev/null
  wait_until 90 "the service's containers to stop" is 0 swarm_running
  dk 0 service create --detach --quiet --name web --replicas 6 --restart-delay 0s "${svc_flags[@]}" "$reg/hello-hc:v1" >/dev/null
  wait_until 120 "2/2/2" swarm_is "2 2 2" 6
  host_loss_swarm nodelay
  summary swarm_down_nodelay "node Down" "${swarm_down_nodelay[@]}"
  summary swarm_repl_nodelay "6 healthy on hosts 1+2" "${swarm_repl_nodelay[@]}"
  dk 0 service rm web >/dev/null
  wait_until 90 "the service's containers to stop" is 0 swarm_running

  echo "== 2. rolling deploy v1 -> v2 of 12 tasks over 3 nodes, Swarm ($runs runs each)"
  dk 0 service create --detach --quiet --name web --replicas 12 "${svc_flags[@]}" "$reg/hello-hc:v1" >/dev/null
  wait_until 120 "4/4/4" swarm_is "4 4 4" 12
  matched=(--update-parallelism 12 --update-order start-first)
  # update IMAGE FLAGS...: time until every running task is IMAGE and healthy (12) and none of
  # the other version runs; sets upd_ms and upd_done_ms (until UpdateStatus is completed).
  update() {
    local img=$1 want t0; shift
    if [ "$img" = v2 ]; then want="v1 0+0 v2 12+0"; else want="v1 12+0 v2 0+0"; fi
    t0=$(now_ms)
    dk 0 service update --detach --quiet --image "$reg/hello-hc:$img" "$@" web >/dev/null
    until [ "$(swarm_versions)" = "$want" ]; do
      (( $(now_ms) - t0 > 600000 )) && { log "update to $img: not done after 600 s ($(swarm_versions))"; exit 1; }
      sleep 0.1
    done
    upd_ms=$(( $(now_ms) - t0 ))
    wait_until 120 "UpdateStatus completed" is completed update_state
    upd_done_ms=$(( $(now_ms) - t0 ))
  }
  update v2 "${matched[@]}"; update v1 "${matched[@]}"   # warm-up, untimed
  swarm_roll_def=(); swarm_roll_sf1=(); swarm_roll_sf12=()
  swarm_comp_def=(); swarm_comp_sf1=(); swarm_comp_sf12=()
  for r in $(seq "$runs"); do
    for v in def sf1 sf12; do
      case $v in
        def) flags=(--update-parallelism 1 --update-order stop-first) ;;
        sf1) flags=(--update-parallelism 1 --update-order start-first) ;;
        sf12) flags=("${matched[@]}") ;;
      esac
      update v2 "${flags[@]}"
      eval "swarm_roll_$v+=($upd_ms); swarm_comp_$v+=($upd_done_ms)"
      log "run $r: ${flags[*]}: 12 v2 healthy, v1 gone after $(secs "$upd_ms") s (UpdateStatus completed after $(secs "$upd_done_ms") s; $(swarm_spread))"
      update v1 "${matched[@]}"   # back, untimed
    done
  done
  summary swarm_roll_def "parallelism 1, stop-first (defaults)" "${swarm_roll_def[@]}"
  summary swarm_comp_def "  UpdateStatus completed" "${swarm_comp_def[@]}"
  summary swarm_roll_sf1 "parallelism 1, start-first" "${swarm_roll_sf1[@]}"
  summary swarm_comp_sf1 "  UpdateStatus completed" "${swarm_comp_sf1[@]}"
  summary swarm_roll_sf12 "parallelism 12, start-first (matched)" "${swarm_roll_sf12[@]}"
  summary swarm_comp_sf12 "  UpdateStatus completed" "${swarm_comp_sf12[@]}"
  dk 0 service rm web >/dev/null
fi

##### Summary ###############################################################################
echo
echo "== Summary (medians of $runs; ratio = Swarm / Slipway)"
echo "  load average: Slipway phase ${load_slip:-n/a}; agent phase ${load_rss:-n/a}; Swarm phase ${load_swarm:-n/a}; now $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${med_slip_repl:-}" ]; then
  echo "  host loss -> 6 healthy on the other hosts: Slipway $(secs "$med_slip_repl") s (host LOST at $(secs "$med_slip_lost") s; target <= 15 s)"
fi
for v in def nodelay; do
  m="med_swarm_repl_$v"; dn="med_swarm_down_$v"
  [ -n "${!m:-}" ] || continue
  case $v in def) what="defaults" ;; nodelay) what="--restart-delay 0s" ;; esac
  line="  host loss, Swarm $what: $(secs "${!m}") s (node Down at $(secs "${!dn}") s)"
  [ -n "${med_slip_repl:-}" ] && line+="; ratio $(ratio "${!m}" "$med_slip_repl")"
  echo "$line"
done
if [ -n "${med_slip_roll:-}" ]; then
  echo "  rolling deploy 12 tasks v1 -> v2: Slipway $(secs "$med_slip_roll") s (slipway deploy to SUCCEEDED; min 100 % / max 200 %)"
fi
for v in def sf1 sf12; do
  m="med_swarm_roll_$v"; c="med_swarm_comp_$v"
  [ -n "${!m:-}" ] || continue
  case $v in
    def) what="parallelism 1, stop-first (defaults)" ;;
    sf1) what="parallelism 1, start-first" ;;
    sf12) what="parallelism 12, start-first (Slipway's rules)" ;;
  esac
  line="  rolling deploy, Swarm $what: $(secs "${!m}") s (UpdateStatus completed $(secs "${!c}") s)"
  [ -n "${med_slip_roll:-}" ] && line+="; ratio $(ratio "${!m}" "$med_slip_roll")"
  echo "$line"
done
if [ -n "${rss_web:-}" ]; then
  echo "  slipway agent, 50 tasks: RSS ${rss_backend} MB / CPU ${cpu_backend} % (Backend, no probes); RSS ${rss_web} MB / CPU ${cpu_web} % (web, HTTP probes); no task: ${rss_none} MB / ${cpu_none} % (target RSS <= 20 MB)"
fi
