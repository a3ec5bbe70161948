#!/usr/bin/env bash
# Registry benchmarks, Slipway's built-in registry side by side with Debian's docker-registry
# 2.8.2 (CNCF distribution) in one run, same machine, same disk, loopback (run by hand).
#
#  1. Monolithic upload of a 256 MiB random blob (POST, then PUT ?digest= with the body).
#  2. GET of that blob.
#  3. `docker push` and 4. `docker pull` of a 5-layer ~200 MB image built FROM scratch with
#     random-data layers (pull after removing the image from the engine; each side is pulled
#     twice per run, in the order A B B A, and the run's figure is the mean); with the push,
#     the CPU time (user + system) the registry process spent on it.
#  5. Manifest GET latency p50/p99 with 32 concurrent clients (hey).
#  6. Slipway's peak RSS during a 1 GiB upload (sampled every 50 ms), and distribution's.
#
# Usage: bench/registry.sh [RUNS]  (default 3). Prints medians and ratios (reference/slipway
# for times: > 1.0 means Slipway is faster), the paired view (median of per-run ratios, runs
# won) and every run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${1:-3}
for c in docker-registry hey curl docker; do
  command -v "$c" >/dev/null || { echo "error: $c is needed (apt-get install docker-registry hey curl)" >&2; exit 1; }
done

cargo build --quiet --release --locked -p slipway
bin="$root/target/release/slipway"
work=$(mktemp -d /var/tmp/slipway-regbench.XXXXXX)
export DOCKER_CONFIG="$work/docker-config"
mkdir -p "$DOCKER_CONFIG"
pids=()
image_id=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$image_id" ]; then docker rmi -f "$image_id" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
now_ms() { date +%s%3N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- the two registries ---
"$bin" server --data-dir "$work/slipway" --api-addr 127.0.0.1:0 --no-ingress \
  --registry-gc-interval 0s --registry-lifecycle-interval 0s >"$work/slipway.log" 2>&1 &
slipway_pid=$!; pids+=("$slipway_pid")
for _ in $(seq 200); do [ -s "$work/slipway/api.addr" ] && break; sleep 0.1; done
slipway_url=$(cat "$work/slipway/api.addr")
export SLIPWAY_SERVER="$slipway_url" SLIPWAY_TOKEN
SLIPWAY_TOKEN=$(cat "$work/slipway/admin.token")
password=$("$bin" registry password)
slipway_host=${slipway_url#http://}

ref_port=$(free_port)
mkdir -p "$work/ref"
cat >"$work/ref.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/ref}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$ref_port}
YML
docker-registry serve "$work/ref.yml" >"$work/ref.log" 2>&1 &
ref_pid=$!; pids+=("$ref_pid")
ref_host="127.0.0.1:$ref_port"
for _ in $(seq 100); do curl -fsS "http://$ref_host/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
echo "$password" | docker login "$slipway_host" -u slipway --password-stdin >/dev/null

auth() { # host -> curl auth args
  if [ "$1" = "$slipway_host" ]; then echo "-u slipway:$password"; fi
}

# --- 1, 2: monolithic upload and GET of a 256 MiB blob ---
head -c 256M /dev/urandom >"$work/blob256"
d256="sha256:$(sha256sum "$work/blob256" | cut -d' ' -f1)"
upload() { # host repo file digest -> ms
  local host=$1 repo=$2 file=$3 digest=$4 loc t0 t1
  t0=$(now_ms)
  # shellcheck disable=SC2046
  loc=$(curl -fsS $(auth "$host") -X POST -D - -o /dev/null "http://$host/v2/$repo/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
  case $loc in http*) ;; *) loc="http://$host$loc";; esac
  case $loc in *\?*) loc="$loc&digest=$digest";; *) loc="$loc?digest=$digest";; esac
  # shellcheck disable=SC2046
  curl -fsS $(auth "$host") -X PUT -H "Content-Type: application/octet-stream" -T "$file" -o /dev/null "$loc"
  t1=$(now_ms); echo $((t1 - t0))
}
get_blob() { # host repo digest -> ms
  local t0 t1; t0=$(now_ms)
  # shellcheck disable=SC2046
  curl -fsS $(auth "$1") -o /dev/null "http://$1/v2/$2/blobs/$3"
  t1=$(now_ms); echo $((t1 - t0))
}
# Who goes first alternates between runs, so neither side always runs right after the
# blob (or image) was made, while the kernel is still writing it back.
order() { if [ $(($1 % 2)) = 1 ]; then echo slipway ref; else echo ref slipway; fi; }
declare -A up get push pull pushcpu
# Before each timed docker push or pull: the previous one's writeback (a pull extracts
# ~200 MB into the engine's storage) is flushed first, so it does not land on the next one.
settle() { sync; sleep 1; }
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$1/stat"; }
for i in $(seq "$runs"); do
  for who in $(order "$i"); do
    host=$([ $who = slipway ] && echo "$slipway_host" || echo "$ref_host")
    up[$who]+="$(upload "$host" "bench/blob$i" "$work/blob256" "$d256") "
    get[$who]+="$(get_blob "$host" "bench/blob$i" "$d256") "
  done
done

# --- 3, 4: docker push / pull of a 5-layer ~200 MB image ---
# Each run builds an image with new random layers, so every push uploads every layer (no
# cross-repository mount, no "layer exists"), and every pull downloads them.
ctx="$work/ctx"; mkdir -p "$ctx"
build_image() { # run -> image id
  printf 'FROM scratch\n' >"$ctx/Dockerfile"
  for l in 1 2 3 4 5; do head -c 40M /dev/urandom >"$ctx/layer$l"; printf 'COPY layer%s /layer%s\n' "$l" "$l" >>"$ctx/Dockerfile"; done
  DOCKER_BUILDKIT=0 docker build -q -t "slipway-regbench:run$1" "$ctx" >/dev/null 2>&1
  docker image inspect -f '{{.Id}}' "slipway-regbench:run$1"
}
for i in $(seq "$runs"); do
  image_id=$(build_image "$i")
  for who in $(order "$i"); do
    host=$([ $who = slipway ] && echo "$slipway_host" || echo "$ref_host")
    pid=$([ $who = slipway ] && echo "$slipway_pid" || echo "$ref_pid")
    docker tag "$image_id" "$host/bench/img:run$i"
    settle
    c0=$(cpu_ms "$pid")
    t0=$(now_ms); docker push -q "$host/bench/img:run$i" >/dev/null; t1=$(now_ms)
    c1=$(cpu_ms "$pid")
    push[$who]+="$((t1 - t0)) "
    pushcpu[$who]+="$((c1 - c0)) "
  done
  # Pulls go A B B A (A alternates between runs): whichever registry is pulled first in a
  # run is also pulled last, so an advantage of going first (or second) cancels within the
  # run. A run's pull time is the mean of its two pulls.
  declare -A pulled=([slipway]=0 [ref]=0)
  for who in $(order "$i") $(order "$i" | awk '{print $2, $1}'); do
    host=$([ $who = slipway ] && echo "$slipway_host" || echo "$ref_host")
    docker rmi -f "$image_id" >/dev/null 2>&1 || true
    settle
    t0=$(now_ms); docker pull -q "$host/bench/img:run$i" >/dev/null; t1=$(now_ms)
    pulled[$who]=$((pulled[$who] + t1 - t0))
  done
  for who in slipway ref; do pull[$who]+="$((pulled[$who] / 2)) "; done
  docker rmi -f "$image_id" >/dev/null 2>&1 || true
done
image_id=""

# --- 5: manifest GET p50/p99, 32 concurrent clients ---
declare -A p50 p99
for who in slipway ref; do
  host=$([ $who = slipway ] && echo "$slipway_host" || echo "$ref_host")
  hargs=(-n 6400 -c 32 -H "Accept: application/vnd.docker.distribution.manifest.v2+json")
  [ $who = slipway ] && hargs+=(-H "Authorization: Basic $(printf 'slipway:%s' "$password" | base64 -w0)")
  hey "${hargs[@]}" "http://$host/v2/bench/img/manifests/run1" >"$work/hey.$who"
  grep -q '\[200\]' "$work/hey.$who" || { echo "manifest GET failed for $who:"; cat "$work/hey.$who"; exit 1; }
  p50[$who]=$(awk '/50% in/{printf "%.2f", $3*1000}' "$work/hey.$who")
  p99[$who]=$(awk '/99% in/{printf "%.2f", $3*1000}' "$work/hey.$who")
done

# --- 6: peak RSS during a 1 GiB upload ---
head -c 1G /dev/urandom >"$work/blob1g"
d1g="sha256:$(sha256sum "$work/blob1g" | cut -d' ' -f1)"
declare -A rss
for who in slipway ref; do
  host=$([ $who = slipway ] && echo "$slipway_host" || echo "$ref_host")
  pid=$([ $who = slipway ] && echo "$slipway_pid" || echo "$ref_pid")
  upload "$host" bench/big "$work/blob1g" "$d1g" >/dev/null &
  up_pid=$!
  peak=0
  while kill -0 "$up_pid" 2>/dev/null; do
    r=$(awk '/VmRSS/{print $2}' "/proc/$pid/status"); [ "$r" -gt "$peak" ] && peak=$r
    sleep 0.05
  done
  wait "$up_pid"
  rss[$who]=$((peak / 1024))
done
rm -f "$work/blob1g" "$work/blob256"

ratio() { awk -v r="$1" -v s="$2" 'BEGIN{ if (s > 0) printf "%.2f", r/s; else print "-" }'; }
row() { # name unit slipway ref
  printf '| %s | %s %s | %s %s | %s× |\n' "$1" "$3" "$2" "$4" "$2" "$(ratio "$4" "$3")"
}
echo
echo "Registry benchmark: $runs run(s), medians; ratio = reference / Slipway (> 1 means Slipway is faster or smaller)"
echo "| measure | Slipway | docker-registry 2.8.2 | ratio |"
echo "| --- | --- | --- | --- |"
row "monolithic upload, 256 MiB blob" ms "$(echo "${up[slipway]}" | tr ' ' '\n' | grep . | median)" "$(echo "${up[ref]}" | tr ' ' '\n' | grep . | median)"
row "blob GET, 256 MiB" ms "$(echo "${get[slipway]}" | tr ' ' '\n' | grep . | median)" "$(echo "${get[ref]}" | tr ' ' '\n' | grep . | median)"
row "docker push, 5 layers ~200 MB" ms "$(echo "${push[slipway]}" | tr ' ' '\n' | grep . | median)" "$(echo "${push[ref]}" | tr ' ' '\n' | grep . | median)"
row "registry CPU during that push" ms "$(echo "${pushcpu[slipway]}" | tr ' ' '\n' | grep . | median)" "$(echo "${pushcpu[ref]}" | tr ' ' '\n' | grep . | median)"
row "docker pull, 5 layers ~200 MB" ms "$(echo "${pull[slipway]}" | tr ' ' '\n' | grep . | median)" "$(echo "${pull[ref]}" | tr ' ' '\n' | grep . | median)"
row "manifest GET p50, 32 clients" ms "${p50[slipway]}" "${p50[ref]}"
row "manifest GET p99, 32 clients" ms "${p99[slipway]}" "${p99[ref]}"
row "peak RSS during a 1 GiB upload" MiB "${rss[slipway]}" "${rss[ref]}"
# Each run measures both sides back to back, so a run is a pair: the median of the per-run
# ratios and how many runs Slipway won are the paired view, steadier than a ratio of medians
# when the engine's own time swings between runs.
paired() { # label key
  local -n a=$2
  local pairs
  pairs=$(paste -d' ' <(echo "${a[slipway]}" | tr ' ' '\n' | grep .) <(echo "${a[ref]}" | tr ' ' '\n' | grep .))
  printf '| %s | %.2f× | %s of %s |\n' "$1" \
    "$(echo "$pairs" | awk '{ printf "%.4f\n", $2 / $1 }' | median)" \
    "$(echo "$pairs" | awk '$1 < $2' | wc -l)" "$(echo "$pairs" | wc -l)"
}
echo
echo "Paired view (ratio = reference / Slipway within each run):"
echo "| measure | median of per-run ratios | runs Slipway was faster |"
echo "| --- | --- | --- |"
paired "monolithic upload, 256 MiB blob" up
paired "blob GET, 256 MiB" get
paired "docker push, 5 layers ~200 MB" push
paired "docker pull, 5 layers ~200 MB" pull
echo
echo "Every run (ms, in run order; who went first alternates, Slipway first in odd runs; pull is the mean of the run's two pulls):"
for m in up get push pushcpu pull; do
  declare -n a=$m
  printf '  %-8s Slipway %s| reference %s\n' "$m" "${a[slipway]}" "${a[ref]}"
done
