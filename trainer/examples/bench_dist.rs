//! Data-parallel benchmark (`just bench-dist`): how many bytes one training step of R3D-50
//! all-reduces, and how long that all-reduce takes with Gloo between two local ranks.
//!
//! Started plainly, it counts the parameters of R3D-50 alone and with the reference head
//! (the bytes are those f32 gradients), then starts itself twice as ranks 0 and 1 on
//! 127.0.0.1 and prints rank 0's table. Under `torchrun` (or `srun`) it runs as that rank
//! directly, so the same measurement works across machines and, with `--device cuda`, over
//! NCCL.
//!
//! Each rank times three ways of reducing the gradients of the model (R3D-50 + head by
//! default): one all-reduce of a flat f32 buffer of that size; [`GradSync::all_reduce_mean`]
//! on the model's own variables (25 MiB buckets, copies in and out, division by the world
//! size); and a backward pass of `Σ p` over all parameters (trivial compute) with a
//! [`GradReducer`] armed, i.e. the reducer's all-reduces with nothing to overlap them with:
//! in a real step, they hide behind the rest of backward.
//!
//! ```sh
//! cargo run --release -p cvrl-trainer --example bench_dist -- --iters 10
//! torchrun --no-python --standalone --nproc-per-node 2 target/release/examples/bench_dist --device cuda
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use cvrl_trainer::dist::{
    GradReducer, GradSync, GroupOptions, Launch, ProcessGroup, DEFAULT_BUCKET_BYTES,
    DEFAULT_TIMEOUT,
};
use cvrl_trainer::model::{HeadConfig, Model, R3d, R3dConfig};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Times the gradient all-reduce of R3D-50 over two local ranks (or the launcher's).
#[derive(Parser)]
struct Args {
    /// Timed repetitions of each measurement (after one untimed warm-up).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Ranks to start when not under a launcher.
    #[arg(long, default_value_t = 2)]
    ranks: usize,
    /// cpu (Gloo) or cuda (NCCL; one GPU per rank, by local rank).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Reduce the backbone's gradients only, without the projection head.
    #[arg(long)]
    backbone_only: bool,
    /// Bucket size of GradSync and GradReducer in MiB (DDP's default 25).
    #[arg(long, default_value_t = DEFAULT_BUCKET_BYTES >> 20)]
    bucket_mib: usize,
}

/// Trainable elements of R3D-50, without and with the reference head.
fn parameter_counts() -> (i64, i64) {
    let count = |vs: &VarStore| vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    let backbone = VarStore::new(Device::Cpu);
    let _ = R3d::new(&backbone.root(), &R3dConfig::r3d50());
    let full = VarStore::new(Device::Cpu);
    let _ = Model::new(&full.root(), &R3dConfig::r3d50(), &HeadConfig::reference());
    (count(&backbone), count(&full))
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn time(iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    f()?; // warm-up: connections, buffers
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed());
    }
    Ok(median(times))
}

fn run_rank(args: &Args, launch: &Launch) -> Result<()> {
    let device = match args.device.as_str() {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(launch.local_rank),
        other => bail!("--device must be cpu or cuda, got {other:?}"),
    };
    let group = ProcessGroup::new(launch, &GroupOptions::for_device(device))?;
    let vs = VarStore::new(device);
    if args.backbone_only {
        R3d::new(&vs.root(), &R3dConfig::r3d50())?;
    } else {
        Model::new(&vs.root(), &R3dConfig::r3d50(), &HeadConfig::reference())?;
    }
    let elements: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    let bytes = elements as f64 * 4.0;

    let mut flat = Tensor::ones([elements], (Kind::Float, device));
    let flat_time = time(args.iters, || {
        group.all_reduce_sum_(&mut flat)?;
        if device.is_cuda() {
            tch::Cuda::synchronize(launch.local_rank as i64);
        }
        Ok(())
    })?;
    let bucket_bytes = args.bucket_mib << 20;
    let mut sync = GradSync::new(&vs, &group, bucket_bytes)?;
    let buckets = sync.buckets();
    let sync_time = time(args.iters, || {
        sync.all_reduce_mean()?;
        if device.is_cuda() {
            tch::Cuda::synchronize(launch.local_rank as i64);
        }
        Ok(())
    })?;
    let mut reducer = GradReducer::new(&vs, &group, bucket_bytes)?;
    let params = vs.trainable_variables();
    let reducer_time = time(args.iters, || {
        let loss = params.iter().map(|p| p.sum(Kind::Float)).sum::<Tensor>();
        reducer.prepare_for_backward(&[&loss])?;
        loss.f_backward()?;
        if device.is_cuda() {
            tch::Cuda::synchronize(launch.local_rank as i64);
        }
        Ok(())
    })?;
    group.barrier()?;

    if group.rank() == 0 {
        let mib = args.bucket_mib;
        let w = group.world_size() as f64;
        // A ring all-reduce moves 2 (W − 1) / W of the buffer through each rank's link.
        let bus = |t: Duration| bytes * 2.0 * (w - 1.0) / w / t.as_secs_f64() / 1e9;
        println!(
            "{} ranks over {}, {elements} f32 gradients ({:.1} MiB), median of {} runs:",
            group.world_size(),
            if device.is_cuda() { "NCCL" } else { "Gloo" },
            bytes / (1 << 20) as f64,
            args.iters
        );
        println!("| reduction | time (ms) | bus bandwidth (GB/s) |");
        println!("|---|---|---|");
        for (name, t) in [
            ("one flat all-reduce".to_owned(), flat_time),
            (format!("GradSync::all_reduce_mean, {buckets} buckets of <= {mib} MiB"), sync_time),
            (format!("GradReducer in a backward of Σ p, buckets of <= {mib} MiB"), reducer_time),
        ] {
            println!("| {name} | {:.1} | {:.2} |", t.as_secs_f64() * 1e3, bus(t));
        }
    }
    Ok(())
}

/// Starts this program `ranks` times on 127.0.0.1 and waits for them.
fn launch_local(args: &Args) -> Result<()> {
    let (backbone, full) = parameter_counts();
    println!("R3D-50 gradients per step (f32): backbone {backbone} parameters, {:.1} MiB; with the reference head {full}, {:.1} MiB",
        backbone as f64 * 4.0 / (1 << 20) as f64,
        full as f64 * 4.0 / (1 << 20) as f64);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let exe = std::env::current_exe().context("own executable")?;
    // Each rank's intra-op threads get an equal share of the cores, as torchrun's default of
    // OMP_NUM_THREADS=1 intends: two ranks each spinning an OpenMP team over all cores made
    // GradSync's copies 7x slower on 2 cores.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = std::env::var("OMP_NUM_THREADS")
        .unwrap_or_else(|_| (cores / args.ranks).max(1).to_string());
    println!("{} ranks, OMP_NUM_THREADS={threads} each", args.ranks);
    let children = (0..args.ranks)
        .map(|rank| {
            Command::new(&exe)
                .args(std::env::args_os().skip(1))
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", args.ranks.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env("OMP_NUM_THREADS", &threads)
                .spawn()
                .with_context(|| format!("start rank {rank}"))
        })
        .collect::<Result<Vec<_>>>()?;
    for (rank, mut child) in children.into_iter().enumerate() {
        let status = child.wait()?;
        if !status.success() {
            bail!("rank {rank} failed: {status}");
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.iters == 0 {
        bail!("--iters must be at least 1");
    }
    match Launch::from_env()? {
        Some(launch) => run_rank(&args, &launch),
        None if args.ranks > 1 => launch_local(&args),
        None => bail!("--ranks must be at least 2 (got {})", args.ranks),
    }
    .with_context(|| format!("bench_dist (collective timeout {DEFAULT_TIMEOUT:?})"))
}
