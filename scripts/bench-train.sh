#!/usr/bin/env bash
# Trainer benchmark (`just bench-train`): the step time of the Rust trainer
# (trainer/examples/bench_step.rs: the real Stepper on random clips) against the same
# R3D + projection head + InfoNCE + SGD in PyTorch eager (scripts/bench-train.py), same
# device, batch and input, in the default layout, channels-last, and channels-last with
# freed memory kept in glibc's allocator as cvrl-train keeps it (--keep-freed-memory on both
# sides); then cvrl-train itself on a shard set (the demo's) for the data-wait fraction with
# the real loader. Prints one markdown table (also written to data/bench-train/report.md)
# and one verdict line per target:
# step time within 10% of PyTorch, data wait under 5%.
#
# On the CPU the step is timed in wall seconds and in process CPU seconds; the verdict uses
# the CPU seconds of a 1-thread run, which other work on a shared machine disturbs far less
# than the wall time (with 2+ threads, OpenMP's spin-waiting for a descheduled peer inflates
# CPU time too). On CUDA it uses the wall time.
#
# Knobs (environment): BENCH_DEVICE (cpu or cuda, default cpu), BENCH_THREADS (libtorch CPU
# threads, default 1), BENCH_MODEL (r3d18), BENCH_WIDTH (base width, 32), BENCH_FRAMES (8),
# BENCH_CROP (64), BENCH_STEM (reference or small), BENCH_HEAD (hidden width of the
# projection head, 2048), BENCH_EMBEDDING (its output, 128), BENCH_BATCH (videos per step,
# 8), BENCH_STEPS (timed steps per run, 4), BENCH_WARMUP (2), BENCH_ROUNDS (alternating
# rounds of each implementation, 3), BENCH_TRAIN_STEPS (cvrl-train steps, 12),
# BENCH_WORKERS (loader threads, 1), BENCH_SHARDS (cvrl-train's shard set, data/demo/shards).
# The CPU experiments' model (EXPERIMENTS.md, SIZE=cpu): BENCH_WIDTH=16 BENCH_STEM=small
# BENCH_CROP=32 BENCH_HEAD=256 BENCH_EMBEDDING=64 BENCH_BATCH=32
# BENCH_SHARDS=data/proxy/shards/train (the demo's 9 videos are fewer than a batch).
# Needs data/demo/shards (`just demo`) or BENCH_SHARDS. About 11 minutes on 2 shared cores,
# after the build.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=${BENCH_DEVICE:-cpu}
THREADS=${BENCH_THREADS:-1}
MODEL=${BENCH_MODEL:-r3d18}
WIDTH=${BENCH_WIDTH:-32}
FRAMES=${BENCH_FRAMES:-8}
CROP=${BENCH_CROP:-64}
STEM=${BENCH_STEM:-reference}
HEAD=${BENCH_HEAD:-2048}
EMBEDDING=${BENCH_EMBEDDING:-128}
BATCH=${BENCH_BATCH:-8}
STEPS=${BENCH_STEPS:-4}
WARMUP=${BENCH_WARMUP:-2}
ROUNDS=${BENCH_ROUNDS:-3}
TRAIN_STEPS=${BENCH_TRAIN_STEPS:-12}
WORKERS=${BENCH_WORKERS:-1}
SHARDS=${BENCH_SHARDS:-data/demo/shards}
OUT=data/bench-train
PY=.venv/bin/python
STARTED=$(date +%s)

log() { echo "bench-train: [$(( $(date +%s) - STARTED ))s] $*" >&2; }
die() { echo "bench-train: error: $*" >&2; exit 1; }

[ -d "$SHARDS" ] || die "$SHARDS is missing: run \`just demo\` first (or set BENCH_SHARDS)"
[ -x target/release/examples/bench_step ] && [ -x target/release/cvrl-train ] ||
  die "build first: cargo build --release -p cvrl-trainer --example bench_step --bin cvrl-train"
mkdir -p "$OUT"
RESULTS=$OUT/steps.jsonl
: >"$RESULTS"

common=(--base-width "$WIDTH" --frames "$FRAMES" --crop "$CROP" --stem "$STEM"
  --head-hidden-dim "$HEAD" --embedding-dim "$EMBEDDING" --batch-size "$BATCH"
  --warmup "$WARMUP" --steps "$STEPS" --device "$DEVICE" --threads "$THREADS")
depth=${MODEL#r3d}
# Alternate the implementations so that a busy moment of a shared machine hits both alike.
# The third variant is channels-last with freed memory kept, as cvrl-train runs (both
# implementations set glibc's allocator the same way).
for round in $(seq "$ROUNDS"); do
  for layout in default channels_last channels_last_kept; do
    flag=()
    [ "$layout" = channels_last ] && flag=(--channels-last)
    [ "$layout" = channels_last_kept ] && flag=(--channels-last --keep-freed-memory)
    log "round $round/$ROUNDS, $layout: rust"
    target/release/examples/bench_step --model "$MODEL" "${common[@]}" "${flag[@]}" >>"$RESULTS"
    log "round $round/$ROUNDS, $layout: pytorch"
    "$PY" scripts/bench-train.py --depth "$depth" "${common[@]}" "${flag[@]}" >>"$RESULTS"
  done
done

log "cvrl-train on $SHARDS: $TRAIN_STEPS steps, $WORKERS loader workers"
rm -rf "$OUT/run"
target/release/cvrl-train --shards "$SHARDS" --out "$OUT/run" --model "$MODEL" \
  --base-width "$WIDTH" --frames "$FRAMES" --crop "$CROP" --stem "$STEM" \
  --head-hidden-dim "$HEAD" --embedding-dim "$EMBEDDING" --batch-size "$BATCH" \
  --steps "$TRAIN_STEPS" --workers "$WORKERS" --threads "$THREADS" --device "$DEVICE" \
  --checkpoint-every 0 --quiet

"$PY" - "$RESULTS" "$OUT/run/log.jsonl" "$WARMUP" "$SHARDS" <<'PY' | tee "$OUT/report.md"
import json, statistics as st, sys

steps, log, warmup, shards = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
runs = [json.loads(line) for line in open(steps)]
wall, cpu = {}, {}
for r in runs:
    key = (r["impl"], r["channels_last"], r.get("keep_freed_memory", False))
    wall.setdefault(key, []).extend(r["step_s"])
    cpu.setdefault(key, []).extend(r["cpu_s"])
first = runs[0]
clips = first["clips"]
on_cpu = first["device"].startswith("cpu")
print(f"{first['model']}, {clips} clips of {'x'.join(map(str, first['input']))} per step, "
      f"{first['device']}; {len(runs) // len(wall)} alternating rounds x {len(first['step_s'])} timed steps "
      f"(after {warmup} untimed) per implementation and layout\n")
print("| implementation | layout | wall s/step, median | wall, best | CPU s/step, median | CPU, best | clips/s (median wall) | vs PyTorch, same layout |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
measure = cpu if on_cpu else wall
med = {k: st.median(v) for k, v in measure.items()}
name = {"rust": "cvrl (tch)", "pytorch": "PyTorch eager"}
variants = [(False, False), (True, False), (True, True)]
for cl, kept in variants:
    for impl in ["rust", "pytorch"]:
        if (impl, cl, kept) not in wall:
            continue
        w, c = wall[(impl, cl, kept)], cpu[(impl, cl, kept)]
        ratio = med[(impl, cl, kept)] / med[("pytorch", cl, kept)]
        layout = ("channels_last_3d" if cl else "contiguous") + (", freed memory kept" if kept else "")
        print(f"| {name[impl]} | {layout} "
              f"| {st.median(w):.3f} | {min(w):.3f} | {st.median(c):.3f} | {min(c):.3f} | {clips / st.median(w):.1f} | {ratio:.2f}x |")
print(f"\n(\"vs PyTorch\": ratio of the median {'CPU' if on_cpu else 'wall'} seconds per step.)")
for impl in ["rust", "pytorch"]:
    if (impl, True, True) in med:
        gain = med[(impl, True, True)] / med[(impl, True, False)]
        print(f"{name[impl]}: keeping freed memory takes the channels-last step to {gain:.2f}x")

rows = [json.loads(line) for line in open(log)]
timed = rows[warmup:] if len(rows) > warmup else rows
wait = sum(r["data_wait"] * r["step_time_s"] for r in timed) / sum(r["step_time_s"] for r in timed)
step = st.median(r["step_time_s"] for r in timed)
print(f"\ncvrl-train with the real loader on {shards} (contiguous layout): median {step:.3f} s/step "
      f"({clips / step:.1f} clips/s) over steps {warmup}..{len(rows) - 1}, data wait {100 * wait:.1f}% of the step time\n")
ratio = med[("rust", False, False)] / med[("pytorch", False, False)]
best_ratio = min(med[("rust", True, False)], med[("rust", False, False)]) / min(med[("pytorch", True, False)], med[("pytorch", False, False)])
print(f"verdict: step time {ratio:.2f}x PyTorch eager in the default layout, "
      f"{best_ratio:.2f}x best layout against best layout (target: within 1.10x): "
      f"{'met' if max(ratio, best_ratio) <= 1.10 else 'NOT met'}")
print(f"verdict: data wait {100 * wait:.1f}% (target: under 5%): {'met' if wait < 0.05 else 'NOT met'}")
PY
log "done; report in $OUT/report.md"
