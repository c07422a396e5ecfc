#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 25 s each; FUZZ_SECONDS overrides), with
# cargo-fuzz + libFuzzer on the stable toolchain (`-s none`: no sanitizer, which would need
# nightly flags; safe Rust gets its checks from debug assertions and overflow checks, which
# cargo-fuzz turns on). New inputs go to a scratch corpus, so the committed one stays as is;
# a crash fails the script and its input is kept under $ARTIFACTS_DIR/fuzz/.
#   bash test/fuzz/run.sh                    # every target, 25 s each
#   FUZZ_SECONDS=600 bash test/fuzz/run.sh query_params   # one target, longer
#   FUZZ_SEED=0 bash test/fuzz/run.sh        # a random seed (the default 1 keeps CI runs repeatable)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
SECONDS_EACH="${FUZZ_SECONDS:-25}"
ARTIFACTS="${ARTIFACTS_DIR:-$ROOT/test-artifacts}/fuzz"
# Instrumented builds must not share a directory with normal ones (different RUSTFLAGS).
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$ROOT/target/fuzz}"
mkdir -p "$ARTIFACTS"

if ! cargo fuzz --version >/dev/null 2>&1; then cargo install cargo-fuzz --locked; fi
# libfuzzer-sys compiles libFuzzer's C++ sources.
if ! command -v c++ >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq g++ >/dev/null
fi

targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cargo fuzz list --fuzz-dir test/fuzz)
fi
cargo fuzz build --fuzz-dir test/fuzz -s none

for t in "${targets[@]}"; do
  scratch="$(mktemp -d)"
  printf '\n--- fuzz %s (%s s)\n' "$t" "$SECONDS_EACH"
  cargo fuzz run --fuzz-dir test/fuzz -s none "$t" "$scratch" "test/fuzz/corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -seed="${FUZZ_SEED:-1}" -max_len=65536 -rss_limit_mb=2048 \
    -artifact_prefix="$ARTIFACTS/$t-" -print_final_stats=1 2>"$ARTIFACTS/$t.log" ||
    { tail -n 40 "$ARTIFACTS/$t.log"; rm -rf "$scratch"; echo "fuzz target $t failed"; exit 1; }
  grep -E 'stat::number_of_executed_units|Done [0-9]+ runs' "$ARTIFACTS/$t.log" | tail -n 2
  rm -rf "$scratch"
done
echo "fuzz: ${#targets[@]} targets ran ${SECONDS_EACH} s each without a crash"
