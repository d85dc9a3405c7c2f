#!/usr/bin/env bash
# Every test of vngate, as CI runs it: formatting, clippy, unit/property/fixture tests, the fuzz corpora
# replayed (inside cargo test), the no_std build of vn-core for a Cortex-M target, a short libFuzzer run of
# each fuzz target where cargo-fuzz is installed, and the end-to-end tests in network namespaces (root).
# Ends with one line "<n> passed, <m> failed" and exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "ci/test.sh needs root (network namespaces): run it with sudo" >&2; exit 2; }
ci/setup.sh

pass=0; fail=0; failed=()
step() {
  local name=$1; shift
  echo "=== $name: $*"
  local t0=$SECONDS
  if "$@"; then pass=$((pass + 1)); echo "PASS $name ($((SECONDS - t0)) s)"
  else fail=$((fail + 1)); failed+=("$name"); echo "FAIL $name ($((SECONDS - t0)) s)"; fi
}

step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
step clippy-nostd cargo clippy -p vn-core --no-default-features -- -D warnings
step unit-tests cargo test --workspace
step no_std-thumbv7em cargo build -p vn-core --no-default-features --target thumbv7em-none-eabihf
step build-daemon cargo build -p vngate -p hostctl -p vn-citools

if cargo +nightly fuzz --version >/dev/null 2>&1; then
  for t in $(cargo +nightly fuzz list --fuzz-dir core-nostd/fuzz 2>/dev/null); do
    # Run on a scratch copy of the corpus so CI does not grow the committed one.
    scratch=$(mktemp -d)
    cp core-nostd/fuzz/corpus/"$t"/* "$scratch"/ 2>/dev/null || true
    step "fuzz-$t" cargo +nightly fuzz run --fuzz-dir core-nostd/fuzz "$t" "$scratch" -- \
      -max_total_time="${FUZZ_SECONDS:-20}" -rss_limit_mb=1024
    rm -rf "$scratch"
  done
else
  echo "=== fuzz: cargo-fuzz not installed; corpora were replayed by the unit tests (cargo install --locked cargo-fuzz to run it)"
fi

for t in ci/e2e/*.sh; do
  [ -e "$t" ] || continue
  step "e2e-$(basename "$t" .sh)" timeout 900 bash "$t"
done

[ ${#failed[@]} -eq 0 ] || echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
