//! `cvrl-train`: CVRL pretraining of an R3D encoder on shard sets made by `cvrl-shard`.
//!
//! Only parses flags, draws the progress bar and reports; the work is
//! [`cvrl_trainer::train::train`]. Links libtorch and cvrl-formats, never FFmpeg.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use cvrl_trainer::model::Stem;
use cvrl_trainer::optim::OptimizerKind;
use cvrl_trainer::sampler::IntervalDistribution;
use cvrl_trainer::train::{
    train, Arch, Augmentation, DeviceChoice, Plan, Reporter, RunLength, StepLog, TrainConfig,
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
/// The defaults are a small CPU demo; `--preset paper` is the reference run. Exit status: 0
/// when training finished, 1 on an error (a NaN loss included: the last good checkpoint is
/// named), 2 on bad usage.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// A shard set directory; repeat the flag to train on several sets as one.
    #[arg(long, required = true, value_name = "DIR")]
    shards: Vec<PathBuf>,
    /// The run directory (created if needed).
    #[arg(long, value_name = "RUN_DIR")]
    out: PathBuf,
    /// Starting point for the flags below. `paper`: r3d50, 16 frames at stride 2, 224-pixel
    /// crops, batch 1024, 200 epochs, lr 0.32 per 1024 videos, 5 warm-up epochs. Flags given
    /// on the command line override the preset.
    #[arg(long, value_enum, default_value_t = Preset::Cpu)]
    preset: Preset,

    /// Backbone: r3d18, r3d34, r3d50, r3d101 or r3d152 [paper: r3d50].
    #[arg(long, default_value = "r3d18")]
    model: Arch,
    /// Channels of the backbone's stem; each later stage doubles them (reference 64).
    /// 16 or 32 make CPU experiments several times faster.
    #[arg(long, default_value_t = 64)]
    base_width: u32,
    /// Scales every channel count of the backbone (the paper's 2x, 4x models).
    #[arg(long, default_value_t = 1)]
    width_multiplier: u32,
    /// The backbone's stem: reference (conv 5x7x7, spatial stride 2, then a max-pool), or
    /// small (conv 5x3x3, spatial stride 1, then the pool) for crops of 32-64 pixels, at
    /// 4x the compute of the later stages. Not in the paper.
    #[arg(long, default_value = "reference")]
    stem: Stem,
    /// Dense-BN-ReLU layers of the projection head.
    #[arg(long, default_value_t = 3)]
    head_layers: usize,
    /// Units of each hidden layer of the projection head.
    #[arg(long, default_value_t = 2048)]
    head_hidden_dim: i64,
    /// Size of the embedding the loss compares.
    #[arg(long, default_value_t = 128)]
    embedding_dim: i64,

    /// Frames per clip [paper: 16].
    #[arg(long, default_value_t = 8)]
    frames: u32,
    /// Frames between clip frames, counted at --base-fps.
    #[arg(long, default_value_t = 2)]
    stride: u32,
    /// The frame rate --stride is counted at; other rates step proportionally.
    #[arg(long, default_value_t = 25.0)]
    base_fps: f64,
    /// Side of the square augmented frames, in pixels [paper: 224].
    #[arg(long, default_value_t = 64)]
    crop: u32,
    /// How far apart the two clips of a video are: decreasing, uniform, increasing or power:P
    /// (CVRL's choices), or same (both clips from one start: the spatial-only ablation).
    #[arg(long, default_value = "decreasing")]
    interval_distribution: IntervalDistribution,
    /// Spatial augmentation: cvrl (crop, flip, colour, grayscale, blur drawn once per clip),
    /// per-frame (the same, drawn for every frame: the temporally inconsistent ablation),
    /// light (half-strength colour, no blur or solarization: for small CPU runs, not the
    /// reference), light-per-frame (light drawn for every frame) or none (whole frames
    /// resized: the temporal-only ablation).
    #[arg(long, default_value = "cvrl")]
    augmentation: Augmentation,
    /// Smallest random crop as a fraction of the frame's area (reference 0.3); raise it for
    /// data whose subject is small in the frame.
    #[arg(long, default_value_t = 0.3)]
    crop_area_min: f64,
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
    #[arg(long, default_value_t = 0, value_name = "N")]
    eval_every: u64,
    /// Labelled shard set the kNN check fits on (repeatable).
    #[arg(long, value_name = "DIR")]
    eval_train: Vec<PathBuf>,
    /// Labelled shard set the kNN check scores (repeatable).
    #[arg(long, value_name = "DIR")]
    eval_val: Vec<PathBuf>,

    /// Videos per optimiser step; each gives two clips, all of them negatives for each other
    /// [paper: 1024]. The learning rate is scaled by this (the effective batch).
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Split each step into N forward/backward passes of batch-size / N videos and add up
    /// their gradients: the paper's batch of 1024 on one GPU (--accumulate 16: 64 videos a
    /// pass). Negatives and BatchNorm statistics then come from each pass alone (128 clips,
    /// not 2048): the update averages as many videos as the paper's, the contrastive task
    /// is that of the smaller batch. Lower the memory needed by raising it.
    #[arg(long, default_value_t = 1, value_name = "N")]
    accumulate: usize,
    /// Supervised baseline: train backbone + linear classifier with cross-entropy on the
    /// labels of the shard set (its class folders), both augmented views labelled. Same
    /// augmentation, schedule, checkpoints and encoder export as CVRL.
    #[arg(long)]
    supervised: bool,
    /// Passes over the set (videos / batch steps each, the last partial batch dropped).
    #[arg(long, default_value_t = 200.0)]
    epochs: f64,
    /// Train this many steps in all, instead of --epochs.
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<u64>,
    /// Peak learning rate for 1024 videos per step. Scaled linearly: the run uses
    /// lr x batch-size / 1024 (0.32 at batch 1024, 0.0025 at batch 8).
    #[arg(long, default_value_t = 0.32)]
    lr: f64,
    /// Epochs of linear warm-up from 0 before the cosine decay to 0.
    #[arg(long, default_value_t = 5.0)]
    warmup_epochs: f64,
    /// Weight decay on conv and dense kernels (not BatchNorm, not biases).
    #[arg(long, default_value_t = 1e-6)]
    weight_decay: f64,
    /// sgd (momentum, the reference's) or lars (SimCLR's, trust ratio on kernels).
    #[arg(long, default_value = "sgd")]
    optimizer: OptimizerKind,
    /// Momentum of SGD and LARS.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// LARS trust coefficient.
    #[arg(long, default_value_t = 0.001)]
    lars_eta: f64,
    /// InfoNCE temperature.
    #[arg(long, default_value_t = 0.1)]
    temperature: f64,
    /// Seed of the initial weights, the video order and every augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Loader threads decompressing and augmenting clips.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Batches each loader thread may prepare ahead.
    #[arg(long, default_value_t = 2)]
    prefetch: usize,
    /// Steps between checkpoints (0: only at the end); there is always one at the end.
    #[arg(long, default_value_t = 1000)]
    checkpoint_every: u64,
    /// Checkpoints kept (the newest).
    #[arg(long, default_value_t = 3)]
    keep_checkpoints: usize,
    /// Continue from a checkpoint: a ckpt-* directory, a file in one, or a run directory
    /// (its latest checkpoint), usually RUN_DIR itself.
    #[arg(long, value_name = "PATH")]
    resume: Option<PathBuf>,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Train in f32 on CUDA too (default there: bf16 autocast; the CPU always runs f32).
    #[arg(long)]
    fp32: bool,
    /// Keep conv weights and clips in the channels-last 3D layout (NDHWC), which cuDNN's 3D
    /// convolutions prefer. Numerically the same model.
    #[arg(long)]
    channels_last: bool,
    /// libtorch's CPU threads (default: one per core).
    #[arg(long)]
    threads: Option<i32>,
    /// No progress bar or status lines.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Preset {
    /// A small model for a CPU demo.
    Cpu,
    /// The reference's pretraining run.
    Paper,
}

impl Cli {
    fn config(&self, given: &dyn Fn(&str) -> bool) -> TrainConfig {
        let mut cfg = TrainConfig {
            shards: self.shards.clone(),
            out: self.out.clone(),
            model: self.model,
            base_width: self.base_width,
            width_multiplier: self.width_multiplier,
            stem: self.stem,
            head_layers: self.head_layers,
            head_hidden_dim: self.head_hidden_dim,
            embedding_dim: self.embedding_dim,
            frames: self.frames,
            stride: self.stride,
            base_fps: self.base_fps,
            crop: self.crop,
            batch_size: self.batch_size,
            accumulate: self.accumulate,
            supervised: self.supervised,
            channels_last: self.channels_last,
            length: match self.steps {
                Some(s) => RunLength::Steps(s),
                None => RunLength::Epochs(self.epochs),
            },
            lr: self.lr,
            warmup_epochs: self.warmup_epochs,
            weight_decay: self.weight_decay,
            optimizer: self.optimizer,
            momentum: self.momentum,
            lars_eta: self.lars_eta,
            temperature: self.temperature,
            interval: self.interval_distribution,
            augmentation: self.augmentation,
            crop_area_min: self.crop_area_min,
            grayscale_p: self.grayscale_p,
            init_encoder: self.init_encoder.clone(),
            eval_every: self.eval_every,
            eval_train: self.eval_train.clone(),
            eval_val: self.eval_val.clone(),
            seed: self.seed,
            workers: self.workers,
            prefetch: self.prefetch,
            checkpoint_every: self.checkpoint_every,
            keep_checkpoints: self.keep_checkpoints,
            device: self.device,
            fp32: self.fp32,
            threads: self.threads,
        };
        if self.preset == Preset::Paper {
            let paper = TrainConfig::paper(Vec::new(), PathBuf::new());
            if !given("model") {
                cfg.model = paper.model;
            }
            if !given("frames") {
                cfg.frames = paper.frames;
            }
            if !given("crop") {
                cfg.crop = paper.crop;
            }
            if !given("batch_size") {
                cfg.batch_size = paper.batch_size;
            }
        }
        cfg
    }
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
        self.say(message);
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

fn main() -> ExitCode {
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

fn run() -> Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let cfg = cli.config(&given);
    let mut bar = Bar::new(cli.quiet);
    bar.say(&format!("cvrl-train: {} -> {}", cfg.model_description(), cfg.out.display()));
    let summary = train(&cfg, cli.resume.as_deref(), &mut bar)?;
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
    Ok(())
}
