#!/usr/bin/env bash
# One prepared GPU check: on a machine with one GPU, torch 2.11 in Python and no Rust
# toolchain, with the binaries and a small shard set built beforehand and copied there,
# measures what a GPU run must show and writes one markdown report.
#
#   scripts/gpu-check.sh [--dry-run]
#
# Steps (each bounded by `timeout`, about 8 minutes in all):
#   1. bench-train: R3D-50 at 16x224x224, bf16, batch BATCH, default and channels-last:
#      cvrl's step (examples/bench_step) against PyTorch eager (scripts/bench-train.py);
#   2. cvrl-train with the real loader on SHARDS (--preset paper, STEPS steps): step time,
#      clips/s, data wait, the loader's host CPU, GPU memory; with the augmentation on the
#      device (the default on CUDA) and on the host (--augment-on host);
#   3. device against host augmentation (examples/bench_augment): ms per batch;
#   4. the data-parallel path with NCCL at world size 1 (torchrun, --dist-always: without it
#      a world of one trains as a single process), against step 2;
#   5. experiment 1's CVRL run at SIZE=gpu (--preset proxy-gpu), its first 300 steps, when
#      PROXY names the proxy's train shards.
#
# --dry-run (any machine, no GPU needed, part of the tests) checks every step's command and
# inputs and writes the report with the commands only.
#
# Environment: BIN (the binaries; default target/release, examples in BIN/examples), SHARDS
# (a shard set, default data/demo/shards), PROXY (optional), OUT (default
# data/gpu-check), PYTHON (default python3), BATCH (8), STEPS (40). On the GPU machine set
# LD_LIBRARY_PATH to its torch/lib (the binaries' rpath names the build machine's venv).
set -euo pipefail
cd "$(dirname "$0")/.."

dry=0
[[ ${1:-} == --dry-run ]] && dry=1
bin=${BIN:-target/release}
shards=${SHARDS:-data/demo/shards}
proxy=${PROXY:-}
out=${OUT:-data/gpu-check}
python=${PYTHON:-python3}
batch=${BATCH:-8}
steps=${STEPS:-40}
report=$out/report.md

die() { echo "gpu-check: $*" >&2; exit 1; }

# Inputs every step needs, checked before anything runs.
for exe in "$bin/cvrl-train" "$bin/examples/bench_step" "$bin/examples/bench_augment"; do
    [[ -x $exe ]] || die "$exe missing: build with cargo build --release -p cvrl-trainer --bins --examples, and copy target/release here"
done
[[ -f $shards/manifest.json ]] || die "$shards is not a shard set (SHARDS)"
[[ -z $proxy || -f $proxy/manifest.json ]] || die "$proxy is not a shard set (PROXY)"
[[ -f scripts/bench-train.py ]] || die "scripts/bench-train.py missing"
"$python" -c 'import torch' 2>/dev/null || die "$python cannot import torch"
command -v torchrun >/dev/null || [[ -x $(dirname "$(command -v "$python")")/torchrun ]] ||
    die "torchrun not found next to $python"
torchrun=$(command -v torchrun || echo "$(dirname "$(command -v "$python")")/torchrun")
if ((!dry)); then
    "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' ||
        die "no CUDA device visible to torch (use --dry-run to check the inputs alone)"
fi

mkdir -p "$out"
{
    echo "# GPU check ($(date -u +%Y-%m-%d), commit ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)})"
    echo
    if ((dry)); then echo "Dry run: the commands, not run."; else
        echo "Device: $("$python" -c 'import torch; print(torch.cuda.get_device_name(0))')"; fi
    echo
} >"$report"

# step TITLE SECONDS COMMAND...: runs (or, dry, lists) one step, its output in the report.
step() {
    local title=$1 limit=$2
    shift 2
    printf '## %s\n\n```\n$ %s\n' "$title" "$*" >>"$report"
    if ((dry)); then
        printf '```\n\n' >>"$report"
        return
    fi
    local status=0
    timeout "$limit" "$@" >>"$report" 2>&1 || status=$?
    printf '```\n' >>"$report"
    ((status == 0)) || printf '\n**exit status %s**\n' "$status" >>"$report"
    printf '\n' >>"$report"
}

model=(--base-width 64 --frames 16 --crop 224 --batch-size "$batch" --steps 10 --device cuda)
for layout in "" --channels-last; do
    step "cvrl step, R3D-50 16x224 bf16 ${layout:-default layout}" 120 \
        "$bin/examples/bench_step" --model r3d50 "${model[@]}" $layout
    step "PyTorch eager step, R3D-50 16x224 bf16 ${layout:-default layout}" 120 \
        "$python" scripts/bench-train.py --depth 50 "${model[@]}" $layout
done
train=(--preset paper --shards "$shards" --batch-size "$batch" --steps "$steps"
    --checkpoint-every 0 --workers 12 --quiet)
# bash's `time`: the host CPU (user + sys) the run took, loader included, against its wall time.
step "cvrl-train with the real loader, augmentation on the device" 150 \
    bash -c 'time "$@"' _ "$bin/cvrl-train" "${train[@]}" --out "$out/train"
step "cvrl-train with the real loader, augmentation on the host" 150 \
    bash -c 'time "$@"' _ "$bin/cvrl-train" "${train[@]}" --augment-on host --out "$out/train-host"
step "device against host augmentation" 120 "$bin/examples/bench_augment" --shards "$shards"
step "data-parallel path, NCCL, world size 1" 150 \
    "$torchrun" --no-python --standalone --nproc-per-node 1 "$bin/cvrl-train" "${train[@]}" \
    --dist-always --out "$out/train-dist"
if [[ -n $proxy ]]; then
    step "experiment 1, CVRL at SIZE=gpu, first 300 steps" 240 \
        "$bin/cvrl-train" --preset proxy-gpu --shards "$proxy" --steps 300 --out "$out/exp1" \
        --checkpoint-every 0 --quiet
fi

# The logs' summary: median step time, clips/s and data wait of each cvrl-train run, and
# the GPU memory in use after them.
if ((!dry)); then
    {
        echo "## Summary of the cvrl-train runs"
        echo
        "$python" - "$out" <<'PY'
import json, pathlib, statistics, sys
print("| run | median s/step | clips/s | data wait | last loss |")
print("|---|---|---|---|---|")
for run in ["train", "train-host", "train-dist", "exp1"]:
    log = pathlib.Path(sys.argv[1]) / run / "log.jsonl"
    if not log.exists():
        continue
    rows = [json.loads(l) for l in log.read_text().splitlines()][2:] or [{}]
    med = lambda k: statistics.median(r[k] for r in rows)
    print(f"| {run} | {med('step_time_s'):.3f} | {med('clips_per_s'):.1f} | "
          f"{100 * med('data_wait'):.1f} % | {rows[-1]['loss']:.4f} |")
PY
        echo
        nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null || true
    } >>"$report"
fi
echo "gpu-check: report in $report"
