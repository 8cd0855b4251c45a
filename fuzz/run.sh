#!/usr/bin/env bash
# Builds every cargo-fuzz target (nightly) and runs each for a bounded time over the committed
# seed corpus. Fails on the first crash, panic, timeout or out-of-memory, leaving the input
# under fuzz/artifacts/<target>/ and printing its path.
#
#   fuzz/run.sh                      # every target, FUZZ_SECONDS (default 10) each
#   fuzz/run.sh canon jwt            # only these
#   FUZZ_SECONDS=300 fuzz/run.sh yaml
#
# Environment: FUZZ_SECONDS (per target), FUZZ_TIMEOUT (seconds one input may take before it
# counts as a hang, default 10), FUZZ_RSS_MB (default 2048). Idempotent: installs cargo-fuzz
# (from crates.io, --locked) when it is missing, and fails loudly when it cannot.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-10}
timeout=${FUZZ_TIMEOUT:-10}
rss=${FUZZ_RSS_MB:-2048}
# Our own target directory: the fuzz build's flags (sancov, debug assertions) differ from the
# workspace's, so sharing its target dir would rebuild both every time.
export CARGO_TARGET_DIR="$PWD/target"

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz: the nightly toolchain is required (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked || { echo "fuzz: cannot install cargo-fuzz" >&2; exit 1; }
fi

all=$(cargo +nightly fuzz list)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets <<<"$all"

# No sanitizer: the rules crate forbids `unsafe`; what we look for are panics (overflow checks
# are on: debug assertions), wrong answers (each target's assertions), hangs and memory blow-ups.
echo "== fuzz: build"
start=$(date +%s)
cargo +nightly fuzz build --sanitizer none
echo "fuzz: build took $(( $(date +%s) - start ))s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$all" || { echo "fuzz: no target $t" >&2; exit 1; }
  [ -d "corpus/$t" ] || { echo "fuzz: no committed corpus for $t (fuzz/corpus/$t)" >&2; exit 1; }
  echo "== fuzz: $t for ${seconds}s"
  mkdir -p "$work/$t" "artifacts/$t"
  # New inputs go to the scratch directory (first), the committed corpus is only read.
  if ! cargo +nightly fuzz run --sanitizer none "$t" "$work/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb="$rss" -print_final_stats=1 \
      -artifact_prefix="artifacts/$t/" >"$work/$t.log" 2>&1; then
    tail -n 60 "$work/$t.log" >&2
    echo "fuzz: $t FAILED; the input is under fuzz/artifacts/$t/ (reproduce: cargo +nightly fuzz run -s none $t <file>)" >&2
    exit 1
  fi
  grep -E '^(stat::number_of_executed_units|stat::new_units_added)|^Done ' "$work/$t.log" || true
done
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no crash"
