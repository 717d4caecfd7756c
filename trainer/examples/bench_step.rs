//! Training-step benchmark, the Rust half of `just bench-train` (scripts/bench-train.sh runs
//! it, its PyTorch peer scripts/bench-train.py and `cvrl-train` on the demo shards, and
//! prints one table): the time of one optimiser step of the real trainer ([`Stepper`]: u8
//! upload, [0, 1] scaling, R3D + projection head forward, InfoNCE, backward, SGD update,
//! loss read back) on random clips, so that no loader time is in it.
//!
//! Prints one JSON object: the configuration and every timed step's wall seconds and process
//! CPU seconds (user + system, all threads; on a shared machine the CPU time of a 1-thread
//! run is the steadier measure of the work a step takes).
//!
//! ```sh
//! cargo run --release -p cvrl-trainer --example bench_step -- --base-width 32 --steps 5
//! ```

use anyhow::{bail, Context, Result};
use clap::Parser;
use cvrl_trainer::device::DeviceChoice;
use cvrl_trainer::model::Stem;
use cvrl_trainer::train::{Arch, MicroBatch, Preset, RunLength, Stepper, TrainConfig, Views};
use std::path::PathBuf;
use std::time::Instant;

/// Times training steps of the Rust trainer on random clips.
#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "r3d18")]
    model: Arch,
    #[arg(long, default_value_t = 32)]
    base_width: u32,
    #[arg(long, default_value_t = 8)]
    frames: u32,
    #[arg(long, default_value_t = 64)]
    crop: u32,
    /// reference or small (cvrl-train --stem).
    #[arg(long, default_value = "reference")]
    stem: Stem,
    /// Width of the projection head's hidden layers.
    #[arg(long, default_value_t = 2048)]
    head_hidden_dim: i64,
    /// Output width of the projection head.
    #[arg(long, default_value_t = 128)]
    embedding_dim: i64,
    /// Videos per step (two clips each).
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Untimed steps first (allocator, cuDNN autotuning).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    #[arg(long)]
    channels_last: bool,
    #[arg(long)]
    fp32: bool,
    /// libtorch CPU threads (default: libtorch's).
    #[arg(long)]
    threads: Option<i32>,
    /// Keep freed memory in glibc's allocator, as cvrl-train does
    /// (`device::keep_freed_host_memory`); off by default, like PyTorch.
    #[arg(long)]
    keep_freed_memory: bool,
}

/// User + system CPU time of this process so far, from `/proc/self/stat` (fields 14 and 15,
/// in USER_HZ ticks, 100 per second on Linux); NaN where that file is missing.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    // The command name (field 2) may hold spaces; the fields after it are space-separated.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |i: usize| rest.split_whitespace().nth(i).and_then(|v| v.parse::<f64>().ok());
    match (field(11), field(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    if args.keep_freed_memory && !cvrl_trainer::device::keep_freed_host_memory() {
        bail!("--keep-freed-memory: this C library did not take the setting (glibc only)");
    }
    let cfg = TrainConfig {
        model: args.model,
        base_width: args.base_width,
        frames: args.frames,
        crop: args.crop,
        stem: args.stem,
        head_hidden_dim: args.head_hidden_dim,
        embedding_dim: args.embedding_dim,
        batch_size: args.batch_size,
        length: RunLength::Steps(1),
        device: args.device,
        channels_last: args.channels_last,
        fp32: args.fp32,
        ..TrainConfig::preset(Preset::Demo, Vec::new(), PathBuf::new())
    };
    let mut stepper = Stepper::new(&cfg, None, None).context("building the model")?;
    let clip = 3 * (args.frames * args.crop * args.crop) as usize;
    // Deterministic noise, different for each view and step, made before timing.
    let views: Vec<Vec<u8>> = (0..2 * (args.warmup + args.steps) as u64)
        .map(|k| {
            (0..(clip * args.batch_size) as u64)
                .map(|i| ((i ^ (k << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
                .collect()
        })
        .collect();
    let mut times = Vec::new();
    let mut cpu_times = Vec::new();
    let mut last_loss = 0.0;
    for s in 0..args.warmup + args.steps {
        let t0 = Instant::now();
        let c0 = cpu_seconds();
        stepper.zero_grad();
        let micro = MicroBatch {
            views: Views::Host { a: &views[2 * s], b: &views[2 * s + 1] },
            labels: None,
        };
        let loss = stepper.backward(s as u64, &micro)?;
        last_loss = stepper.update(s as u64, 1e-3, &[loss])?;
        if s >= args.warmup {
            times.push(t0.elapsed().as_secs_f64());
            cpu_times.push(cpu_seconds() - c0);
        }
    }
    let out = serde_json::json!({
        "impl": "rust",
        "device": cvrl_trainer::device::describe(stepper.device()),
        "model": cfg.model_description(),
        "channels_last": args.channels_last,
        "keep_freed_memory": args.keep_freed_memory,
        "clips": 2 * args.batch_size,
        "input": [args.frames, args.crop, args.crop],
        "threads": tch::get_num_threads(),
        "step_s": times,
        "cpu_s": cpu_times,
        "last_loss": last_loss,
    });
    println!("{out}");
    Ok(())
}
