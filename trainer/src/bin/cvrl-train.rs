//! `cvrl-train`: CVRL pretraining of an R3D encoder on shard sets made by `cvrl-shard`.
//!
//! Only parses flags, draws the progress bar and reports; the work is
//! [`cvrl_trainer::train::train`]. Links libtorch and cvrl-formats, never FFmpeg.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use cvrl_formats::SetPath;
use cvrl_trainer::augment::{AugmentOn, AugmentTransform, Augmentation};
use cvrl_trainer::device::{pick_device, DeviceChoice};
use cvrl_trainer::dist::{GroupOptions, Launch, ProcessGroup};
use cvrl_trainer::eval::knn::KnnMonitor;
use cvrl_trainer::model::Stem;
use cvrl_trainer::optim::OptimizerKind;
use cvrl_trainer::sampler::IntervalDistribution;
use cvrl_trainer::train::{
    train_with, Arch, Monitor, Plan, Preset, Reporter, RunLength, SplitChoice, StepLog, TrainConfig,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Pretrain a 3D ResNet with CVRL (temporally consistent augmentation, InfoNCE over two clips
/// of each video) on one or more shard sets made by `cvrl-shard build`.
///
/// RUN_DIR receives log.jsonl (one JSON object per step: step, loss, lr, clips/s, data
/// wait), the same scalars as TensorBoard event files in tb/ (`tensorboard --logdir
/// RUN_DIR/tb`), ckpt-STEP/ checkpoints (model.safetensors, optimizer.safetensors,
/// state.json), encoder.safetensors (the backbone alone, for evaluation) and run.json (the
/// configuration).
///
/// --supervised trains the same backbone on the same augmented clips with the set's labels
/// instead (a linear classifier, cross-entropy): the baseline CVRL is compared with, with the
/// same checkpoints and encoder export.
///
/// Several processes (GPUs, machines) train one run together when started by torchrun
/// (`torchrun --no-python --nproc-per-node 8 cvrl-train ...`: RANK, WORLD_SIZE, MASTER_ADDR,
/// MASTER_PORT) or by Slurm's srun (SLURM_PROCID, SLURM_NTASKS, the first node as master):
/// --batch-size is then the global batch, each rank takes its share of every batch on
/// cuda:LOCAL_RANK (or the CPU, over Gloo), InfoNCE scores every clip against the clips of
/// all ranks, and rank 0 alone writes RUN_DIR. Without those variables, one process trains.
///
/// Every setting starts from a preset (`--preset`, default `demo`: a small CPU demo;
/// `paper` is the reference run) and each flag given overrides it; `--help` lists every
/// preset's settings at the end. Exit status: 0 when training finished, 1 on an error (a
/// NaN loss included: the last good checkpoint is named), 2 on bad usage.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// A shard set directory; repeat the flag to train on several sets as one.
    #[arg(long, required = true, value_name = "DIR")]
    shards: Vec<PathBuf>,
    /// Which videos to train on: auto (the train split of a set that has splits, such as
    /// one built from videos/train/... and videos/val/...; every video of a set without),
    /// all, or a split's name.
    #[arg(long, value_name = "SPLIT")]
    split: Option<SplitChoice>,
    /// The run directory (created if needed).
    #[arg(long, value_name = "RUN_DIR")]
    out: PathBuf,
    /// Starting point for every flag below (its settings are listed at the end of --help);
    /// flags given on the command line override it.
    #[arg(long, value_enum, default_value_t = Preset::Demo)]
    preset: Preset,

    /// Backbone: r3d18, r3d34, r3d50, r3d101 or r3d152.
    #[arg(long)]
    model: Option<Arch>,
    /// Channels of the backbone's stem; each later stage doubles them (reference 64).
    /// 16 or 32 make CPU experiments several times faster.
    #[arg(long)]
    base_width: Option<u32>,
    /// Scales every channel count of the backbone (the paper's 2x, 4x models).
    #[arg(long)]
    width_multiplier: Option<u32>,
    /// The backbone's stem: reference (conv 5x7x7, spatial stride 2, then a max-pool), or
    /// small (conv 5x3x3, spatial stride 1, then the pool) for crops of 32-64 pixels, at
    /// 4x the compute of the later stages. Not in the paper.
    #[arg(long)]
    stem: Option<Stem>,
    /// Dense-BN-ReLU layers of the projection head.
    #[arg(long)]
    head_layers: Option<usize>,
    /// Units of each hidden layer of the projection head.
    #[arg(long)]
    head_hidden_dim: Option<i64>,
    /// Size of the embedding the loss compares.
    #[arg(long)]
    embedding_dim: Option<i64>,

    /// Frames per clip.
    #[arg(long)]
    frames: Option<u32>,
    /// Frames between clip frames, counted at --base-fps.
    #[arg(long)]
    stride: Option<u32>,
    /// The frame rate --stride is counted at; other rates step proportionally.
    #[arg(long)]
    base_fps: Option<f64>,
    /// Side of the square augmented frames, in pixels.
    #[arg(long)]
    crop: Option<u32>,
    /// How far apart the two clips of a video are: decreasing, uniform, increasing or power:P
    /// (CVRL's choices), or same (both clips from one start: the spatial-only ablation).
    #[arg(long)]
    interval_distribution: Option<IntervalDistribution>,
    /// Spatial augmentation: cvrl (crop, flip, colour, grayscale, blur drawn once per clip),
    /// per-frame (the same, drawn for every frame: the temporally inconsistent ablation),
    /// light (half-strength colour, no blur or solarization: for small CPU runs, not the
    /// reference), light-per-frame (light drawn for every frame) or none (whole frames
    /// resized: the temporal-only ablation).
    #[arg(long)]
    augmentation: Option<Augmentation>,
    /// Where the per-pixel augmentation runs: device (batched tensor operations on the
    /// training device; the loader's threads only read frames and cut the crop boxes), host
    /// (in the loader's threads) or auto (device on a GPU, host on the CPU). The same
    /// parameters are drawn either way and the pixels agree within one level.
    #[arg(long, value_name = "WHERE")]
    augment_on: Option<AugmentOn>,
    /// Smallest random crop as a fraction of the frame's area (reference 0.3); raise it for
    /// data whose subject is small in the frame.
    #[arg(long)]
    crop_area_min: Option<f64>,
    /// Probability of turning a clip grey [default: the augmentation's, 0.2 as in the
    /// reference]; raise it for flat-coloured data (the proxy), where colour is otherwise
    /// the easiest cue to match two clips by.
    #[arg(long, value_name = "P")]
    grayscale_p: Option<f64>,
    /// Start the backbone from an exported encoder (a run's encoder.safetensors) instead of
    /// random weights: fine-tuning, usually with --supervised.
    #[arg(long, value_name = "FILE")]
    init_encoder: Option<PathBuf>,
    /// Every N steps (and at the end), score the backbone by kNN on --eval-train/--eval-val
    /// (log.jsonl `knn_top1`, TensorBoard `eval/knn_top1`); 0: never.
    #[arg(long, value_name = "N")]
    eval_every: Option<u64>,
    /// Labelled shard set the kNN check fits on (repeatable).
    #[arg(long, value_name = "DIR")]
    eval_train: Vec<SetPath>,
    /// Labelled shard set the kNN check scores (repeatable).
    #[arg(long, value_name = "DIR")]
    eval_val: Vec<SetPath>,

    /// Videos per optimiser step; each gives two clips, all of them negatives for each other. The learning rate is scaled by this (the effective batch).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Split each step into N forward/backward passes of batch-size / N videos and add up
    /// their gradients: the paper's batch of 1024 on one GPU (--accumulate 16: 64 videos a
    /// pass). Negatives and BatchNorm statistics then come from each pass alone (128 clips,
    /// not 2048): the update averages as many videos as the paper's, the contrastive task
    /// is that of the smaller batch. Lower the memory needed by raising it.
    #[arg(long, value_name = "N")]
    accumulate: Option<usize>,
    /// Supervised baseline: train backbone + linear classifier with cross-entropy on the
    /// labels of the shard set (its class folders), both augmented views labelled. Same
    /// augmentation, schedule, checkpoints and encoder export as CVRL.
    #[arg(long)]
    supervised: bool,
    /// Passes over the set (videos / batch steps each, the last partial batch dropped).
    #[arg(long)]
    epochs: Option<f64>,
    /// Train this many steps in all, instead of --epochs.
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<u64>,
    /// Peak learning rate for 1024 videos per step. Scaled linearly: the run uses
    /// lr x batch-size / 1024 (0.32 at batch 1024, 0.0025 at batch 8).
    #[arg(long)]
    lr: Option<f64>,
    /// Epochs of linear warm-up from 0 before the cosine decay to 0.
    #[arg(long)]
    warmup_epochs: Option<f64>,
    /// Weight decay on conv and dense kernels (not BatchNorm, not biases).
    #[arg(long)]
    weight_decay: Option<f64>,
    /// sgd (momentum, the reference's) or lars (SimCLR's, trust ratio on kernels).
    #[arg(long)]
    optimizer: Option<OptimizerKind>,
    /// Momentum of SGD and LARS.
    #[arg(long)]
    momentum: Option<f64>,
    /// LARS trust coefficient.
    #[arg(long)]
    lars_eta: Option<f64>,
    /// InfoNCE temperature.
    #[arg(long)]
    temperature: Option<f64>,
    /// Seed of the initial weights, the video order and every augmentation.
    #[arg(long)]
    seed: Option<u64>,

    /// Loader threads decompressing and augmenting clips.
    #[arg(long)]
    workers: Option<usize>,
    /// Batches each loader thread may prepare ahead.
    #[arg(long)]
    prefetch: Option<usize>,
    /// Steps between checkpoints (0: only at the end); there is always one at the end.
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Checkpoints kept (the newest).
    #[arg(long)]
    keep_checkpoints: Option<usize>,
    /// Continue from a checkpoint: a ckpt-* directory, a file in one, or a run directory
    /// (its latest checkpoint), usually RUN_DIR itself.
    #[arg(long, value_name = "PATH")]
    resume: Option<PathBuf>,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long)]
    device: Option<DeviceChoice>,
    /// Train in f32 on CUDA too (default there: bf16 autocast; the CPU always runs f32).
    #[arg(long)]
    fp32: bool,
    /// Keep conv weights and clips in the channels-last 3D layout (NDHWC), which cuDNN's 3D
    /// convolutions prefer: the same model, with float sums in another order.
    /// `--channels-last false` turns off a preset's.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    channels_last: Option<bool>,
    /// libtorch's CPU threads (default: one per core).
    #[arg(long)]
    threads: Option<i32>,
    /// Several ranks: BatchNorm statistics over the whole batch (true, the reference's
    /// use_sync_bn) or over each rank's share (false). No effect on one process.
    #[arg(long, value_name = "BOOL")]
    sync_bn: Option<bool>,
    /// Several ranks: seconds a rank waits for the others in a collective before the run
    /// stops with an error naming the rank that stopped answering (a rank that died stops
    /// the others at once).
    #[arg(long, value_name = "SECONDS")]
    dist_timeout: Option<u64>,
    /// Join a process group even when the launcher starts one process (`torchrun
    /// --nproc-per-node 1`): the data-parallel path, NCCL on a GPU, in a world of one, to
    /// check or time it. Without it a world of one trains as a single process.
    #[arg(long)]
    dist_always: bool,
    /// No progress bar or status lines.
    #[arg(long, short)]
    quiet: bool,
}

/// Sets `field` from `flag` when the flag was given.
fn lay<T: Clone>(field: &mut T, flag: &Option<T>) {
    if let Some(value) = flag {
        *field = value.clone();
    }
}

impl Cli {
    /// The preset with every flag given laid over it.
    fn config(&self) -> TrainConfig {
        let mut cfg = TrainConfig::preset(self.preset, self.shards.clone(), self.out.clone());
        lay(&mut cfg.split, &self.split);
        lay(&mut cfg.model, &self.model);
        lay(&mut cfg.base_width, &self.base_width);
        lay(&mut cfg.width_multiplier, &self.width_multiplier);
        lay(&mut cfg.stem, &self.stem);
        lay(&mut cfg.head_layers, &self.head_layers);
        lay(&mut cfg.head_hidden_dim, &self.head_hidden_dim);
        lay(&mut cfg.embedding_dim, &self.embedding_dim);
        lay(&mut cfg.frames, &self.frames);
        lay(&mut cfg.stride, &self.stride);
        lay(&mut cfg.base_fps, &self.base_fps);
        lay(&mut cfg.crop, &self.crop);
        lay(&mut cfg.batch_size, &self.batch_size);
        lay(&mut cfg.accumulate, &self.accumulate);
        cfg.supervised |= self.supervised;
        lay(&mut cfg.channels_last, &self.channels_last);
        lay(&mut cfg.length, &self.epochs.map(RunLength::Epochs));
        lay(&mut cfg.length, &self.steps.map(RunLength::Steps));
        lay(&mut cfg.lr, &self.lr);
        lay(&mut cfg.warmup_epochs, &self.warmup_epochs);
        lay(&mut cfg.weight_decay, &self.weight_decay);
        lay(&mut cfg.optimizer, &self.optimizer);
        lay(&mut cfg.momentum, &self.momentum);
        lay(&mut cfg.lars_eta, &self.lars_eta);
        lay(&mut cfg.temperature, &self.temperature);
        lay(&mut cfg.interval, &self.interval_distribution);
        lay(&mut cfg.augmentation, &self.augmentation);
        lay(&mut cfg.augment_on, &self.augment_on);
        lay(&mut cfg.crop_area_min, &self.crop_area_min);
        lay(&mut cfg.grayscale_p, &self.grayscale_p.map(Some));
        lay(&mut cfg.init_encoder, &self.init_encoder.clone().map(Some));
        lay(&mut cfg.eval_every, &self.eval_every);
        if !self.eval_train.is_empty() {
            cfg.eval_train = self.eval_train.clone();
        }
        if !self.eval_val.is_empty() {
            cfg.eval_val = self.eval_val.clone();
        }
        lay(&mut cfg.seed, &self.seed);
        lay(&mut cfg.workers, &self.workers);
        lay(&mut cfg.prefetch, &self.prefetch);
        lay(&mut cfg.checkpoint_every, &self.checkpoint_every);
        lay(&mut cfg.keep_checkpoints, &self.keep_checkpoints);
        lay(&mut cfg.device, &self.device);
        cfg.fp32 |= self.fp32;
        lay(&mut cfg.threads, &self.threads.map(Some));
        lay(&mut cfg.sync_bn, &self.sync_bn);
        lay(&mut cfg.dist_timeout_s, &self.dist_timeout);
        cfg
    }
}

/// The end of `--help`: every preset's settings, from [`TrainConfig::preset`] itself.
fn presets_help() -> String {
    let mut text = String::from("Presets (flags given override these):\n");
    for preset in Preset::value_variants() {
        let cfg = TrainConfig::preset(*preset, Vec::new(), PathBuf::new());
        let json = serde_json::to_value(&cfg).expect("the configuration serialises");
        let fields: Vec<String> = json
            .as_object()
            .expect("an object")
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "shards" | "out"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        text.push_str(&format!("  {preset}: {}\n", fields.join(" ")));
    }
    text
}

/// The progress bar (when stderr is a terminal), else a status line every 30 s.
struct Bar {
    bar: ProgressBar,
    quiet: bool,
    last_line: Option<Instant>,
    total: u64,
}

impl Bar {
    fn new(quiet: bool) -> Bar {
        let target = if quiet || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} {wide_bar} {pos}/{len} steps, ETA {eta} {msg}",
            )
            .expect("valid template"),
        );
        Bar { bar, quiet, last_line: None, total: 0 }
    }

    fn say(&self, line: &str) {
        if self.bar.is_hidden() {
            if !self.quiet {
                eprintln!("{line}");
            }
        } else {
            self.bar.println(line);
        }
    }
}

fn status(log: &StepLog) -> String {
    format!(
        "loss {:.4}, lr {:.3e}, {:.1} clips/s, data wait {:.0}%",
        log.loss,
        log.lr,
        log.clips_per_s,
        100.0 * log.data_wait
    )
}

impl Reporter for Bar {
    fn start(&mut self, plan: &Plan, start_step: u64, device: &str) {
        self.total = plan.total_steps;
        self.bar.set_length(plan.total_steps);
        self.bar.set_position(start_step);
        self.bar.reset_eta();
        self.say(&format!(
            "training on {device}: {} videos, {} steps per epoch, steps {start_step}..{} \
             ({} warm-up), peak lr {:.4e}",
            plan.videos, plan.steps_per_epoch, plan.total_steps, plan.warmup_steps, plan.base_lr
        ));
        if plan.accumulate > 1 {
            self.say(&format!(
                "each step: {} passes of {} videos, gradients added (BatchNorm statistics, \
                 and CVRL's negatives, per pass)",
                plan.accumulate, plan.micro_batch
            ));
        }
    }

    fn step(&mut self, log: &StepLog) {
        self.bar.set_position(log.step + 1);
        self.bar.set_message(status(log));
        if self.bar.is_hidden() {
            let due = self.last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(30));
            if due || log.step + 1 == self.total {
                self.say(&format!("step {}/{}: {}", log.step + 1, self.total, status(log)));
                self.last_line = Some(Instant::now());
            }
        }
    }

    fn note(&mut self, message: &str) {
        // Warnings are shown even with --quiet.
        if self.quiet && message.starts_with("warning") {
            eprintln!("{message}");
        } else {
            self.say(message);
        }
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

fn main() -> ExitCode {
    // A file-size limit (`ulimit -f`) then makes a write fail with an error naming the file,
    // which keeps the last good checkpoint, instead of killing the process mid-write.
    // SAFETY: setting a signal's disposition to "ignore" before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // A CPU step frees and re-allocates every activation: keep that memory instead of
    // page-faulting it in again (6-13 % of a `SIZE=cpu` step, BENCHMARKS.md).
    cvrl_trainer::device::keep_freed_host_memory();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cvrl-train: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Joins the data-parallel run `launch` describes; `--device auto` becomes this rank's GPU
/// (`cuda:LOCAL_RANK`) when there are GPUs.
fn join(launch: &Launch, cfg: &mut TrainConfig) -> Result<ProcessGroup> {
    if cfg.device == DeviceChoice::Auto && tch::Cuda::is_available() {
        cfg.device = DeviceChoice::Cuda(launch.local_rank);
    }
    let device = pick_device(cfg.device)?;
    let options = GroupOptions {
        timeout: Duration::from_secs(cfg.dist_timeout_s),
        ..GroupOptions::for_device(device)
    };
    let group = ProcessGroup::new(launch, &options)?;
    if group.rank() == 0 {
        eprintln!(
            "cvrl-train: rank 0 of {} ({:?} launch), {} per rank",
            group.world_size(),
            launch.launcher,
            cvrl_trainer::device::describe(device)
        );
    }
    Ok(group)
}

/// The kNN check `--eval-every` asks for, with its labelled sets opened.
fn knn_monitor(cfg: &TrainConfig) -> Result<Option<KnnMonitor>> {
    if cfg.eval_every == 0 {
        return Ok(None);
    }
    if cfg.eval_train.is_empty() || cfg.eval_val.is_empty() {
        bail!("--eval-every: needs labelled --eval-train and --eval-val shard sets");
    }
    let monitor = KnnMonitor::new(&cfg.eval_train, &cfg.eval_val, cfg.clip(), cfg.crop)
        .context("--eval-every")?;
    Ok(Some(monitor))
}

fn run() -> Result<()> {
    let matches = Cli::command().after_long_help(presets_help()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let mut cfg = cli.config();
    let launch = if cli.dist_always {
        let launch = Launch::from_env_any()?;
        Some(launch.context("--dist-always: no torchrun or Slurm variables are set")?)
    } else {
        Launch::from_env()?
    };
    let group = match &launch {
        Some(launch) => Some(join(launch, &mut cfg)?),
        None => None,
    };
    let rank0 = group.as_ref().is_none_or(|g| g.rank() == 0);
    let mut bar = Bar::new(cli.quiet || !rank0);
    bar.say(&format!("cvrl-train: {} -> {}", cfg.model_description(), cfg.out.display()));
    let mut monitor = if rank0 { knn_monitor(&cfg)? } else { None };
    let transform = AugmentTransform::for_run(cfg.augmentation, cfg.crop)
        .with_min_area(cfg.crop_area_min)
        .with_grayscale(cfg.grayscale_p);
    let monitor = monitor.as_mut().map(|m| m as &mut dyn Monitor);
    let summary = train_with(
        &cfg,
        cli.resume.as_deref(),
        &mut bar,
        Arc::new(transform),
        monitor,
        group.as_ref(),
    )?;
    let mean_step = if summary.step_times.is_empty() {
        0.0
    } else {
        summary.step_times.iter().sum::<f64>() / summary.step_times.len() as f64
    };
    bar.say(&format!(
        "done: steps {}..{}, last loss {}, {:.3} s/step; checkpoint {}, encoder {}",
        summary.start_step,
        summary.plan.total_steps,
        summary.losses.last().map_or("-".to_owned(), |l| format!("{l:.4}")),
        mean_step,
        summary.last_checkpoint.as_ref().map_or("-".to_owned(), |p| p.display().to_string()),
        summary.encoder.display(),
    ));
    if summary.skipped_videos > 0 {
        bar.say(&format!(
            "{} videos could not be read and were replaced by the next ones (each named in a \
             warning above; log.jsonl skipped_videos): rebuild or verify the shard set \
             (cvrl-inspect --verify)",
            summary.skipped_videos
        ));
    }
    Ok(())
}
