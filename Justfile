# cvrl tasks. `just --list` shows them. Every recipe that builds first runs the idempotent
# setup (FFmpeg dev packages, the project venv with torch==2.11.0, just), so a fresh Debian
# machine needs nothing else.

set shell := ["bash", "-euo", "pipefail", "-c"]

demo_dir := "data/demo"

# Show the recipes.
default:
    @just --list

# Install system packages and the project venv (idempotent; seconds when done).
setup:
    @bash scripts/setup.sh

# End to end on generated sample videos: shard, inspect, verify, contact sheet, train a few CVRL steps on CPU, then a kNN probe.
demo: setup
    bash scripts/make-test-videos.sh {{demo_dir}}
    cargo build --release -p cvrl-tools -p cvrl-trainer
    ./target/release/cvrl-shard build {{demo_dir}}/videos {{demo_dir}}/shards --short-side 128 --force
    ./target/release/cvrl-inspect {{demo_dir}}/shards
    ./target/release/cvrl-inspect {{demo_dir}}/shards --verify
    ./target/release/cvrl-inspect {{demo_dir}}/shards --video juggling/long_640x360 --contact-sheet {{demo_dir}}/contact-sheet.png
    rm -rf {{demo_dir}}/run
    ./target/release/cvrl-train --shards {{demo_dir}}/shards --out {{demo_dir}}/run --steps 10 --batch-size 4 --crop 64 --frames 8 --checkpoint-every 10
    # Nine videos: the same set fits and scores the probe, to show the pipeline, not accuracy.
    ./target/release/cvrl-eval knn --run {{demo_dir}}/run --train {{demo_dir}}/shards --val {{demo_dir}}/shards --k 3 --temporal-views 2 --spatial-crops 1
    @echo "demo done: shards in {{demo_dir}}/shards, contact sheet {{demo_dir}}/contact-sheet.png, training log {{demo_dir}}/run/log.jsonl, evaluation in {{demo_dir}}/run/eval"

# The whole test suite: formatting, clippy with warnings as errors, every test.
test: setup
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    # The end-to-end tests run the CLIs and examples (gpu-check.sh --dry-run checks them); cargo test alone builds no plain binary of tools/.
    cargo build --workspace --bins --examples
    cargo test --workspace

# The `cvrl` Python package (formats/python): its abi3 wheel built with maturin into target/wheels/PROFILE and installed into .venv (setup does this whenever its sources change). PROFILE: dev (what the tests use) or release (benchmarks).
python-package profile="dev": setup
    bash scripts/python-package.sh {{profile}}

# Sharder benchmark: throughput against ffmpeg decode+scale, bytes/frame against mp4, FFV1, JPEG.
bench-shard: setup
    cargo build --release -p cvrl-tools --examples
    bash scripts/bench-shard.sh

# Trainer benchmark: step time of cvrl-train's step against the same model in PyTorch eager, and data wait with the real loader (needs `just demo`).
bench-train: setup
    cargo build --release -p cvrl-trainer --example bench_step --bin cvrl-train
    bash scripts/bench-train.sh

# Data-parallel benchmark (a few minutes on 2 cores): world size 1 through the distributed path against the plain path, 2 ranks x 1 thread against 1 process x 2 threads (proxy-cpu model), R3D-50's all-reduce bytes per step and their time over 2 local Gloo ranks, the step time on paper at 8 and 64 GPUs. Flags go to bench_dist (--help).
bench-dist *flags: setup
    cargo build --release -p cvrl-trainer --example bench_dist
    ./target/release/examples/bench_dist {{flags}}

# Loader benchmark: clip pairs/s of the shard loader against decord, PyAV and torchcodec decoding the source mp4s, and against plain zstd (the floor).
bench-loader: setup
    bash scripts/bench-loader.sh

# Synthetic proxy dataset (`cvrl-shard synth --help`): 10 object x motion classes as H.264 videos, sharded into OUT/shards/train and OUT/shards/val with each video's factors in the index. Presets: easy (default; 1000 videos at 64x64, large objects, no clutter: the CPU experiments), cpu (600 at 128x128 with clutter), gpu (20 classes x 200 at 160x160). Further flags go to synth, e.g. `just proxy-data easy data/proxy-p50 0 --presence 0.5`.
proxy-data preset="easy" out="data/proxy" seed="0" *synth_flags: setup
    cargo build --release -p cvrl-tools
    ./target/release/cvrl-shard synth {{out}}/videos --preset {{preset}} --seed {{seed}} --force {{synth_flags}}
    # Raw chunks: the same pixels as the default predictor, 35% more bytes, and 17% faster CPU training steps on 2 cores (EXPERIMENTS.md, "Cheaper decoding").
    ./target/release/cvrl-shard build {{out}}/videos/train {{out}}/shards/train --short-side 0 --predictor raw --force
    ./target/release/cvrl-shard build {{out}}/videos/val {{out}}/shards/val --short-side 0 --predictor raw --force
    @echo "proxy data done: videos in {{out}}/videos, shards in {{out}}/shards/train and {{out}}/shards/val"

# The photographs `cvrl-shard synth --textures DIR` cuts realistic backgrounds from: scikit-image's bundled colour sample photographs as PNGs in OUT. E.g. `just textures && just proxy-data easy data/proxy-photo 1 --textures data/textures`.
textures out="data/textures": setup
    .venv/bin/python scripts/export-textures.py {{out}}

# Experiment 1 and 4 of EXPERIMENTS.md on the proxy data (`just proxy-data` first): CVRL vs random init vs supervised, probed on class, object and motion. SIZE=cpu|gpu env, EPOCHS the budget, JOBS the runs trained at once (cpu default 2, each on half the cores), seeds default 0 1 2.
exp1 *seeds: setup
    cargo build --release -p cvrl-trainer
    bash scripts/experiment.sh exp1 {{seeds}}

# The transfer probe: CVRL, random init and supervised (all pretrained on the proxy in DATA) linear-probed on TARGET, a proxy of object x motion pairs DATA never shows (`just proxy-data easy data/proxy-transfer 0 --diagonal-offset 2`); or with DATA_SEEDS, on proxies it makes itself.
exp-transfer *seeds: setup
    cargo build --release -p cvrl-trainer
    bash scripts/experiment.sh exp-transfer {{seeds}}

# Experiment 2: decreasing vs uniform vs increasing interval distributions, same budget.
exp2 *seeds: setup
    cargo build --release -p cvrl-trainer
    bash scripts/experiment.sh exp2 {{seeds}}

# Experiment 3: temporally consistent vs per-frame augmentation, spatial-only and temporal-only.
exp3 *seeds: setup
    cargo build --release -p cvrl-trainer
    bash scripts/experiment.sh exp3 {{seeds}}

# Fuzz the readers of cvrl-formats (FUZZING.md): each target of fuzz/ for SECONDS, one after another, seeded from real shards; prints executions, exec/s and coverage per target. Needs the nightly toolchain; installs cargo-fuzz on first use. Not part of `just test`.
fuzz seconds="60" *targets: setup
    bash scripts/fuzz.sh {{seconds}} {{targets}}
