#!/usr/bin/env bash
# Fuzzing on stable Rust (run by hand; CI runs the same targets with a few thousand cases).
#
# Every proptest target named `fuzz_*` of the manifest and the Copilot workspace translator
# (slipway-core), SigV4 (slipway-aws), registry names/references/digests/routes
# (slipway-registry) and the ingress' HTTP/1 fast path (slipway-ingress), one at a time, with
# CASES cases each (default 1 000 000), in a release build with overflow checks and debug
# assertions on (an arithmetic overflow is a panic in debug builds, so the fuzzer must see it;
# plain release builds wrap silently).
#
# Usage: bench/fuzz.sh [CASES] [FILTER]   e.g. bench/fuzz.sh 1000000, bench/fuzz.sh 20000 sigv4
# Prints per target: cases, seconds, cases/s and the result; a failure prints proptest's
# minimal failing input and the script goes on with the next target (exit status 1 at the end).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cases=${1:-1000000}
filter=${2:-}
crates=(slipway-core slipway-aws slipway-registry slipway-ingress)

export CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
log=$(mktemp -d)
failed=0

printf '%-18s %-62s %10s %9s %9s  %s\n' crate target cases seconds cases/s result
for c in "${crates[@]}"; do
  cargo test --quiet --release --locked -p "$c" --tests --no-run 2>"$log/build.err" ||
    { cat "$log/build.err"; exit 2; }
  mapfile -t targets < <(cargo test --quiet --release --locked -p "$c" --tests fuzz_ -- --list --format terse 2>/dev/null |
    sed -n 's/: test$//p' | grep -- "$filter" | sort -u)
  for t in "${targets[@]}"; do
    start=$(date +%s.%N)
    if SLIPWAY_FUZZ_CASES=$cases cargo test --quiet --release --locked -p "$c" --tests "$t" -- --exact --test-threads 1 \
      >"$log/out" 2>&1; then
      result=ok
    else
      result=FAILED
      failed=1
    fi
    end=$(date +%s.%N)
    secs=$(echo "$end - $start" | bc)
    rate=$(echo "$cases / $secs" | bc)
    printf '%-18s %-62s %10s %9.1f %9s  %s\n' "$c" "$t" "$cases" "$secs" "$rate" "$result"
    if [ "$result" = FAILED ]; then
      kept=$(mktemp --suffix=".fuzz-$t.log")
      cp "$log/out" "$kept"
      grep -E -m1 -A3 'Test failed' "$kept"
      echo "  the minimal failing input: $kept"
    fi
  done
done
rm -rf "$log"
exit $failed
