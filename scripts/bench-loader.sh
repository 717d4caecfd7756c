#!/usr/bin/env bash
# Loader benchmark (`just bench-loader`): clip pairs per second of cvrl's training loader
# reading shards, against on-the-fly decoding of the source mp4s by decord, PyAV and
# torchcodec, and against the floor (plain zstd decompression of exactly the frames the
# clips need). One run, one machine, one clip spec (2 clips x 16 frames at stride 2, 224x224
# crop), the same source videos. Prints one markdown table (also written to
# data/bench-loader/report.md) and one verdict line per target:
#   - the loader >= 20x the best peer;   - the loader within 1.5x of the floor.
#
# Sources: 12 H.264 mp4s made here with ffmpeg (3 classes x 4: testsrc2, mandelbrot,
# testsrc2 + temporal noise; 456x256, 25 fps, 10 s, libx264 crf 23, keyframe every 2 s),
# stored at the shards' resolution so that every reader touches the same pixels. Sharded with
# the release `cvrl-shard build` at its defaults (short side 256: no rescale).
#
# The Rust side is trainer/examples/bench_loader.rs, the peers scripts/bench_loader_peers.py
# (installed by scripts/setup-bench.sh), the tables scripts/bench_loader_report.py. The two alternate in BENCH_ROUNDS rounds and the
# best of each row is kept, so that both see the same load from other processes.
# A second table compares shard settings: the same videos sharded with each
# `--predictor P --chunk-frames N` of BENCH_VARIANTS, the loader (full augmentation, 1 and
# all workers) and the 1-thread read breakdown on each, with the shards' size on disk.
# Knobs (environment): BENCH_ROUNDS (default 2), BENCH_PAIRS (pairs per loader/floor
# measurement, default 96), BENCH_PEER_PAIRS (per peer measurement, default 48),
# BENCH_WORKERS (the "all cores" worker count, default nproc), BENCH_VARIANTS (default
# "adaptive:8 adaptive:16 adaptive:4 interleaved:16 raw:8 plain:8 plain:16"; empty for none), BENCH_PEERS (0 skips
# the Python peers, whose rows then read "not measured"; BENCH_TORCH=0 skips only the cvrl
# Python package's rows, which need a release build of the wheel and run on the default
# shards and on each plain variant, beside the Rust crop + flip row), BENCH_BASELINE_BIN (an older build
# of examples/bench_loader, e.g. a copy made before a codec change: it reads the default
# shards too, as the row "baseline build (BENCH_BASELINE_LABEL)", so a before/after lands in
# one run). About 10 minutes on 2 shared cores after the build (BENCHMARKS.md, Loader).
set -euo pipefail
cd "$(dirname "$0")/.."

B=data/bench-loader
ROUNDS=${BENCH_ROUNDS:-2}
PAIRS=${BENCH_PAIRS:-96}
PEER_PAIRS=${BENCH_PEER_PAIRS:-48}
ALL=${BENCH_WORKERS:-$(nproc)}
read -r -a VARIANTS <<<"${BENCH_VARIANTS-adaptive:8 adaptive:16 adaptive:4 interleaved:16 raw:8 plain:8 plain:16}"
PEERS=${BENCH_PEERS:-1}
BASELINE=${BENCH_BASELINE_BIN:-}
[ -z "$BASELINE" ] || [ -x "$BASELINE" ] || { echo "bench-loader: error: BENCH_BASELINE_BIN=$BASELINE is not executable" >&2; exit 1; }
PY=.venv/bin/python
SHARD=target/release/cvrl-shard
BENCH=target/release/examples/bench_loader

log() { echo "bench-loader: [$(($(date +%s) - STARTED))s] $*" >&2; }
die() { echo "bench-loader: error: $*" >&2; exit 1; }
command -v ffmpeg >/dev/null || die "ffmpeg not found (bash scripts/setup.sh installs it)"
[ -x "$PY" ] || die "$PY missing (bash scripts/setup.sh makes the venv)"
STARTED=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

[ "$PEERS" = 0 ] || bash scripts/setup-bench.sh
log "building (release): cvrl-shard, examples/bench_loader"
cargo build --release --quiet -p cvrl-tools --bin cvrl-shard
cargo build --release --quiet -p cvrl-trainer --example bench_loader

# --- Sources: 12 videos in 3 class folders, cached (stamp = this generation's recipe) -------
V=$B/videos
X264=(-c:v libx264 -preset medium -crf 23 -g 50 -pix_fmt yuv420p -threads 1 -an
  -fflags +bitexact -flags:v +bitexact -map_metadata -1)
RECIPE="456x256 r25 10s ${X264[*]} v1"
if [ "$(cat "$V/.done" 2>/dev/null)" != "$RECIPE" ]; then
  log "making 12 source videos (ffmpeg)"
  rm -rf "$V"
  mkdir -p "$V/testsrc2" "$V/mandelbrot" "$V/noisy"
  ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }
  for i in 0 1 2 3; do
    ff -f lavfi -i "testsrc2=s=456x256:r=25:d=10" -vf "hue=h=$((i * 90))" "${X264[@]}" \
      "$V/testsrc2/testsrc2_$i.mp4" &
    ff -f lavfi -i "mandelbrot=s=456x256:r=25:start_x=-0.74$i:start_y=0.1$i:start_scale=3:end_scale=0.02" \
      -t 10 "${X264[@]}" "$V/mandelbrot/mandelbrot_$i.mp4" &
    wait
    ff -f lavfi -i "testsrc2=s=456x256:r=25:d=10" -vf "hue=h=$((i * 90 + 45)),noise=alls=12:allf=t+u:all_seed=$i" \
      "${X264[@]}" "$V/noisy/noisy_$i.mp4"
  done
  echo "$RECIPE" >"$V/.done"
fi
mapfile -t VIDEOS < <(find "$V" -name '*.mp4' | sort)
SRC_BYTES=$(cat "${VIDEOS[@]}" | wc -c)

# --- Shards (defaults), and a 1-video set for the index's fixed cost ------------------------
log "sharding ${#VIDEOS[@]} videos (cvrl-shard build, defaults)"
rm -rf "$B/shards" "$B/one" "$B/shards-one"
T0=$(date +%s%N)
"$SHARD" build "$V" "$B/shards" --force --quiet >/dev/null
SHARD_MS=$((($(date +%s%N) - T0) / 1000000))
mkdir -p "$B/one/testsrc2"
ln "$V/testsrc2/testsrc2_0.mp4" "$B/one/testsrc2/"
"$SHARD" build "$B/one" "$B/shards-one" --force --quiet >/dev/null
INDEX_ONE=$(stat -c %s "$B/shards-one/index.parquet")
# The same videos at other settings (a cheap rebuild: sharding is seconds per set).
for v in "${VARIANTS[@]}"; do
  pred=${v%%:*} chunk=${v##*:}
  log "sharding with --predictor $pred --chunk-frames $chunk"
  rm -rf "$B/shards-$pred-c$chunk"
  "$SHARD" build "$V" "$B/shards-$pred-c$chunk" --predictor "$pred" --chunk-frames "$chunk" \
    --force --quiet >/dev/null
done

# --- Rounds: the Rust rows, then the peers ---------------------------------------------------
R=$B/results
rm -rf "$R"
mkdir -p "$R"
for round in $(seq 1 "$ROUNDS"); do
  log "round $round/$ROUNDS: loader and floor ($PAIRS pairs per row, 1 and $ALL workers)"
  "$BENCH" "$B/shards" --pairs "$PAIRS" --workers "$ALL" --reps 1 >"$R/rust_$round.tsv"
  for v in "${VARIANTS[@]}"; do
    name="${v%%:*}-c${v##*:}"
    # plain shard sets also get the crop + flip row: the Python package's rows run on them
    # and compare with it (scripts/bench_loader_torch.py).
    only=loader,cut,breakdown
    [ "${v%%:*}" != plain ] || only+=,cropflip
    log "round $round/$ROUNDS: loader on the $name shards ($only)"
    "$BENCH" "$B/shards-$name" --pairs "$PAIRS" --workers "$ALL" --reps 1 --only "$only" \
      >"$R/variant_${name}_$round.tsv"
  done
  if [ -n "$BASELINE" ]; then
    log "round $round/$ROUNDS: loader of the baseline build ($BASELINE) on the default shards"
    "$BASELINE" "$B/shards" --pairs "$PAIRS" --workers "$ALL" --reps 1 --only loader,breakdown \
      >"$R/variant_baseline_$round.tsv"
  fi
  [ "$PEERS" = 0 ] && continue
  log "round $round/$ROUNDS: peers ($PEER_PAIRS pairs per row, 1 and $ALL workers)"
  "$PY" scripts/bench_loader_peers.py "${VIDEOS[@]}" --pairs "$PEER_PAIRS" --workers 1 "$ALL" \
    --reps 1 >"$R/peers_$round.tsv"
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

MACHINE="$(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(date -u +%Y-%m-%d), load average $LOAD_START at the start and $LOAD_END at the end"
VERSIONS=$("$PY" -c "
from importlib.metadata import version as v
print(';'.join(f'{p}=={v(p)}' for p in ('decord', 'av', 'torchcodec', 'torch')))" 2>/dev/null || true)
log "done; the table follows (also in $B/report.md)"
"$PY" scripts/bench_loader_report.py "$R" "$ALL" "${#VIDEOS[@]}" "$SRC_BYTES" "$SHARD_MS" "$INDEX_ONE" "$MACHINE" "$VERSIONS" \
  "$ROUNDS" "$B" | tee "$B/report.md"
# The cvrl Python package's rows (scripts/bench_loader_torch.py) on the default shards and
# on each plain variant; BENCH_PEERS=0 skips them too.
TORCH_SETS=("$B/shards")
for v in "${VARIANTS[@]}"; do
  [ "${v%%:*}" != plain ] || TORCH_SETS+=("$B/shards-${v%%:*}-c${v##*:}")
done
if [ "$PEERS" != 0 ] && [ "${BENCH_TORCH:-1}" != 0 ]; then
  bash scripts/python-package.sh release
  log "the cvrl Python package on ${TORCH_SETS[*]}"
  "$PY" scripts/bench_loader_torch.py "$R" "${TORCH_SETS[@]}" --pairs "$PAIRS" --workers 1 "$ALL" \
    --rounds "$ROUNDS" | tee -a "$B/report.md"
  echo "bench-loader: load average at the end of the Python package's rows: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
fi
