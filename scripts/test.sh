#!/usr/bin/env bash
# Runs Slipway's whole test suite: formatting, lints, unit and property tests (the store
# suite on SQLite and on a throwaway PostgreSQL cluster), and the integration tests against
# the real Docker engine (required here: they fail, not skip, when the engine or PostgreSQL
# is missing).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! docker info >/dev/null 2>&1; then
  echo "error: the Docker engine is not reachable; the integration tests need it (start dockerd, check /var/run/docker.sock)" >&2
  exit 1
fi
export SLIPWAY_REQUIRE_DOCKER=1

# The tests' real peers, from Debian's packages when missing (needs root or passwordless apt):
# command:package. openssl (s_client) shows which certificate the ingress' TLS listener serves;
# skopeo, docker-registry (distribution 2.8.2) and umoci are the registry tests' real peers;
# docker-compose (v1) is what `slipway watch` drives; jq and python3 (with venv, for the aws
# CLI from PyPI) are the AWS tests'; a static busybox is the app of the task-failure tests
# (it/failures.rs), in an image built FROM scratch. chromium and its chromedriver are the
# console tests' browser (it/console.rs, WebDriver). promtool (Debian's prometheus) lints the
# control plane's /metrics and the golden file; Debian's python3-prometheus-client (the
# official client's text-format parser, for Debian's /usr/bin/python3) reads it (it/metrics.rs).
need=()
for pair in busybox:busybox-static curl:curl openssl:openssl flock:util-linux skopeo:skopeo docker-registry:docker-registry umoci:umoci docker-compose:docker-compose jq:jq python3:python3 chromium:chromium chromedriver:chromium-driver promtool:prometheus; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
/usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1 || need+=(python3-prometheus-client)
# PostgreSQL (Debian's server package): the store suite and the several-servers tests run on
# a throwaway cluster started below, never on a system service.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi


echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "==> example app images"
scripts/build-example.sh
echo "==> aws CLI (PyPI, into target/awscli) for the AWS-compatibility tests"
scripts/install-awscli.sh
echo "==> a throwaway PostgreSQL cluster for the store suite and the several-servers tests"
pgdir=$(mktemp -d /tmp/slipway-pg.XXXXXX)
stop_pg() { scripts/pg.sh stop "$pgdir"; rm -rf "$pgdir"; }
trap stop_pg EXIT
SLIPWAY_TEST_POSTGRES=$(scripts/pg.sh start "$pgdir")
export SLIPWAY_TEST_POSTGRES SLIPWAY_REQUIRE_POSTGRES=1
echo "    $SLIPWAY_TEST_POSTGRES"
echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --no-fail-fast
else
  cargo test --locked --workspace --no-fail-fast
fi
