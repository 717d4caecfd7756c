//! Data-parallel benchmark (`just bench-dist`): what the distributed path costs per step,
//! and what one training step of R3D-50 must all-reduce.
//!
//! Started plainly (no launcher variables), it prints four tables, in one run on this
//! machine:
//!
//! 1. world size 1: the trainer's [`Stepper`] on random clips through the plain path, and
//!    through the data-parallel path in a group of one rank (Gloo on 127.0.0.1: the gradient
//!    reducer, the all-gather of InfoNCE, sync BatchNorm or plain BatchNorm), alternating,
//!    1 libtorch thread; the ratio of the median step times;
//! 2. the same global batch as 2 ranks x 1 libtorch thread (this program started twice as
//!    ranks 0 and 1, Gloo) against 1 process x 2 threads, alternating;
//! 3. the gradient bytes of R3D-50 with the reference head, the model `cvrl-train --preset
//!    paper` builds (f32 gradients, whatever the autocast), what a ring all-reduce moves per
//!    GPU, and how long the reducers take to all-reduce them between the 2 local ranks;
//! 4. on paper: the step time at 8 GPUs (one node, NVLink) and at 64 (8 nodes, InfiniBand),
//!    from a measured single-GPU step plus the all-reduce not overlapped with backward.
//!
//! Tables 1 and 2 use the `--preset proxy-cpu` model (R3D-18 at width 16, small stem, 8x32x32
//! clips, head 3 x 256 -> 64) so that the whole benchmark takes a few minutes on 2 cores.
//! Under `torchrun` (or `srun`) it runs as that rank of table 2's measurement and of the
//! all-reduce timing, so the same numbers come from several machines and, with `--device
//! cuda`, NCCL.
//!
//! ```sh
//! cargo run --release -p cvrl-trainer --example bench_dist
//! torchrun --no-python --standalone --nproc-per-node 8 target/release/examples/bench_dist --device cuda
//! ```

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use cvrl_trainer::device::DeviceChoice;
use cvrl_trainer::dist::{
    GradReducer, GradSync, GroupOptions, Launch, Launcher, ProcessGroup, DEFAULT_BUCKET_BYTES,
};
use cvrl_trainer::model::Model;
use cvrl_trainer::train::{MicroBatch, Preset, RunLength, Stepper, TrainConfig, Views};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// What a rank started by this program measures (unset under a real launcher: both).
const ROLE_ENV: &str = "CVRL_BENCH_DIST_ROLE";

#[derive(Parser)]
struct Args {
    /// Timed steps per alternation (after `--warmup` untimed ones).
    #[arg(long, default_value_t = 8)]
    steps: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Alternations of the compared setups.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Global batch of tables 1 and 2, in videos (two clips each).
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Timed repetitions of each all-reduce of R3D-50's gradients.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Ranks of table 2 when not under a launcher.
    #[arg(long, default_value_t = 2)]
    ranks: usize,
    /// cpu (Gloo) or cuda (NCCL; one GPU per rank, by local rank).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Bucket size of GradSync and GradReducer in MiB (DDP's default 25).
    #[arg(long, default_value_t = DEFAULT_BUCKET_BYTES >> 20)]
    bucket_mib: usize,
    /// Measured seconds of one training step of R3D-50 on one GPU (BENCHMARKS.md, GPU: PyTorch
    /// eager on an H200, 64 videos = 128 clips of 16x224x224, bf16, 2026-11-27).
    #[arg(long, default_value_t = 0.362)]
    gpu_step_s: f64,
    /// Videos per GPU in that step.
    #[arg(long, default_value_t = 64)]
    gpu_batch: usize,
    /// All-reduce bus bandwidth within a node, GB/s: NVLink 4 gives an H100 450 GB/s per
    /// direction; two thirds of it is the conservative figure used.
    #[arg(long, default_value_t = 300.0)]
    nvlink_gbs: f64,
    /// All-reduce bus bandwidth between nodes per GPU, GB/s: 8 x 400 Gb/s InfiniBand per
    /// 8-GPU node is 50 GB/s per GPU; 80 % of it.
    #[arg(long, default_value_t = 40.0)]
    ib_gbs: f64,
    /// Run only these tables (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Table>,
}

/// The tables this program prints, for `--only`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Table {
    /// World size 1: the data-parallel path against the plain path.
    WorldOfOne,
    /// 2 ranks x 1 thread against 1 process x 2 threads.
    Ranks,
    /// R3D-50's gradient all-reduce, and the step on paper at 8 and 64 GPUs.
    AllReduce,
}

fn device(args: &Args, local_rank: usize) -> Result<Device> {
    match args.device.as_str() {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(local_rank)),
        other => bail!("--device must be cpu or cuda, got {other:?}"),
    }
}

/// The model of tables 1 and 2, with the global batch.
fn small_config(args: &Args, device: Device, sync_bn: bool) -> TrainConfig {
    TrainConfig {
        batch_size: args.batch_size,
        length: RunLength::Steps(1),
        device: match device {
            Device::Cuda(i) => DeviceChoice::Cuda(i),
            _ => DeviceChoice::Cpu,
        },
        sync_bn,
        ..TrainConfig::preset(Preset::ProxyCpu, Vec::new(), Default::default())
    }
}

/// Wall seconds of `steps` steps of `stepper` after `warmup` untimed ones, on random clips
/// of `videos` videos (this rank's share of the batch).
fn time_steps(
    stepper: &mut Stepper,
    cfg: &TrainConfig,
    videos: usize,
    args: &Args,
) -> Result<Vec<f64>> {
    let clip = 3 * (cfg.frames * cfg.crop * cfg.crop) as usize;
    let view = |k: u64| -> Vec<u8> {
        (0..(clip * videos) as u64)
            .map(|i| ((i ^ (k << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
            .collect()
    };
    let (a, b) = (view(1), view(2));
    let mut times = Vec::with_capacity(args.steps);
    for s in 0..args.warmup + args.steps {
        let t0 = Instant::now();
        stepper.zero_grad();
        let micro = MicroBatch { views: Views::Host { a: &a, b: &b }, labels: None };
        let loss = stepper.backward(s as u64, &micro)?;
        stepper.update(s as u64, 1e-3, &[loss])?;
        if let Device::Cuda(i) = stepper.device() {
            tch::Cuda::synchronize(i as i64);
        }
        if s >= args.warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    Ok(times)
}

fn median(times: &[f64]) -> f64 {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Table 1: the plain path against a group of one rank, alternating, 1 thread.
fn world_of_one(args: &Args) -> Result<()> {
    tch::set_num_threads(1);
    let device = device(args, 0)?;
    let launch = Launch {
        launcher: Launcher::Torchrun,
        rank: 0,
        local_rank: 0,
        world_size: 1,
        master_addr: "127.0.0.1".into(),
        master_port: free_port()?,
    };
    let group = ProcessGroup::new(&launch, &GroupOptions::for_device(device))?;
    let plain_cfg = small_config(args, device, false);
    let sync_cfg = small_config(args, device, true);
    let mut setups = vec![
        ("plain path (no group)", Stepper::new(&plain_cfg, None, None)?, &plain_cfg, vec![]),
        (
            "data-parallel path, sync BN (the default)",
            Stepper::new(&sync_cfg, None, Some(&group))?,
            &sync_cfg,
            vec![],
        ),
        (
            "data-parallel path, --sync-bn false",
            Stepper::new(&plain_cfg, None, Some(&group))?,
            &plain_cfg,
            vec![],
        ),
    ];
    for _ in 0..args.rounds {
        for (_, stepper, cfg, times) in &mut setups {
            times.extend(time_steps(stepper, cfg, args.batch_size, args)?);
        }
    }
    println!(
        "\n### World size 1: data-parallel path against the plain path\n\n{}, {} videos ({} \
         clips) a step, 1 libtorch thread, {} alternations x {} timed steps, median:\n",
        plain_cfg.model_description(),
        args.batch_size,
        2 * args.batch_size,
        args.rounds,
        args.steps
    );
    println!("| path | s/step | vs plain |");
    println!("|---|---:|---:|");
    let plain = median(&setups[0].3);
    for (name, _, _, times) in &setups {
        let m = median(times);
        println!("| {name} | {m:.4} | {:.3}x |", m / plain);
    }
    Ok(())
}

/// Starts this program `ranks` times on 127.0.0.1 in `role`, 1 libtorch thread each, and
/// returns rank 0's standard output.
fn spawn_ranks(args: &Args, role: &str) -> Result<String> {
    let port = free_port()?;
    let exe = std::env::current_exe().context("own executable")?;
    let children = (0..args.ranks)
        .map(|rank| {
            Command::new(&exe)
                .args(std::env::args_os().skip(1))
                .env(ROLE_ENV, role)
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", args.ranks.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                // torchrun's default: one intra-op thread per rank.
                .env("OMP_NUM_THREADS", "1")
                .stdout(Stdio::piped())
                .spawn()
                .with_context(|| format!("start rank {rank}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut rank0 = String::new();
    for (rank, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("rank {rank} failed: {}", out.status);
        }
        if rank == 0 {
            rank0 = String::from_utf8_lossy(&out.stdout).into_owned();
        }
    }
    Ok(rank0)
}

/// Table 2: `ranks` ranks x 1 thread against 1 process x `ranks` threads, same global batch.
fn ranks_against_threads(args: &Args) -> Result<()> {
    let threads = args.ranks as i32;
    tch::set_num_threads(threads);
    let cfg = small_config(args, device(args, 0)?, true);
    let mut alone = Stepper::new(&cfg, None, None)?;
    let (mut one, mut many) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        one.extend(time_steps(&mut alone, &cfg, args.batch_size, args)?);
        let out = spawn_ranks(args, "steps")?;
        let times: Vec<f64> = serde_json::from_str(out.trim()).context("rank 0's step times")?;
        many.extend(times);
    }
    let (one, many) = (median(&one), median(&many));
    println!(
        "\n### {} ranks x 1 thread against 1 process x {threads} threads\n\n{}, global batch \
         {} videos, Gloo on 127.0.0.1, sync BN, {} alternations x {} timed steps, median:\n",
        args.ranks,
        cfg.model_description(),
        args.batch_size,
        args.rounds,
        args.steps
    );
    println!("| setup | s/step | clips/s | vs 1 process |");
    println!("|---|---:|---:|---:|");
    let clips = 2.0 * args.batch_size as f64;
    println!("| 1 process x {threads} threads | {one:.4} | {:.1} | 1.000x |", clips / one);
    println!(
        "| {} ranks x 1 thread | {many:.4} | {:.1} | {:.3}x |",
        args.ranks,
        clips / many,
        many / one
    );
    Ok(())
}

/// Trainable elements of the model `cvrl-train --preset paper` builds: R3D-50 and the
/// reference head.
fn paper_parameters() -> Result<i64> {
    let cfg = TrainConfig::preset(Preset::Paper, Vec::new(), Default::default());
    let vs = VarStore::new(Device::Cpu);
    Model::new(&vs.root(), &cfg.backbone(), &cfg.head())?;
    Ok(vs.trainable_variables().iter().map(|t| t.numel() as i64).sum())
}

/// Bytes one GPU sends (and receives) in a ring all-reduce of `bytes` over `n` GPUs.
fn ring_bytes(bytes: f64, n: f64) -> f64 {
    bytes * 2.0 * (n - 1.0) / n
}

fn time(iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?; // warm-up: connections, buffers
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    Ok(median(&times))
}

/// A rank's all-reduce of the paper model's gradients, three ways; rank 0 prints the rows.
fn rank_all_reduce(args: &Args, group: &ProcessGroup, device: Device) -> Result<()> {
    let cfg = TrainConfig::preset(Preset::Paper, Vec::new(), Default::default());
    let vs = VarStore::new(device);
    Model::new(&vs.root(), &cfg.backbone(), &cfg.head())?;
    let elements: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    let sync = |d: Device| {
        if let Device::Cuda(i) = d {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let mut flat = Tensor::ones([elements], (Kind::Float, device));
    let flat_time = time(args.iters, || {
        group.all_reduce_sum_(&mut flat)?;
        sync(device);
        Ok(())
    })?;
    let bucket_bytes = args.bucket_mib << 20;
    let mut grads = GradSync::new(&vs, group, bucket_bytes)?;
    let buckets = grads.buckets();
    let sync_time = time(args.iters, || {
        grads.all_reduce_mean()?;
        sync(device);
        Ok(())
    })?;
    let mut reducer = GradReducer::new(&vs, group, bucket_bytes)?;
    let params = vs.trainable_variables();
    let reducer_time = time(args.iters, || {
        let loss = params.iter().map(|p| p.sum(Kind::Float)).sum::<Tensor>();
        reducer.prepare_for_backward(&[&loss])?;
        loss.f_backward()?;
        sync(device);
        Ok(())
    })?;
    group.barrier()?;
    if group.rank() == 0 {
        let w = group.world_size() as f64;
        let bytes = elements as f64 * 4.0;
        let bus = |t: f64| ring_bytes(bytes, w) / t / 1e9;
        let mib = args.bucket_mib;
        let backend = if device.is_cuda() { "NCCL" } else { "Gloo" };
        for (name, t) in [
            ("one flat all-reduce".to_owned(), flat_time),
            (format!("GradSync::all_reduce_mean, {buckets} buckets of <= {mib} MiB"), sync_time),
            (format!("GradReducer in a backward of Σ p, buckets of <= {mib} MiB"), reducer_time),
        ] {
            println!("| {w} ranks, {backend}: {name} | {:.1} | {:.2} |", t * 1e3, bus(t));
        }
    }
    Ok(())
}

/// Tables 3 and 4: the paper model's gradient bytes, the local all-reduce timings, and the
/// step time on paper at 8 and 64 GPUs.
fn all_reduce_tables(args: &Args) -> Result<()> {
    let elements = paper_parameters()?;
    let bytes = elements as f64 * 4.0;
    let mb = |b: f64| b / 1e6;
    println!(
        "\n### All-reduce per step: R3D-50 + reference head (`--preset paper`)\n\n{elements} \
         trainable parameters: {:.1} MB of f32 gradients a step (autocast keeps the \
         parameters and their gradients in f32). A ring all-reduce sends and receives 2(n-1)/n \
         of that per GPU: {:.1} MB at 2 GPUs, {:.1} MB at 8, {:.1} MB at 64.\n",
        mb(bytes),
        mb(ring_bytes(bytes, 2.0)),
        mb(ring_bytes(bytes, 8.0)),
        mb(ring_bytes(bytes, 64.0)),
    );
    println!("| reduction (median of {} runs) | ms | bus GB/s |", args.iters);
    println!("|---|---:|---:|");
    print!("{}", spawn_ranks(args, "all_reduce")?);

    let step = args.gpu_step_s;
    println!(
        "\n### On paper: R3D-50 at 8 and 64 GPUs\n\nOne GPU's step {step:.3} s ({} videos = {} \
         clips of 16x224x224, bf16; BENCHMARKS.md, GPU), the same per-GPU batch at every size; \
         all-reduce time = ring bytes per GPU / bus bandwidth, none of it hidden behind \
         backward (the reducer overlaps it in practice: an upper bound); the all-gather of \
         the embeddings (2 x {} x 128 f32 per GPU) is left out.\n",
        args.gpu_batch,
        2 * args.gpu_batch,
        args.gpu_batch
    );
    println!("| GPUs | link, bus bandwidth assumed | global batch | all-reduce | s/step | clips/s | scaling |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    let clips = 2.0 * args.gpu_batch as f64;
    println!("| 1 | - | {} | 0 | {step:.3} | {:.0} | 1.00 |", args.gpu_batch, clips / step);
    for (n, link, gbs) in [
        (8usize, "NVLink, one node", args.nvlink_gbs),
        (64, "InfiniBand 8 x 400 Gb/s per node, 8 nodes", args.ib_gbs),
    ] {
        let t = ring_bytes(bytes, n as f64) / (gbs * 1e9);
        let s = step + t;
        println!(
            "| {n} | {link}, {gbs:.0} GB/s | {} | {:.1} ms | {s:.3} | {:.0} | {:.3} |",
            n * args.gpu_batch,
            t * 1e3,
            clips * n as f64 / s,
            step / s
        );
    }
    Ok(())
}

/// One rank under a launcher, or started by [`spawn_ranks`] in a `role`.
fn run_rank(args: &Args, launch: &Launch, role: Option<&str>) -> Result<()> {
    if let Some(n) = std::env::var("OMP_NUM_THREADS").ok().and_then(|v| v.parse().ok()) {
        tch::set_num_threads(n);
    }
    let device = device(args, launch.local_rank)?;
    let group = ProcessGroup::new(launch, &GroupOptions::for_device(device))?;
    if role != Some("all_reduce") {
        let cfg = small_config(args, device, true);
        let mut stepper = Stepper::new(&cfg, None, Some(&group))?;
        stepper.sync_weights(0)?;
        let times = time_steps(&mut stepper, &cfg, args.batch_size / launch.world_size, args)?;
        if group.rank() == 0 {
            println!("{}", serde_json::to_string(&times)?);
        }
    }
    if role != Some("steps") {
        rank_all_reduce(args, &group, device)?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.iters == 0 || args.steps == 0 || args.rounds == 0 {
        bail!("--iters, --steps and --rounds must be at least 1");
    }
    if args.ranks < 2 || args.batch_size % args.ranks != 0 {
        bail!("--ranks must be at least 2 and divide --batch-size");
    }
    let role = std::env::var(ROLE_ENV).ok();
    if let Some(launch) = Launch::from_env()? {
        return run_rank(&args, &launch, role.as_deref());
    }
    let started = Instant::now();
    println!("bench_dist: {} ranks on 127.0.0.1, {}", args.ranks, args.device);
    let wanted = |t: Table| args.only.is_empty() || args.only.contains(&t);
    if wanted(Table::WorldOfOne) {
        world_of_one(&args)?;
    }
    if wanted(Table::Ranks) {
        ranks_against_threads(&args)?;
    }
    if wanted(Table::AllReduce) {
        all_reduce_tables(&args)?;
    }
    println!("\nbench_dist: {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
