#!/usr/bin/env bash
# Runs Slipway's whole test suite: formatting, lints, unit and property tests, and the
# integration tests against the real Docker engine (required here: they fail, not skip,
# when the engine is missing).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! docker info >/dev/null 2>&1; then
  echo "error: the Docker engine is not reachable; the integration tests need it (start dockerd, check /var/run/docker.sock)" >&2
  exit 1
fi
export SLIPWAY_REQUIRE_DOCKER=1

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "==> example app images"
scripts/build-example.sh
echo "==> aws CLI (PyPI, into target/awscli) for the AWS-compatibility tests"
scripts/install-awscli.sh
echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --no-fail-fast
else
  cargo test --locked --workspace --no-fail-fast
fi
