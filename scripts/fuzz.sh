#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (FUZZING.md) one after another, SECONDS each, and prints a
# table of executions, executions per second, coverage and findings per target.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]     (default 60 s, every target)
#
# Installs cargo-fuzz (pinned) on first use; needs the nightly toolchain (`cargo +nightly`).
# Seeds come from real shards on first use: scripts/make-test-videos.sh, then `cvrl-shard
# build` in five settings (data/fuzz-seeds/sets), then the fuzz crate's `seeds` binary writes
# fuzz/corpus/<target>/. A corpus that exists is kept and grows from run to run; delete
# fuzz/corpus to reseed. Crashes land in fuzz/artifacts/<target>/; the script goes on with
# the next target and exits 1 at the end if any target found one.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS=(shard_file chunk_decode interleaved_decode codec_roundtrip index_read set_open)
SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")

say() { printf '[fuzz] %s\n' "$*" >&2; }

cargo +nightly --version >/dev/null 2>&1 || { say "needs the nightly toolchain (rustup toolchain install nightly)"; exit 1; }
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  say "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

SEEDS=data/fuzz-seeds
seed() {
  say "seeding fuzz/corpus from shards of $SEEDS/videos"
  bash scripts/make-test-videos.sh "$SEEDS" >/dev/null
  cargo build -q -p cvrl-tools --bin cvrl-shard
  local shard=(./target/debug/cvrl-shard build "$SEEDS/videos" --shard-size 1 --force -j 2)
  # One video per shard keeps whole shard files small enough to be seeds themselves.
  "${shard[@]}" "$SEEDS/sets/adaptive" --short-side 64 >/dev/null
  "${shard[@]}" "$SEEDS/sets/raw" --short-side 64 --predictor raw >/dev/null
  "${shard[@]}" "$SEEDS/sets/rgb" --short-side 64 --pixel-format rgb24 >/dev/null
  "${shard[@]}" "$SEEDS/sets/tiny" --short-side 16 --chunk-frames 4 >/dev/null
  "${shard[@]}" "$SEEDS/sets/interleaved" --short-side 32 --chunk-frames 4 --predictor interleaved >/dev/null
  cargo run -q --release --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/corpus "$SEEDS"/sets/*
}
missing=0
for t in "${TARGETS[@]}"; do [ -d "fuzz/corpus/$t" ] || missing=1; done
[ $missing = 0 ] || seed

# -s none: the unsafe code on these paths is zstd's C (not instrumented by cargo fuzz) and
# the mmap; AddressSanitizer would halve the executions and see nothing more. Debug
# assertions and overflow checks stay on (cargo fuzz's default).
mkdir -p fuzz/logs
found=0
rows=()
for t in "${TARGETS[@]}"; do
  log=fuzz/logs/$t.log
  say "$t for $SECS s (log $log)"
  status=ok
  if ! cargo +nightly fuzz run -s none "$t" -- -max_total_time="$SECS" -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1; then
    status="CRASH (fuzz/artifacts/$t/)"
    found=1
  fi
  stat() { grep -o "stat::$1: *[0-9]*" "$log" | grep -o '[0-9]*$' | tail -1; }
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  corp=$(grep -o 'corp: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  rows+=("$(printf '| %s | %s | %s | %s | %s | %s | %s | %s |' "$t" "$SECS" \
    "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" "$cov" "$ft" "$corp" "$status")")
done

echo "| target | seconds | executions | exec/s | cov (edges) | features | corpus | result |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit $found
