#!/usr/bin/env bash
# Builds the example app as a static binary and packages it FROM scratch into local images:
#   slipway-hello:v1, :v2          the app answering its version
#   slipway-hello:exit             exits at once with code 3
#   slipway-hello:unhealthy        runs, but /healthz answers 503
#   slipway-hello:bad              healthy, but one request in five answers 500
#   slipway-hello:slow             healthy, but every request takes 300 ms more
#   slipway-hello:healthcheck      v1 with a Docker HEALTHCHECK (`/hello check`)
#   slipway-hello:files            v1 running as user 1000:1000 (secret files' owner)
#   slipway-shop-base:v1           examples/shop's server binary, the base of its Dockerfiles
#   slipway-logrouter:v1           examples/logrouter: a stand-in FireLens log router (forward protocol)
# Nothing is pulled from a registry. Safe to run concurrently (serialised by a lock). Honours
# CARGO_TARGET_DIR.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib/target-dir.sh"
slipway_target_dir "$root"
cd "$root"
mkdir -p "$target_dir"
exec 9>"$target_dir/.build-example.lock"
flock 9

target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release --locked -p hello -p shop-server -p logrouter --target "$target"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$target_dir/$target/release/hello" "$ctx/hello"
cp examples/hello/Dockerfile "$ctx/Dockerfile"

build() { # tag, extra Dockerfile lines, build args...
  local tag=$1 extra=$2; shift 2
  cp examples/hello/Dockerfile "$ctx/Dockerfile"
  printf '%s\n' "$extra" >> "$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build --quiet --tag "slipway-hello:$tag" "$@" "$ctx" 2>&1 >/dev/null | { grep -v -e DEPRECATED -e BuildKit -e environment-variable -e "^$" >&2 || true; }
  echo "built slipway-hello:$tag"
}
build v1 ""
build v2 "" --build-arg HELLO_VERSION=v2
build v3 "" --build-arg HELLO_VERSION=v3
build exit 'ENV HELLO_EXIT_AT_START=3' --build-arg HELLO_VERSION=exit
build unhealthy 'ENV HELLO_FAIL_HEALTH=1' --build-arg HELLO_VERSION=unhealthy
build bad 'ENV HELLO_FAIL_PERCENT=20' --build-arg HELLO_VERSION=bad
build slow 'ENV HELLO_LATENCY_MS=300' --build-arg HELLO_VERSION=slow
build files 'USER 1000:1000' --build-arg HELLO_VERSION=files
build healthcheck 'HEALTHCHECK --interval=1s --timeout=2s --retries=3 CMD ["/hello", "check"]' --build-arg HELLO_VERSION=healthcheck

# examples/shop's base image: the shop server alone; its services' Dockerfiles add their data.
shop=$(mktemp -d)
trap 'rm -rf "$ctx" "$shop"' EXIT
cp "$target_dir/$target/release/shop-server" "$shop/shop-server"
printf '%s\n' 'FROM scratch' 'COPY shop-server /shop-server' 'ENV PORT=8080' 'EXPOSE 8080' 'ENTRYPOINT ["/shop-server"]' > "$shop/Dockerfile"
DOCKER_BUILDKIT=0 docker build --quiet --tag slipway-shop-base:v1 "$shop" 2>&1 >/dev/null | { grep -v -e DEPRECATED -e BuildKit -e environment-variable -e "^$" >&2 || true; }
echo "built slipway-shop-base:v1"

# A stand-in FireLens log router: Fluentd's forward protocol on 24224, records on stdout.
router=$(mktemp -d)
trap 'rm -rf "$ctx" "$shop" "$router"' EXIT
cp "$target_dir/$target/release/logrouter" "$router/logrouter"
printf '%s\n' 'FROM scratch' 'COPY logrouter /logrouter' 'EXPOSE 24224' 'ENTRYPOINT ["/logrouter"]' > "$router/Dockerfile"
DOCKER_BUILDKIT=0 docker build --quiet --tag slipway-logrouter:v1 "$router" 2>&1 >/dev/null | { grep -v -e DEPRECATED -e BuildKit -e environment-variable -e "^$" >&2 || true; }
echo "built slipway-logrouter:v1"
