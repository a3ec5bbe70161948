#!/usr/bin/env bash
# Installs the AWS CLI (v1, from PyPI) into target/awscli for the AWS-compatibility tests
# (crates/slipway/tests/it/aws.rs finds it there). Idempotent; needs python3 with venv, and
# jq for the seeds' scripts.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p target
exec 9>target/.install-awscli.lock
flock 9
if target/awscli/bin/aws --version >/dev/null 2>&1; then
  exit 0
fi
rm -rf target/awscli
python3 -m venv target/awscli
target/awscli/bin/pip install --quiet --disable-pip-version-check awscli
target/awscli/bin/aws --version
