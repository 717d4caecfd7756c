#!/usr/bin/env bash
# Runs one of the proof-of-learning experiments of EXPERIMENTS.md on the proxy dataset
# (`just proxy-data`): pretraining runs, linear probes, a report table and plots.
#
#   scripts/experiment.sh EXP [SEED...]     EXP: exp1 | exp2 | exp3 | exp-transfer;
#                                           model seeds default 0 1 2
#
# exp1: CVRL vs random init vs supervised, probed on the class and on each factor
#       (object, motion): experiments 1 and 4.
# exp2: interval distributions decreasing / uniform / increasing, same budget, each probed
#       on the class and on each factor.
# exp3: temporally consistent vs per-frame augmentation, spatial-only (both clips from the
#       same start) and temporal-only (no spatial augmentation), each probed on the class
#       and on each factor.
# exp-transfer: CVRL pretrained on DATA, random init, and supervised on DATA's classes,
#       each linear-probed on TARGET, a proxy whose classes are object x motion pairs that
#       DATA never shows (`cvrl-shard synth --diagonal-offset 2`); the CVRL and supervised
#       runs are exp1's.
#
# Environment: SIZE=cpu|gpu picks the model and budget: cvrl-train's preset proxy-cpu
# (R3D-18 at base width 16 with the small stem on 8 x 32 x 32 clips, 160 epochs = 4000
# steps, 18-44 minutes a run, two at once on 2 cores, on `just proxy-data easy`) or
# proxy-gpu (R3D-18 at width 64 on 16 x 112 x 112 for 60 epochs, on `just proxy-data gpu`);
# `cvrl-train --help` lists their settings. EPOCHS overrides the pretraining epochs
# (EPOCHS=120 and 80 are the 3000- and 2000-step budgets of the EXPERIMENTS.md tables that
# name them, and EPOCHS=80 runs exp1 in 23 minutes on 2 cores; EPOCHS=60 is the 1500-step
# budget of its "History"), AUG the augmentation of every run but exp3's per-frame and
# temporal-only arms (cpu default light, gpu default cvrl, the reference; exp3's per-frame
# arm is AUG drawn per frame: per-frame or light-per-frame), TRAIN_FLAGS further
# cvrl-train flags for every run, laid over the preset (e.g. "--grayscale-p 0.2"; give the
# runs their own OUT), DATA the proxy shard sets
# (default data/proxy/shards), TARGET exp-transfer's target shard sets (default
# data/proxy-transfer/shards), OUT the output folder (default data/experiments). The cpu
# preset also turns every clip grey (grayscale 1.0), raises the smallest crop to 0.6 of
# the frame and the temperature to 0.2, at lr 1: with the reference's settings CVRL learns
# nothing on the flat-coloured proxy in a CPU budget (EXPERIMENTS.md, "SIZE=cpu" and
# "History").
# DATA_SEEDS (e.g. "1 2 3") replaces DATA and TARGET with one generated proxy per data
# seed: `cvrl-shard synth --preset PRESET --seed D SYNTH_FLAGS` sharded with --predictor
# raw into PROXIES/PRESET[-PROXY_TAG]-dD/shards (and, for exp-transfer, the same with
# --diagonal-offset 2 into ...-dD-transfer/shards), reused when its recorded command is
# the same and refused when it is not. PRESET defaults to easy (SIZE=cpu) or gpu, PROXIES
# to data/proxies; PROXY_TAG names the proxies of other SYNTH_FLAGS (e.g. PROXY_TAG=photo
# SYNTH_FLAGS="--textures data/textures"). Each data seed's runs and results go under
# OUT/dD as an experiment without DATA_SEEDS would write them; then
# scripts/experiment_report.py writes OUT/EXP-TAG.md: mean ± std over every data seed x
# model seed, with each data seed's mean beside it.
# JOBS: runs (and probes) made at once, each on cores/JOBS libtorch threads (cpu default
# 2, gpu 1): on 2 cores two one-thread runs make 25-35 % more steps together than one
# two-thread run (EXPERIMENTS.md, "Two runs at once"). Runs left over (an odd one with
# JOBS=2) go last, on every core.
# ARMS limits exp3 to some of its arms (consistent, per-frame, spatial-only, temporal-only;
# default all), e.g. to run one arm on every seed before the next.
# Finished runs and evaluations are skipped, so an interrupted experiment continues where
# it stopped and experiments share runs.
set -euo pipefail

exp=${1:?usage: scripts/experiment.sh exp1|exp2|exp3|exp-transfer [SEED...]}
shift
seeds=("${@:-0 1 2}")
read -r -a seeds <<<"${seeds[*]}"
size=${SIZE:-cpu}
data=${DATA:-data/proxy/shards}
target=${TARGET:-data/proxy-transfer/shards}
out=${OUT:-data/experiments}
bin=${BIN:-target/release}
read -r -a train_flags <<<"${TRAIN_FLAGS:-}"
read -r -a data_seeds <<<"${DATA_SEEDS:-}"
read -r -a synth_flags <<<"${SYNTH_FLAGS:-}"

# Every setting is checked before anything is trained or written.
case $exp in
exp1 | exp2 | exp3 | exp-transfer) ;;
*)
    echo "unknown experiment $exp (exp1, exp2, exp3 or exp-transfer)" >&2
    exit 2
    ;;
esac
all_arms="consistent per-frame spatial-only temporal-only"
arms=" ${ARMS:-$all_arms} "
for a in $arms; do
    if [[ " $all_arms " != *" $a "* ]]; then
        echo "ARMS: unknown exp3 arm '$a' (arms: $all_arms)" >&2
        exit 2
    fi
done

case $size in
cpu)
    preset=${PRESET:-easy}
    aug=${AUG:-light}
    # The preset's own length, named here for the tag below.
    epochs=${EPOCHS:-160}
    model=(--preset proxy-cpu)
    views=(--train-clips 4 --temporal-views 4 --spatial-crops 1)
    jobs=${JOBS:-2}
        # Extra loader flags; run_jobs sets them for runs side by side.
    loader=()
    ;;
gpu)
    preset=${PRESET:-gpu}
    aug=${AUG:-cvrl}
    epochs=${EPOCHS:-60}
    model=(--preset proxy-gpu)
    views=(--train-clips 4 --temporal-views 10 --spatial-crops 1)
    jobs=${JOBS:-1}
    loader=()
    ;;
*)
    echo "SIZE must be cpu or gpu, got $size" >&2
    exit 2
    ;;
esac

# exp3's inconsistent arm draws the same augmentation's parameters for every frame.
per_frame=
case $exp:$aug in
exp3:cvrl) per_frame=per-frame ;;
exp3:light) per_frame=light-per-frame ;;
exp3:*)
    echo "exp3 ablates the cvrl or light augmentation, not $aug" >&2
    exit 2
    ;;
esac

cores=$(nproc)
if ! [[ $jobs =~ ^[1-9][0-9]*$ ]]; then
    echo "JOBS must be a positive number of runs at once, got $jobs" >&2
    exit 2
fi
((jobs <= cores)) || jobs=$cores
for d in "${data_seeds[@]}"; do
    if ! [[ $d =~ ^[0-9]+$ ]]; then
        echo "DATA_SEEDS must be numbers (synth seeds), got '$d'" >&2
        exit 2
    fi
done

# The tag names the configuration, so that results of another one are never reused.
# v3: the cpu preset at lr 1 (v2 was lr 4: EXPERIMENTS.md, "History").
# Runs of another length get their own runs and results too; 60 epochs (1500 steps) has no
# suffix. TRAIN_FLAGS are spelt into it ("--grayscale-p 0.2" adds "-grayscale-p-0.2").
tag=$size-v3-$aug
[[ $epochs == 60 ]] || tag+=-e$epochs
if ((${#train_flags[@]})); then
    flags_tag=${train_flags[*]}
    flags_tag=${flags_tag//--/}
    tag+=-$(tr -c 'A-Za-z0-9._\n-' '-' <<<"${flags_tag// /-}")
fi

# make_proxy DIR SEED [FLAGS...]: the proxy of `cvrl-shard synth --preset $preset --seed
# SEED SYNTH_FLAGS FLAGS` in DIR/videos, sharded into DIR/shards/{train,val}; kept when
# DIR/proxy.cmd (written last) records the same command, refused when it records another.
make_proxy() {
    local dir=$1 seed=$2 split
    shift 2
    local cmd=(synth "$dir/videos" --preset "$preset" --seed "$seed" "${synth_flags[@]}" "$@")
    if [[ -f $dir/proxy.cmd ]]; then
        if [[ $(<"$dir/proxy.cmd") != "${cmd[*]}" ]]; then
            echo "$dir holds the proxy of \`cvrl-shard $(<"$dir/proxy.cmd")\`, not of" \
                "\`cvrl-shard ${cmd[*]}\`: give these SYNTH_FLAGS a PROXY_TAG" >&2
            exit 1
        fi
        echo "== proxy $dir: made before"
        return
    fi
    echo "== proxy $dir: cvrl-shard ${cmd[*]}"
    "$bin/cvrl-shard" "${cmd[@]}" --force --quiet
    for split in train val; do
        "$bin/cvrl-shard" build "$dir/videos/$split" "$dir/shards/$split" --short-side 0 \
            --predictor raw --force --quiet
    done
    echo "${cmd[*]}" >"$dir/proxy.cmd"
}

# With data seeds, this script runs once per data seed on that seed's proxies, each into
# its own OUT, then reports over all of them.
if ((${#data_seeds[@]})); then
    proxies=${PROXIES:-data/proxies}/$preset${PROXY_TAG:+-$PROXY_TAG}
    summary=()
    for d in "${data_seeds[@]}"; do
        make_proxy "$proxies-d$d" "$d"
        [[ $exp != exp-transfer ]] || make_proxy "$proxies-d$d-transfer" "$d" --diagonal-offset 2
        DATA_SEEDS='' DATA=$proxies-d$d/shards TARGET=$proxies-d$d-transfer/shards \
            OUT=$out/d$d bash "$0" "$exp" "${seeds[@]}"
        summary+=("$out/d$d/$exp-$tag/results")
    done
    python3 "$(dirname "$0")/experiment_report.py" "${summary[@]}" | tee "$out/$exp-$tag.md"
    echo "experiment $exp over data seeds ${data_seeds[*]} done: table $out/$exp-$tag.md"
    exit 0
fi

sets=("$data")
[[ $exp != exp-transfer ]] || sets+=("$target")
for set in "${sets[@]}"; do
    for split in train val; do
        if [[ ! -f $set/$split/manifest.json ]]; then
            echo "no proxy shard set in $set/$split: run \`just proxy-data easy\` (SIZE=cpu) or \`just proxy-data gpu\` first, or set DATA_SEEDS" >&2
            exit 1
        fi
    done
done
runs=$out/runs-$tag
results=$out/$exp-$tag/results
mkdir -p "$runs" "$results"

# enqueue QUEUE COMMAND [ARGS...]: a command for run_jobs QUEUE (fields joined by \x1f).
trainings=()
probes=()
enqueue() {
    local -n q=$1
    shift
    local IFS=$'\x1f'
    q+=("$*")
}

# Stop the other runs when one fails or the script is killed; each job is a subshell, so
# its children go first.
stop_jobs() {
    local p
    for p in $(jobs -p); do
        pkill -P "$p" 2>/dev/null || true
        kill "$p" 2>/dev/null || true
    done
}
trap stop_jobs EXIT
trap 'exit 143' TERM

# run_jobs QUEUE: runs the queued commands, $jobs at a time, each on cores/jobs libtorch
# threads and one loader thread per four (in place of the preset's loader flags). The last
# n % jobs commands, which cannot fill every slot, wait for the others and share every
# core. Stops at the first failure.
run_jobs() {
    local -n q=$1
    local n=${#q[@]} i running=0 width=$((cores / jobs))
    local rest=$((n % jobs))
    local -a cmd
    # wait_until K: waits for runs to end until at most K are running.
    wait_until() {
        while ((running > $1)); do
            wait -n
            running=$((running - 1))
        done
    }
    for ((i = 0; i < n; i++)); do
        IFS=$'\x1f' read -r -a cmd <<<"${q[i]}"
        if ((jobs == 1)); then
            "${cmd[@]}"
            continue
        fi
        if ((i == n - rest)); then
            wait_until 0
            width=$((cores / rest))
        else
            wait_until $((jobs - 1))
        fi
        (
            export OMP_NUM_THREADS=$width
            loader=(--threads "$width" --workers $(((width + 3) / 4)))
            "${cmd[@]}"
        ) &
        running=$((running + 1))
    done
    wait_until 0
}

# pretrain NAME SEED [FLAGS...]: one cvrl-train run into $runs/NAME-sSEED.
pretrain() {
    local name=$1 seed=$2
    shift 2
    local dir=$runs/$name-s$seed start=$SECONDS
    echo "== pretraining $dir"
    rm -rf "$dir"
    "$bin/cvrl-train" --shards "$data/train" --out "$dir" "${model[@]}" --epochs "$epochs" \
        --seed "$seed" --checkpoint-every 0 --quiet "${loader[@]}" "${train_flags[@]}" "$@"
    echo "== $dir: trained in $((SECONDS - start)) s"
}

# train NAME SEED [FLAGS...]: queues the run $runs/NAME-sSEED, unless it is finished.
train() {
    local dir=$runs/$1-s$2
    if [[ -f $dir/encoder.safetensors ]]; then
        # The tag does not name the data: a run of other shards must not pass for this one.
        if ! grep -qF "\"$data/train\"" "$dir/run.json"; then
            echo "$dir was trained on other shards than $data/train: give this data its own OUT" >&2
            exit 1
        fi
        echo "== $dir: done before"
        return
    fi
    enqueue trainings pretrain "$@"
}

# What a probe predicts: the class, and each factor for experiment 4.
targets=(class object motion)
# The shard sets probed: the pretraining data, or exp-transfer's unseen classes.
probe_data=$data
[[ $exp != exp-transfer ]] || probe_data=$target

# probe LABEL RUN SEED [FLAGS...]: linear probes of $runs/RUN-sSEED on every target, so
# that the factors say what an ablation costs; results that exist are kept.
probe() {
    local label=$1 run=$2 seed=$3 target
    shift 3
    for target in "${targets[@]}"; do
        if [[ -f $results/$label-linear-$target-seed$seed.json ]]; then
            continue
        fi
        "$bin/cvrl-eval" linear --run "$runs/$run-s$seed" --train "$probe_data/train" \
            --val "$probe_data/val" --target "$target" --seed "$seed" --name "$label" \
            --out "$results" "${views[@]}" "$@" | tail -n 3
    done
}

# train_and_probe LABEL RUN SEED [FLAGS...]: queues the run and, after every run, its probes.
train_and_probe() {
    local label=$1 run=$2 seed=$3
    shift 3
    train "$run" "$seed" "$@"
    enqueue probes probe "$label" "$run" "$seed"
}

case $exp in
exp1)
    # All CVRL runs first: they are what the experiment is about if it is cut short.
    for s in "${seeds[@]}"; do
        train_and_probe cvrl cvrl "$s" --augmentation "$aug"
        enqueue probes probe random-init cvrl "$s" --random-init
    done
    for s in "${seeds[@]}"; do
        train_and_probe supervised supervised "$s" --supervised --augmentation "$aug"
    done
    ;;
exp-transfer)
    # The runs are exp1's; only the probes (on the target's classes) are new.
    for s in "${seeds[@]}"; do
        train_and_probe cvrl cvrl "$s" --augmentation "$aug"
        enqueue probes probe random-init cvrl "$s" --random-init
    done
    for s in "${seeds[@]}"; do
        train_and_probe supervised-source supervised "$s" --supervised --augmentation "$aug"
    done
    ;;
exp2)
    for s in "${seeds[@]}"; do
        # Decreasing, the default, is experiment 1's CVRL run.
        train_and_probe decreasing cvrl "$s" --augmentation "$aug"
        for dist in uniform increasing; do
            train_and_probe "$dist" "$dist" "$s" --interval-distribution "$dist" \
                --augmentation "$aug"
        done
    done
    ;;
exp3)
    # arm NAME RUN SEED [FLAGS...]: train and probe one arm, if ARMS names it.
    arm() {
        [[ $arms == *" $1 "* ]] || return 0
        train_and_probe "$@"
    }
    for s in "${seeds[@]}"; do
        arm consistent cvrl "$s" --augmentation "$aug"
        arm per-frame per-frame "$s" --augmentation "$per_frame"
        arm spatial-only spatial-only "$s" --interval-distribution same --augmentation "$aug"
        arm temporal-only temporal-only "$s" --augmentation none
    done
    ;;
esac
run_jobs trainings
run_jobs probes

report=$out/$exp-$tag/report
run_dirs=()
for d in "$runs"/*-s*; do
    [[ -f $d/log.jsonl ]] && run_dirs+=(--run "$d")
done
"$bin/cvrl-eval" report "$results"/*.json --out "$report" "${run_dirs[@]}" | tee "$report.md"
echo "experiment $exp done: table $report.md, plots in $report"
