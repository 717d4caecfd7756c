//! The CVRL pretraining loop: shard set → loader (interval sampling + augmentation) → R3D
//! and projection head → InfoNCE → SGD/LARS under the warm-up + cosine schedule, with a
//! per-step log, TensorBoard events, checkpoints and resume; and the supervised baseline on
//! the same footing.
//!
//! One step ([`Stepper`] does the arithmetic, [`train_with`] the rest):
//!
//! 1. The loader hands over the step's micro-batches (deterministic per step: a resumed run
//!    sees exactly the batches an uninterrupted one would): two augmented views of `B / N`
//!    videos each, `u8` `[B/N, 3, T, S, S]` per view, `N` = `accumulate` (1 by default).
//!    [`AugmentTransform`] makes them from the stored frames.
//! 2. The two views are joined into one batch of `2B/N` clips, moved to the device as `u8`
//!    (a quarter of the bytes of floats; on CUDA from pinned memory, without blocking) and
//!    scaled to `[0, 1]` there. One forward pass over both views means BatchNorm normalises
//!    with statistics of both views together, as SimCLR does (it concatenates the views
//!    along the batch); two separate passes would give each view its own statistics, which
//!    lets the network tell the views apart by their batch statistics.
//! 3. On CUDA the forward pass runs under bf16 autocast (the reference trains in bfloat16 on
//!    TPU); [`info_nce`] computes the loss in f32 whatever it gets. The CPU runs f32.
//! 4. Backward of the loss divided by `N`, so that after the `N` micro-batches the gradient
//!    is their mean; then [`Optimizer::step`] at [`LrSchedule::lr_at`]`(s)`.
//! 5. One JSON line in `RUN_DIR/log.jsonl` ([`StepLog`]) and the same scalars in
//!    `RUN_DIR/tb/events.out.tfevents.*` ([`crate::tensorboard`]); a checkpoint every
//!    `checkpoint_every` steps and at the end (see [`crate::checkpoint`]), each also
//!    refreshing `RUN_DIR/encoder.safetensors`.
//!
//! **Gradient accumulation** (`accumulate = N`) reaches the paper's batch of 1024 videos on
//! one GPU as far as the *update* goes: the learning rate is scaled by the effective batch
//! `B`, and each update averages the gradients of `B` videos. It does not reproduce the
//! paper's *contrastive task*: each micro-batch's InfoNCE only sees its own `2B/N` clips, so
//! a clip has `2B/N − 2` negatives instead of the `2B − 2` (2046) that the reference gathers
//! across TPU cores, and BatchNorm normalises with the statistics of `2B/N` clips instead of
//! the reference's synchronised 2048. SimCLR found that fewer negatives weaken the learned
//! representation, so an accumulated run is expected to land between a small-batch run and
//! the paper's. The loader counts its epochs in micro-batches (`videos / (B/N)` per epoch),
//! so with `N > 1` the `epoch` in the log can run a fraction of a step ahead of the data
//! loader's own epochs; every video is still seen once per loader epoch.
//!
//! **Supervised** (`supervised`): the same backbone, augmentation and schedule, with a linear
//! classifier (`head.linear.*`) on the pooled feature and cross-entropy against the set's
//! labels, both views labelled. Checkpoints and the encoder export are the same, so linear
//! evaluation compares CVRL with it like for like.
//!
//! Out of memory in the forward or backward pass stops the run with
//! [`TrainError::OutOfMemory`], which says to lower `--batch-size` or raise `--accumulate`.
//! A NaN or infinite loss stops the run with [`TrainError::NonFiniteLoss`], which names the
//! last good checkpoint; nothing is saved after the bad step, and a checkpoint is never
//! written from non-finite weights.

pub use crate::device::{cuda_autocast, cuda_autocast_enabled, enable_bf16_autocast};
use std::cell::RefCell;
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cvrl_formats::{FormatError, FrameLayout, ShardSet};
use rand::rngs::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};
use tch::nn::{self, VarStore};
use tch::{Cuda, Device, Kind, TchError, Tensor};

use crate::augment::{augment, AugmentConfig, CropMode};
use crate::checkpoint::{self, CheckpointError, CheckpointState};
use crate::eval::knn::KnnMonitor;
use crate::loader::{ClipTransform, Loader, LoaderConfig};
use crate::loss::cross_entropy;
use crate::loss::info_nce;
use crate::model::{clips_to_input, Depth, HeadConfig, Model, ModelError, R3d, R3dConfig, Stem};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use crate::sampler::{ClipSpec, IntervalDistribution};
use crate::schedule::{epochs_to_steps, scaled_lr, steps_per_epoch, LrSchedule};
use crate::tensorboard::{EventWriter, TensorBoardError};

/// The per-step log, one JSON object per line.
pub const LOG_FILE: &str = "log.jsonl";
/// The run's configuration and derived plan, rewritten at every (re)start.
pub const RUN_FILE: &str = "run.json";
/// The TensorBoard event files, one per (re)start: `tensorboard --logdir RUN_DIR/tb`.
pub const TB_DIR: &str = "tb";

/// The backbone architecture: an R3D depth (`r3d18`, `r3d34`, `r3d50`, `r3d101`, `r3d152`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arch(pub Depth);

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.strip_prefix("r3d")
            .and_then(|d| d.parse::<Depth>().ok())
            .map(Arch)
            .ok_or_else(|| format!("{s:?}: expected r3d18, r3d34, r3d50, r3d101 or r3d152"))
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r3d{}", self.0)
    }
}

/// Where to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The first CUDA device if libtorch sees one, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// `cuda` (device 0) or `cuda:N`.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| format!("{other:?}: expected auto, cpu, cuda or cuda:N")),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// How long to train.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunLength {
    /// Passes over the set (may be fractional), `videos / batch` steps each.
    Epochs(f64),
    /// Steps (updates) in all.
    Steps(u64),
}

/// (De)serialises a field through its `Display` / `FromStr`, so that the JSON holds what
/// the command line takes (`"power:2"`, `"r3d50"`, `"lars"`).
mod as_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The reference backbone's stem width; older run configs lack the field.
fn reference_base_width() -> u32 {
    R3dConfig::r3d50().base_width
}

fn one() -> usize {
    1
}

/// The reference's smallest crop, as a fraction of the frame's area.
fn reference_crop_area_min() -> f64 {
    AugmentConfig::first_view().area.0
}

/// Everything a run is made of; `cvrl-train`'s flags map onto it one to one. Stored in
/// every checkpoint's `state.json` and in `RUN_DIR/run.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Shard set directories, opened together as one set.
    pub shards: Vec<PathBuf>,
    /// The run directory: log, checkpoints, exported encoder.
    pub out: PathBuf,
    #[serde(with = "as_string")]
    pub model: Arch,
    /// Channels of the backbone's stem (reference 64); the stages double it.
    #[serde(default = "reference_base_width")]
    pub base_width: u32,
    pub width_multiplier: u32,
    /// The backbone's stem: the reference's, or the small-crop one.
    #[serde(default)]
    pub stem: Stem,
    /// Dense-BN-ReLU layers of the projection head (reference 3).
    pub head_layers: usize,
    /// Units of each hidden head layer (reference 2048).
    pub head_hidden_dim: i64,
    /// Units of the embedding the loss sees (reference 128).
    pub embedding_dim: i64,
    /// Frames per clip.
    pub frames: u32,
    /// Frames between clip frames, at `base_fps`.
    pub stride: u32,
    /// The frame rate `stride` is counted at (see [`ClipSpec`]).
    pub base_fps: f64,
    /// Side of the square augmented frames.
    pub crop: u32,
    /// Videos per optimiser step (each gives two clips): the effective batch, which the
    /// learning rate is scaled by.
    pub batch_size: usize,
    /// Micro-batches per optimiser step: each forward/backward pass sees `batch_size /
    /// accumulate` videos and the gradients add up (see the module docs for what this does
    /// and does not reproduce of a large batch).
    #[serde(default = "one")]
    pub accumulate: usize,
    /// Train the backbone with labels (a linear classifier, cross-entropy) instead of CVRL.
    #[serde(default)]
    pub supervised: bool,
    /// Keep conv weights and inputs in the channels-last 3D layout (NDHWC strides), which
    /// cuDNN's 3D convolutions prefer.
    #[serde(default)]
    pub channels_last: bool,
    pub length: RunLength,
    /// Learning rate for a batch of 1024 videos; the run uses `lr * batch / 1024`.
    pub lr: f64,
    pub warmup_epochs: f64,
    pub weight_decay: f64,
    #[serde(with = "as_string")]
    pub optimizer: OptimizerKind,
    pub momentum: f64,
    pub lars_eta: f64,
    pub temperature: f64,
    #[serde(with = "as_string")]
    pub interval: IntervalDistribution,
    /// The spatial augmentation of the clips (CVRL's, or an ablation).
    #[serde(default, with = "as_string")]
    pub augmentation: Augmentation,
    /// Smallest random crop, as a fraction of the frame's area (reference 0.3).
    #[serde(default = "reference_crop_area_min")]
    pub crop_area_min: f64,
    /// Probability of turning a clip grey, when not the augmentation's own (reference 0.2).
    #[serde(default)]
    pub grayscale_p: Option<f64>,
    /// Start the backbone from this exported encoder instead of a random initialisation
    /// (fine-tuning); the head starts fresh.
    #[serde(default)]
    pub init_encoder: Option<PathBuf>,
    /// Steps between kNN checks of the backbone on `eval_train` / `eval_val` (0: none).
    #[serde(default)]
    pub eval_every: u64,
    /// Labelled shard sets the kNN check fits on.
    #[serde(default)]
    pub eval_train: Vec<PathBuf>,
    /// Labelled shard sets the kNN check scores.
    #[serde(default)]
    pub eval_val: Vec<PathBuf>,
    pub seed: u64,
    /// Loader threads.
    pub workers: usize,
    /// Batches each loader thread may have ready ahead of the training loop.
    pub prefetch: usize,
    /// Steps between checkpoints (0: only at the end).
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk (the newest).
    pub keep_checkpoints: usize,
    #[serde(with = "as_string")]
    pub device: DeviceChoice,
    /// Train in f32 on CUDA too (no bf16 autocast).
    pub fp32: bool,
    /// libtorch's intra-op CPU threads (None: libtorch's default, one per core). Process-wide.
    pub threads: Option<i32>,
}

impl TrainConfig {
    /// The CPU demo defaults (R3D-18, 8 frames at stride 2, 64-pixel crops, batch 8) with
    /// the reference's schedule and loss settings.
    pub fn cpu_demo(shards: Vec<PathBuf>, out: PathBuf) -> Self {
        TrainConfig {
            shards,
            out,
            model: Arch(Depth::R18),
            base_width: reference_base_width(),
            width_multiplier: 1,
            stem: Stem::Reference,
            head_layers: 3,
            head_hidden_dim: 2048,
            embedding_dim: 128,
            frames: 8,
            stride: 2,
            base_fps: 25.0,
            crop: 64,
            batch_size: 8,
            accumulate: 1,
            supervised: false,
            channels_last: false,
            length: RunLength::Epochs(200.0),
            lr: 0.32,
            warmup_epochs: 5.0,
            weight_decay: 1e-6,
            optimizer: OptimizerKind::Sgd,
            momentum: 0.9,
            lars_eta: 0.001,
            temperature: 0.1,
            interval: IntervalDistribution::Decreasing,
            augmentation: Augmentation::Cvrl,
            crop_area_min: reference_crop_area_min(),
            grayscale_p: None,
            init_encoder: None,
            eval_every: 0,
            eval_train: Vec::new(),
            eval_val: Vec::new(),
            seed: 0,
            workers: 4,
            prefetch: 2,
            checkpoint_every: 1000,
            keep_checkpoints: 3,
            device: DeviceChoice::Auto,
            fp32: false,
            threads: None,
        }
    }

    /// The reference's pretraining run: R3D-50, 16 frames at stride 2, 224-pixel crops,
    /// batch 1024, 200 epochs, lr 0.32 per 1024, 5 warm-up epochs.
    pub fn paper(shards: Vec<PathBuf>, out: PathBuf) -> Self {
        TrainConfig {
            model: Arch(Depth::R50),
            frames: 16,
            crop: 224,
            batch_size: 1024,
            ..TrainConfig::cpu_demo(shards, out)
        }
    }

    pub fn backbone(&self) -> R3dConfig {
        R3dConfig {
            depth: self.model.0,
            base_width: self.base_width,
            width_multiplier: self.width_multiplier,
            stem: self.stem,
            ..R3dConfig::r3d50()
        }
    }

    pub fn head(&self) -> HeadConfig {
        HeadConfig {
            hidden_layers: self.head_layers,
            hidden_dim: self.head_hidden_dim,
            out_dim: self.embedding_dim,
        }
    }

    /// The clips the run samples: `frames` frames `stride` apart at `base_fps`.
    pub fn clip(&self) -> ClipSpec {
        ClipSpec { frames: self.frames, stride: self.stride, base_fps: self.base_fps }
    }

    /// A short description of the architecture, e.g. `r3d18 w64 x1, head 3x2048 -> 128`, or
    /// `r3d18 w64 x1, linear classifier` for supervised training.
    pub fn model_description(&self) -> String {
        let stem = if self.stem == Stem::Reference { "" } else { ", small stem" };
        let backbone =
            format!("{} w{} x{}{stem}", self.model, self.base_width, self.width_multiplier);
        if self.supervised {
            return format!("{backbone}, linear classifier");
        }
        format!(
            "{backbone}, head {}x{} -> {}",
            self.head_layers, self.head_hidden_dim, self.embedding_dim
        )
    }

    /// Videos per forward/backward pass: `batch_size / accumulate`.
    pub fn micro_batch(&self) -> usize {
        self.batch_size / self.accumulate.max(1)
    }

    fn validate(&self) -> Result<(), TrainError> {
        if self.shards.is_empty() {
            return Err(TrainError::Config("no shard set given".into()));
        }
        if !(self.crop_area_min > 0.0 && self.crop_area_min <= 1.0) {
            return Err(TrainError::Config(format!(
                "--crop-area-min must be in (0, 1], got {}",
                self.crop_area_min
            )));
        }
        if let Some(p) = self.grayscale_p.filter(|p| !(0.0..=1.0).contains(p)) {
            return Err(TrainError::Config(format!("--grayscale-p must be in [0, 1], got {p}")));
        }
        if let Some(missing) = self.shards.iter().find(|d| !d.is_dir()) {
            return Err(TrainError::Config(format!(
                "shard set {}: no such directory",
                missing.display()
            )));
        }
        self.validate_step()
    }

    /// Everything but the shard sets.
    fn validate_step(&self) -> Result<(), TrainError> {
        let bad = |msg: String| Err(TrainError::Config(msg));
        if self.accumulate == 0 || !self.batch_size.is_multiple_of(self.accumulate) {
            return bad(format!(
                "--accumulate {} must divide --batch-size {} (each micro-batch has batch / \
                 accumulate videos)",
                self.accumulate, self.batch_size
            ));
        }
        // Contrastive: each clip needs negatives from its own micro-batch. Supervised: one
        // video gives two clips, enough for BatchNorm's batch statistics.
        let (least, why) =
            if self.supervised { (1, "") } else { (2, " (negatives come from the micro-batch)") };
        if self.micro_batch() < least {
            return bad(format!(
                "each micro-batch needs at least {least} videos{why}, got --batch-size {} / \
                 --accumulate {}",
                self.batch_size, self.accumulate
            ));
        }
        if self.frames == 0 || self.stride == 0 || self.crop == 0 {
            return bad(format!(
                "frames ({}), stride ({}) and crop ({}) must be at least 1",
                self.frames, self.stride, self.crop
            ));
        }
        if !(self.base_fps > 0.0 && self.base_fps.is_finite()) {
            return bad(format!("base fps must be positive, got {}", self.base_fps));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!("temperature must be positive, got {}", self.temperature));
        }
        let non_negative = |x: f64| x.is_finite() && x >= 0.0;
        if !(non_negative(self.lr) && non_negative(self.warmup_epochs)) {
            return bad(format!(
                "lr ({}) and warm-up epochs ({}) must be non-negative",
                self.lr, self.warmup_epochs
            ));
        }
        let optimiser_ok = non_negative(self.weight_decay)
            && (0.0..1.0).contains(&self.momentum)
            && self.lars_eta.is_finite()
            && self.lars_eta > 0.0;
        if !optimiser_ok {
            return bad(format!(
                "weight decay ({}) must be >= 0, momentum ({}) in [0, 1), LARS eta ({}) > 0",
                self.weight_decay, self.momentum, self.lars_eta
            ));
        }
        match self.length {
            RunLength::Epochs(e) if !(e > 0.0 && e.is_finite()) => {
                return bad(format!("epochs must be positive, got {e}"))
            }
            RunLength::Steps(0) => return bad("steps must be at least 1".into()),
            _ => {}
        }
        self.backbone().validate()?;
        Ok(())
    }
}

/// The run in steps, from the configuration and the set's size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub videos: usize,
    pub steps_per_epoch: u64,
    pub total_steps: u64,
    pub warmup_steps: u64,
    /// The peak learning rate after linear scaling (by the effective batch).
    pub base_lr: f64,
    /// Videos per forward/backward pass, and passes per step.
    pub micro_batch: usize,
    pub accumulate: usize,
}

impl Plan {
    pub fn new(cfg: &TrainConfig, videos: usize) -> Result<Plan, TrainError> {
        let per_epoch = steps_per_epoch(videos, cfg.batch_size);
        if per_epoch == 0 {
            return Err(TrainError::Config(format!(
                "batch size {} needs at least that many videos; the set has {videos}",
                cfg.batch_size
            )));
        }
        let total_steps = match cfg.length {
            RunLength::Epochs(e) => epochs_to_steps(e, per_epoch).max(1),
            RunLength::Steps(s) => s,
        };
        Ok(Plan {
            videos,
            steps_per_epoch: per_epoch,
            total_steps,
            warmup_steps: epochs_to_steps(cfg.warmup_epochs, per_epoch).min(total_steps),
            base_lr: scaled_lr(cfg.lr, cfg.batch_size),
            micro_batch: cfg.micro_batch(),
            accumulate: cfg.accumulate.max(1),
        })
    }

    pub fn schedule(&self) -> LrSchedule {
        LrSchedule::new(self.base_lr, self.warmup_steps, self.total_steps)
    }
}

/// One line of `log.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    /// 0-based index of the update.
    pub step: u64,
    /// `step / steps_per_epoch`.
    pub epoch: f64,
    pub loss: f64,
    /// The learning rate of this update.
    pub lr: f64,
    /// Clips (two per video) per second of this step, waiting included.
    pub clips_per_s: f64,
    /// Fraction of this step spent waiting for the loader.
    pub data_wait: f64,
    pub step_time_s: f64,
    /// Seconds since this invocation started training.
    pub elapsed_s: f64,
    /// kNN top-1 (%) on the eval sets, on the steps `--eval-every` checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knn_top1: Option<f64>,
}

/// Receives progress; the library never draws (the binary's progress bar implements this).
pub trait Reporter {
    /// Training is about to run steps `start_step..plan.total_steps` on `device`.
    fn start(&mut self, _plan: &Plan, _start_step: u64, _device: &str) {}
    fn step(&mut self, _log: &StepLog) {}
    /// Something the user should read (a checkpoint written, a resumed run's differences).
    fn note(&mut self, _message: &str) {}
    fn finish(&mut self) {}
}

/// A [`Reporter`] that discards everything.
pub struct Silent;
impl Reporter for Silent {}

/// What a finished run did.
#[derive(Clone, Debug)]
pub struct Summary {
    pub plan: Plan,
    /// The first step this invocation ran (0 unless resumed).
    pub start_step: u64,
    /// The loss of every step this invocation ran, in order.
    pub losses: Vec<f64>,
    /// Seconds per step, in order.
    pub step_times: Vec<f64>,
    pub last_checkpoint: Option<PathBuf>,
    pub encoder: PathBuf,
}

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("--eval-every: {0}")]
    Eval(String),
    #[error("cannot open the shard set {}: {error}", show_dirs(dirs))]
    Shards { dirs: Vec<PathBuf>, error: FormatError },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(
        "--device {0} asked for CUDA, but libtorch sees no CUDA device (see cvrl_trainer::device)"
    )]
    NoCuda(DeviceChoice),
    #[error("{dir} already holds a run ({what}): pass --resume {dir} to continue it, or choose another --out", dir = dir.display())]
    RunExists { dir: PathBuf, what: String },
    #[error("cannot start the loader: {0}")]
    Loader(String),
    #[error("the loader stopped before step {step}: no readable video left")]
    LoaderStopped { step: u64 },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Torch(#[from] TchError),
    #[error("the loss is {loss} at step {step}: training stopped. {}", match last_checkpoint {
        Some(p) => format!("The last good checkpoint is {} (continue with --resume, perhaps at a lower --lr).", p.display()),
        None => "No checkpoint had been written yet.".to_owned(),
    })]
    NonFiniteLoss { step: u64, loss: f64, last_checkpoint: Option<PathBuf> },
    #[error("variable {name} holds NaN or infinite values after step {step}: training stopped. {}", match last_checkpoint {
        Some(p) => format!("The last good checkpoint is {} (continue with --resume, perhaps at a lower --lr).", p.display()),
        None => "No checkpoint had been written yet.".to_owned(),
    })]
    NonFiniteWeights { step: u64, name: String, last_checkpoint: Option<PathBuf> },
    #[error("out of {device} memory at step {step}, with micro-batches of {micro_batch} videos \
             ({clips} clips) and --accumulate {accumulate}: lower --batch-size or raise \
             --accumulate (the same batch in more, smaller passes). libtorch said: {detail}",
             clips = 2 * micro_batch)]
    OutOfMemory { step: u64, device: String, micro_batch: usize, accumulate: usize, detail: String },
    #[error("libtorch failed at step {step}: {message}")]
    TorchFailure { step: u64, message: String },
    #[error("--supervised needs labelled videos, but the shard set {} {reason}", show_dirs(dirs))]
    NoLabels { dirs: Vec<PathBuf>, reason: String },
    #[error(transparent)]
    TensorBoard(#[from] TensorBoardError),
}

/// Whether a libtorch error message (or a panic carrying one) reports an allocation that
/// failed: CUDA's caching allocator (`CUDA out of memory. Tried to allocate ...`), a CUDA
/// call (`CUDA error: out of memory`), cuDNN or cuBLAS workspace allocations, or the CPU
/// allocator.
pub fn is_out_of_memory(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "cuda out of memory",
        "cuda error: out of memory",
        "outofmemoryerror",
        "cudnn_status_alloc_failed",
        "cublas_status_alloc_failed",
        "can't allocate memory",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// The first line of libtorch's message that says what happened (tch wraps it in
/// `Torch("...")` and libtorch appends a C++ backtrace).
fn torch_detail(message: &str) -> String {
    let m = message.split("Torch(\"").nth(1).unwrap_or(message);
    let line = m.lines().find(|l| !l.trim().is_empty()).unwrap_or(m).trim();
    // tch's Debug formatting escapes the message: keep the first escaped line too.
    let line = line.split("\\n").next().unwrap_or(line);
    line.trim_end_matches(['"', ')']).to_owned()
}

fn show_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |error| TrainError::Io { path: path.to_path_buf(), error }
}

/// Which spatial augmentation the clips get: CVRL's, or one of the paper's ablations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Augmentation {
    /// The reference's two views, every random parameter drawn once per clip.
    #[default]
    Cvrl,
    /// The same views with parameters drawn for every frame (temporally inconsistent).
    PerFrame,
    /// CVRL's views at half the colour strength (jitter 0.4, 0.4, 0.4, 0.1) and without blur
    /// or solarization, drawn once per clip: for small crops and short CPU runs, where the
    /// full strength keeps the loss at chance level (see EXPERIMENTS.md). Not the reference.
    Light,
    /// `Light` with parameters drawn for every frame: the temporally inconsistent ablation
    /// at the strength CPU runs learn with.
    LightPerFrame,
    /// None: every frame resized whole (the centred square of its short side), so the two
    /// clips differ only in time (the temporal-only ablation).
    None,
}

impl FromStr for Augmentation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cvrl" => Ok(Augmentation::Cvrl),
            "per-frame" => Ok(Augmentation::PerFrame),
            "light" => Ok(Augmentation::Light),
            "light-per-frame" => Ok(Augmentation::LightPerFrame),
            "none" => Ok(Augmentation::None),
            other => {
                Err(format!("{other:?}: expected cvrl, per-frame, light, light-per-frame or none"))
            }
        }
    }
}

impl fmt::Display for Augmentation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Augmentation::Cvrl => "cvrl",
            Augmentation::PerFrame => "per-frame",
            Augmentation::Light => "light",
            Augmentation::LightPerFrame => "light-per-frame",
            Augmentation::None => "none",
        })
    }
}

/// `views` with every random parameter drawn for each frame instead of once per clip.
fn per_frame(views: [AugmentConfig; 2]) -> AugmentTransform {
    AugmentTransform::with_views(views.map(|v| AugmentConfig { consistent: false, ..v }))
}

/// [`Augmentation::Light`]'s two (identical) views, built from the reference's first one.
fn light(first: AugmentConfig) -> [AugmentConfig; 2] {
    let light = AugmentConfig {
        brightness: 0.4,
        contrast: 0.4,
        saturation: 0.4,
        hue: 0.1,
        blur_p: 0.0,
        solarize_p: 0.0,
        ..first
    };
    [light, light]
}

/// CVRL's two augmented views as a [`ClipTransform`]: the stored frames of one clip become
/// `u8` RGB `[3, T, S, S]` by [`augment`], with the reference's asymmetric pair of configs
/// ([`AugmentConfig::first_view`] for the first clip of a pair, blur always;
/// [`AugmentConfig::second_view`] for the second, blur p = 0.1 and solarization p = 0.2).
///
/// The loader's trait does not say which clip of the pair a call is for. It does call
/// `apply` for the first clip and then, with the same generator and nothing drawn in
/// between, for the second, on the same worker thread; so each thread remembers the
/// generator's state after a first view, and a call whose generator is in exactly that
/// state is the second view. A new pair's generator is freshly seeded and has drawn its
/// interval, so it never matches (2⁻²⁵⁶). If a video fails between its two clips, the
/// next call simply starts a new pair. (A `view` argument on the trait would be simpler.)
pub struct AugmentTransform {
    views: [AugmentConfig; 2],
}

struct ThreadState {
    /// The generator's state right after a first view.
    after_first: Option<Xoshiro256PlusPlus>,
    scratch: Vec<u8>,
}

thread_local! {
    static AUGMENT_STATE: RefCell<ThreadState> =
        const { RefCell::new(ThreadState { after_first: None, scratch: Vec::new() }) };
}

impl AugmentTransform {
    /// The reference's two views at `out_size²` pixels.
    pub fn new(out_size: u32) -> Self {
        let [a, b] = AugmentConfig::pair();
        AugmentTransform::with_views([
            AugmentConfig { out_size, ..a },
            AugmentConfig { out_size, ..b },
        ])
    }

    /// The views `augmentation` names, at `out_size²` pixels.
    pub fn for_run(augmentation: Augmentation, out_size: u32) -> Self {
        let [a, b] = AugmentTransform::new(out_size).views;
        match augmentation {
            Augmentation::Cvrl => AugmentTransform::with_views([a, b]),
            Augmentation::PerFrame => per_frame([a, b]),
            Augmentation::Light => AugmentTransform::with_views(light(a)),
            Augmentation::LightPerFrame => per_frame(light(a)),
            Augmentation::None => {
                let whole = AugmentConfig {
                    crop: CropMode::Center { fraction: 1.0 },
                    ..AugmentConfig::eval(out_size)
                };
                AugmentTransform::with_views([whole, whole])
            }
        }
    }

    /// Random crops of at least `min` of the frame's area (the reference: 0.3), for data
    /// whose subject is small in the frame.
    pub fn with_min_area(mut self, min: f64) -> Self {
        for view in &mut self.views {
            view.area.0 = min.min(view.area.1);
        }
        self
    }

    /// Every view turns its clips grey with probability `p` (the reference: 0.2); `None`
    /// keeps each view's own. Flat-coloured data needs more, or colour stays the easiest
    /// cue to match clips by.
    pub fn with_grayscale(mut self, p: Option<f64>) -> Self {
        if let Some(p) = p {
            for view in &mut self.views {
                view.grayscale_p = p;
            }
        }
        self
    }

    /// Other augmentations (both must have the same `out_size`).
    ///
    /// # Panics
    ///
    /// If the two output sizes differ.
    pub fn with_views(views: [AugmentConfig; 2]) -> Self {
        assert_eq!(views[0].out_size, views[1].out_size, "both views must have one output size");
        AugmentTransform { views }
    }
}

impl ClipTransform for AugmentTransform {
    fn output_len(&self, t: usize) -> usize {
        let s = self.views[0].out_size as usize;
        3 * t * s * s
    }

    fn apply(
        &self,
        rng: &mut Xoshiro256PlusPlus,
        layout: &FrameLayout,
        frames: &[u8],
        t: usize,
        out: &mut [u8],
    ) {
        AUGMENT_STATE.with(|state| {
            let mut state = state.borrow_mut();
            let second = state.after_first.as_ref() == Some(&*rng);
            let view = &self.views[usize::from(second)];
            let ThreadState { after_first, scratch } = &mut *state;
            match augment(rng, view, layout, frames, t, scratch) {
                Ok(_) if scratch.len() == out.len() => out.copy_from_slice(scratch),
                Ok(_) => {
                    eprintln!(
                        "warning: augmented clip has {} bytes, expected {}",
                        scratch.len(),
                        out.len()
                    );
                    out.fill(0);
                }
                Err(e) => {
                    // The frames come from a validated shard set, so this is a bug; a black
                    // clip keeps the run going and the warning says what happened.
                    eprintln!("warning: cannot augment a clip: {e}");
                    out.fill(0);
                }
            }
            *after_first = if second { None } else { Some(rng.clone()) };
        });
    }
}

/// Resolves `--device`.
pub fn pick_device(choice: DeviceChoice) -> Result<Device, TrainError> {
    match choice {
        DeviceChoice::Auto => Ok(crate::device::default_device()),
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda(i) if Cuda::is_available() && i < Cuda::device_count() as usize => {
            Ok(Device::Cuda(i))
        }
        DeviceChoice::Cuda(_) => Err(TrainError::NoCuda(choice)),
    }
}

/// The network being trained.
enum Net {
    /// CVRL: backbone and projection head, InfoNCE between the two views.
    Contrastive(Model),
    /// The supervised baseline: the same backbone, a linear classifier on its pooled feature
    /// (`head.linear.*`, so the encoder export leaves it out as it leaves out the projection
    /// head), cross-entropy.
    Supervised { backbone: R3d, classifier: nn::Linear },
}

/// Builds the model with weights drawn from `seed`. libtorch's generator is global, so
/// seeding and drawing happen under a lock: two runs in one process (tests) each get the
/// weights their seed gives. Weights are drawn on the CPU and then moved, so a seed gives
/// the same initial model on every device.
fn build_model(
    cfg: &TrainConfig,
    classes: Option<i64>,
    device: Device,
) -> Result<(VarStore, Net), TrainError> {
    static INIT: Mutex<()> = Mutex::new(());
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(cfg.seed as i64);
    let mut vs = VarStore::new(Device::Cpu);
    let net = match classes {
        None => Net::Contrastive(Model::new(&vs.root(), &cfg.backbone(), &cfg.head())?),
        Some(k) => {
            let backbone = R3d::new(&vs.root(), &cfg.backbone())?;
            let p = vs.root() / "head" / "linear";
            let classifier = nn::linear(p, backbone.feature_dim(), k, Default::default());
            Net::Supervised { backbone, classifier }
        }
    };
    vs.set_device(device);
    Ok((vs, net))
}

/// `t` (`[N, C, T, H, W]`) with the same values in the channels-last 3D layout: NDHWC in
/// memory, still indexed as NCDHW. tch has no `memory_format` argument; this is what
/// `t.contiguous(memory_format=torch.channels_last_3d)` does, and libtorch recognises the
/// layout by its strides.
fn to_channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 4, 1]).contiguous().permute([0, 4, 1, 2, 3])
}

/// Runs `f`, turning a panic (tch panics on any libtorch error in its non-`f_` calls, which
/// the model's layers use) into its message.
fn catch_torch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a libtorch call panicked".to_owned())
    })
}

/// One micro-batch as the loader made it.
pub struct MicroBatch<'a> {
    /// First views, `u8` `[m, 3, T, S, S]`, clip after clip.
    pub view_a: &'a [u8],
    /// Second views, the same shape.
    pub view_b: &'a [u8],
    /// The class of each of the `m` videos (supervised training only).
    pub labels: Option<&'a [i64]>,
}

/// The model, its variables and the optimiser on one device, and the arithmetic of a step:
/// [`Stepper::backward`] once per micro-batch, then [`Stepper::update`]. [`train_with`]
/// feeds it from the loader; `just bench-train` feeds it random clips to time the step
/// alone, against the same step in PyTorch.
pub struct Stepper {
    vs: VarStore,
    net: Net,
    optimizer: Optimizer,
    device: Device,
    bf16: bool,
    channels_last: bool,
    temperature: f64,
    accumulate: usize,
    micro_batch: usize,
    /// `[3, T, S, S]`.
    clip: [i64; 4],
    /// The pinned host buffer CUDA uploads go through (see [`Stepper::upload`]).
    pinned: Option<Tensor>,
}

impl Stepper {
    /// Builds the model `cfg` describes (with `classes` outputs: supervised, else CVRL's
    /// projection head) on `cfg.device`, and its optimiser.
    pub fn new(cfg: &TrainConfig, classes: Option<usize>) -> Result<Stepper, TrainError> {
        cfg.validate_step()?;
        if cfg.supervised != classes.is_some() {
            return Err(TrainError::Config(
                "a supervised run needs the number of classes, a CVRL run none".into(),
            ));
        }
        let device = pick_device(cfg.device)?;
        let classes = classes.map(|k| k as i64);
        let (vs, net) = build_model(cfg, classes, device)?;
        if cfg.channels_last {
            tch::no_grad(|| {
                for (_, mut var) in vs.variables() {
                    if var.dim() == 5 {
                        let cl = to_channels_last(&var);
                        var.set_data(&cl);
                    }
                }
            });
        }
        // After the layout change: the velocities are `zeros_like` the variables.
        let optimizer = Optimizer::new(
            &vs,
            OptimizerConfig {
                kind: cfg.optimizer,
                momentum: cfg.momentum,
                weight_decay: cfg.weight_decay,
                lars_eta: cfg.lars_eta,
            },
        );
        let bf16 = device.is_cuda() && !cfg.fp32;
        if bf16 && !enable_bf16_autocast() {
            return Err(TrainError::Config(
                "libtorch did not accept bfloat16 autocast; pass --fp32".into(),
            ));
        }
        if device.is_cuda() {
            // Every step has the same shapes: let cuDNN pick the fastest convolution once.
            Cuda::cudnn_set_benchmark(true);
        }
        let (t, s) = (i64::from(cfg.frames), i64::from(cfg.crop));
        Ok(Stepper {
            vs,
            net,
            optimizer,
            device,
            bf16,
            channels_last: cfg.channels_last,
            temperature: cfg.temperature,
            accumulate: cfg.accumulate.max(1),
            micro_batch: cfg.micro_batch(),
            clip: [3, t, s, s],
            pinned: None,
        })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// The backbone being trained.
    pub fn backbone(&self) -> &R3d {
        match &self.net {
            Net::Contrastive(model) => &model.backbone,
            Net::Supervised { backbone, .. } => backbone,
        }
    }

    /// The model's variables (their gradients after [`Stepper::backward`]).
    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }

    /// Clears the gradients: call before a step's first micro-batch.
    pub fn zero_grad(&mut self) {
        self.optimizer.zero_grad();
    }

    /// The error for a libtorch failure at `step`: [`TrainError::OutOfMemory`] when it is
    /// one, naming the flags that help.
    fn failure(&self, step: u64, message: &str) -> TrainError {
        if is_out_of_memory(message) {
            TrainError::OutOfMemory {
                step,
                device: if self.device.is_cuda() { "GPU" } else { "CPU" }.to_owned(),
                micro_batch: self.micro_batch,
                accumulate: self.accumulate,
                detail: torch_detail(message),
            }
        } else {
            TrainError::TorchFailure { step, message: message.to_owned() }
        }
    }

    /// The two views of a micro-batch, one after the other, as `u8` `[2m, 3, T, S, S]` on
    /// the device. The CPU path makes the tensor from the bytes and is done.
    ///
    /// On CUDA both views go into one pinned (page-locked) host buffer, kept for the whole
    /// run, and are copied from it without blocking: a DMA straight from the buffer, with no
    /// staging copy. The buffer is pinned once because tch's `pin_memory` always passes the
    /// device argument, which libtorch 2.x answers with a deprecation warning per call. The
    /// next write into it must wait for this copy, so the device is synchronised right after
    /// queueing it and before the forward pass is queued: nothing is behind the copy on the
    /// stream, so the GPU loses no time, while the host's write of the next micro-batch
    /// overlaps this one's forward and backward passes.
    fn upload(&mut self, micro: &MicroBatch<'_>) -> Tensor {
        let [c, t, s, _] = self.clip;
        let m = (micro.view_a.len() / (c * t * s * s) as usize) as i64;
        let Device::Cuda(index) = self.device else {
            let view = |v: &[u8]| Tensor::from_slice(v).view([m, c, t, s, s]);
            return Tensor::cat(&[view(micro.view_a), view(micro.view_b)], 0);
        };
        let (a, b) = (micro.view_a.len(), micro.view_b.len());
        if self.pinned.as_ref().is_none_or(|p| p.numel() != a + b) {
            let host = Tensor::empty([(a + b) as i64], (Kind::Uint8, Device::Cpu));
            self.pinned = Some(host.pin_memory(self.device));
        }
        let host = self.pinned.as_ref().expect("allocated above");
        assert!(host.is_contiguous() && host.numel() == a + b, "pinned buffer of the batch size");
        // SAFETY: `host` is a contiguous u8 CPU tensor of exactly `a + b` bytes, owned by this
        // stepper, and no copy from it is in flight (the previous upload synchronised); the
        // two slices are outside it.
        unsafe {
            let dst = host.data_ptr() as *mut u8;
            std::ptr::copy_nonoverlapping(micro.view_a.as_ptr(), dst, a);
            std::ptr::copy_nonoverlapping(micro.view_b.as_ptr(), dst.add(a), b);
        }
        let clips =
            host.view([2 * m, c, t, s, s]).to_device_(self.device, Kind::Uint8, true, false);
        Cuda::synchronize(index as i64);
        clips
    }

    /// Forward and backward pass of one micro-batch (of `batch_size / accumulate` videos).
    /// Its loss is scaled by `1 / accumulate` before the backward pass, so that after all
    /// micro-batches the gradient is their mean; the loss is returned unscaled, still on
    /// the device. Negatives (CVRL) and BatchNorm statistics come from this micro-batch only.
    pub fn backward(&mut self, step: u64, micro: &MicroBatch<'_>) -> Result<Tensor, TrainError> {
        let clip_len = self.clip.iter().product::<i64>() as usize;
        let m = self.micro_batch;
        let labels_ok = match (&self.net, micro.labels) {
            (Net::Contrastive(_), None) => true,
            (Net::Supervised { .. }, Some(l)) => l.len() == m,
            _ => false,
        };
        if micro.view_a.len() != m * clip_len || micro.view_b.len() != m * clip_len || !labels_ok {
            return Err(TrainError::Config(format!(
                "a micro-batch must hold {m} clips of {clip_len} bytes per view{}",
                if self.net_is_supervised() { " and a label per video" } else { "" }
            )));
        }
        let clips = catch_torch(|| self.upload(micro)).map_err(|m| self.failure(step, &m))?;
        let result = catch_torch(|| {
            let mut xs = clips_to_input(&clips, self.device)?;
            if self.channels_last {
                xs = to_channels_last(&xs);
            }
            let autocast = |f: &dyn Fn() -> Tensor| {
                if self.bf16 {
                    cuda_autocast(true, f)
                } else {
                    f()
                }
            };
            let loss = match &self.net {
                Net::Contrastive(model) => {
                    let z = autocast(&|| model.forward_t(&xs, true).1).chunk(2, 0);
                    info_nce(&z[0], &z[1], self.temperature)
                }
                Net::Supervised { backbone, classifier } => {
                    let logits =
                        autocast(&|| backbone.forward_features_t(&xs, true).apply(classifier));
                    let labels = Tensor::from_slice(micro.labels.unwrap_or_default())
                        .to_device(self.device)
                        .repeat([2]);
                    cross_entropy(&logits, &labels)
                }
            };
            (&loss / self.accumulate as f64).backward();
            Ok::<Tensor, ModelError>(loss.detach())
        });
        match result {
            Ok(loss) => Ok(loss?),
            Err(message) => Err(self.failure(step, &message)),
        }
    }

    fn net_is_supervised(&self) -> bool {
        matches!(self.net, Net::Supervised { .. })
    }

    /// The optimiser's update at `lr` with the accumulated gradients, then the mean of the
    /// micro-batches' `losses`, read back after the update is queued so that the GPU is
    /// never idle waiting for the copy.
    pub fn update(&mut self, step: u64, lr: f64, losses: &[Tensor]) -> Result<f64, TrainError> {
        let optimizer = &mut self.optimizer;
        catch_torch(|| optimizer.step(lr)).map_err(|m| self.failure(step, &m))?;
        let mean = catch_torch(|| {
            f64::try_from(&Tensor::stack(losses, 0).mean(Kind::Double)).map_err(|e| e.to_string())
        });
        match mean {
            Ok(Ok(loss)) => Ok(loss),
            Ok(Err(message)) | Err(message) => Err(self.failure(step, &message)),
        }
    }
}

/// Keeps the lines of `log.jsonl` for steps before `start_step` (a resumed run rewrites the
/// steps after its checkpoint) and returns the file opened for appending.
fn open_log(path: &Path, start_step: u64) -> Result<fs::File, TrainError> {
    if start_step > 0 && path.exists() {
        let file = fs::File::open(path).map_err(io_err(path))?;
        let mut kept = String::new();
        for line in BufReader::new(file).lines() {
            let line = line.map_err(io_err(path))?;
            let step = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()));
            if step.is_some_and(|s| s < start_step) {
                kept.push_str(&line);
                kept.push('\n');
            }
        }
        let tmp = path.with_extension("jsonl.tmp");
        fs::write(&tmp, kept).map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))?;
    } else if start_step == 0 {
        fs::write(path, "").map_err(io_err(path))?;
    }
    fs::OpenOptions::new().create(true).append(true).open(path).map_err(io_err(path))
}

/// Refuses to start a fresh run over an existing one.
fn check_fresh(out: &Path) -> Result<(), TrainError> {
    let log = out.join(LOG_FILE);
    if log.metadata().is_ok_and(|m| m.len() > 0) {
        return Err(TrainError::RunExists { dir: out.to_path_buf(), what: LOG_FILE.into() });
    }
    if out.is_dir() && !checkpoint::list(out)?.is_empty() {
        return Err(TrainError::RunExists { dir: out.to_path_buf(), what: "checkpoints".into() });
    }
    Ok(())
}

/// Top-level fields of two serialised configurations that differ (`out` aside).
fn config_differences(saved: &serde_json::Value, now: &serde_json::Value) -> Vec<String> {
    let (Some(a), Some(b)) = (saved.as_object(), now.as_object()) else { return Vec::new() };
    b.iter()
        .filter(|(k, v)| k.as_str() != "out" && a.get(*k) != Some(*v))
        .map(|(k, v)| {
            format!("{k}: {} -> {v}", a.get(k).map_or("absent".to_owned(), |x| x.to_string()))
        })
        .collect()
}

/// Runs (or, with `resume`, continues) the training `cfg` describes, with CVRL's
/// augmentation ([`AugmentTransform`]). `resume` names a checkpoint directory, a file in
/// one, or a run directory (its latest checkpoint).
pub fn train(
    cfg: &TrainConfig,
    resume: Option<&Path>,
    reporter: &mut dyn Reporter,
) -> Result<Summary, TrainError> {
    let transform = AugmentTransform::for_run(cfg.augmentation, cfg.crop)
        .with_min_area(cfg.crop_area_min)
        .with_grayscale(cfg.grayscale_p);
    train_with(cfg, resume, reporter, Arc::new(transform))
}

/// [`train`] with another clip transform (an augmentation ablation, or a milder one for
/// tests). It must produce `u8` `[3, frames, crop, crop]` clips.
pub fn train_with(
    cfg: &TrainConfig,
    resume: Option<&Path>,
    reporter: &mut dyn Reporter,
    transform: Arc<dyn ClipTransform>,
) -> Result<Summary, TrainError> {
    cfg.validate()?;
    let (frames, crop) = (cfg.frames as usize, cfg.crop as usize);
    if transform.output_len(frames) != 3 * frames * crop * crop {
        return Err(TrainError::Config(format!(
            "the clip transform makes {} bytes per clip, not 3 x {frames} x {crop} x {crop}",
            transform.output_len(frames)
        )));
    }
    if let Some(n) = cfg.threads {
        tch::set_num_threads(n.max(1));
    }
    // Fail on a bad --device before the (slower) shard set is opened.
    pick_device(cfg.device)?;
    let set = ShardSet::open_many(&cfg.shards)
        .map_err(|error| TrainError::Shards { dirs: cfg.shards.clone(), error })?;
    let labels = if cfg.supervised { Some(video_labels(cfg, &set)?) } else { None };
    let plan = Plan::new(cfg, set.len())?;
    let schedule = plan.schedule();
    let config_json = serde_json::to_value(cfg).expect("the configuration serialises");

    let mut stepper = Stepper::new(cfg, cfg.supervised.then(|| set.classes().len()))?;
    let device = stepper.device();
    let out = cfg.out.as_path();
    let mut start_step = 0;
    let mut last_checkpoint = None;
    match resume {
        Some(path) => {
            let dir = checkpoint::resolve(path)?;
            let state = checkpoint::load(
                &dir,
                &stepper.vs,
                &mut stepper.optimizer,
                &cfg.model_description(),
            )?;
            let differences = config_differences(&state.config, &config_json);
            if !differences.is_empty() {
                reporter.note(&format!(
                    "resuming {} with a changed configuration: {}",
                    dir.display(),
                    differences.join(", ")
                ));
            }
            reporter.note(&format!("resumed from {} at step {}", dir.display(), state.step));
            start_step = state.step;
            last_checkpoint = Some(dir);
        }
        None => {
            check_fresh(out)?;
            if let Some(init) = &cfg.init_encoder {
                checkpoint::load_backbone(&stepper.vs, init)?;
                reporter.note(&format!("backbone initialised from {}", init.display()));
            }
        }
    }
    fs::create_dir_all(out).map_err(io_err(out))?;
    let run_json = serde_json::json!({ "config": &config_json, "plan": plan, "model": cfg.model_description(),
        "device": crate::device::describe(device), "start_step": start_step });
    let run_path = out.join(RUN_FILE);
    fs::write(&run_path, serde_json::to_vec_pretty(&run_json).expect("json"))
        .map_err(io_err(&run_path))?;
    let log_path = out.join(LOG_FILE);
    let mut log = open_log(&log_path, start_step)?;
    let encoder = out.join(checkpoint::ENCODER_FILE);

    let mut summary = Summary {
        plan,
        start_step,
        losses: Vec::new(),
        step_times: Vec::new(),
        last_checkpoint: last_checkpoint.clone(),
        encoder: encoder.clone(),
    };
    if start_step >= plan.total_steps {
        reporter.note(&format!("the run is already complete ({} steps)", plan.total_steps));
        if !encoder.exists() {
            checkpoint::export_encoder(&stepper.vs, &encoder)?;
        }
        return Ok(summary);
    }
    let mut tb = EventWriter::create(&out.join(TB_DIR), start_step)?;
    let monitor = knn_monitor(cfg)?;

    // The loader hands out micro-batches: step s is its batches s·N .. s·N + N - 1.
    let accumulate = plan.accumulate as u64;
    let set = Arc::new(set);
    let loader_cfg = LoaderConfig {
        batch_size: plan.micro_batch,
        workers: cfg.workers.max(1),
        prefetch: cfg.prefetch.max(1),
        seed: cfg.seed,
        clip: cfg.clip(),
        interval: cfg.interval,
    };
    let mut loader = Loader::start(set, loader_cfg, transform, start_step * accumulate)
        .map_err(TrainError::Loader)?;

    reporter.start(&plan, start_step, &crate::device::describe(device));
    let started = Instant::now();
    let mut batch_labels = Vec::with_capacity(plan.micro_batch);
    let mut losses = Vec::with_capacity(plan.accumulate);
    for step in start_step..plan.total_steps {
        let t0 = Instant::now();
        let lr = schedule.lr_at(step);
        let mut wait = 0.0;
        stepper.zero_grad();
        losses.clear();
        for _ in 0..accumulate {
            let t_wait = Instant::now();
            let batch = loader.next_batch().ok_or(TrainError::LoaderStopped { step })?;
            wait += t_wait.elapsed().as_secs_f64();
            if let Some(labels) = &labels {
                batch_labels.clear();
                batch_labels.extend(batch.videos.iter().map(|&v| labels[v as usize]));
            }
            let micro = MicroBatch {
                view_a: &batch.view_a,
                view_b: &batch.view_b,
                labels: labels.is_some().then_some(batch_labels.as_slice()),
            };
            losses.push(stepper.backward(step, &micro)?);
        }
        let loss = stepper.update(step, lr, &losses)?;
        if !loss.is_finite() {
            reporter.finish();
            return Err(TrainError::NonFiniteLoss { step, loss, last_checkpoint });
        }

        let step_time = t0.elapsed().as_secs_f64();
        let entry = StepLog {
            step,
            epoch: step as f64 / plan.steps_per_epoch as f64,
            loss,
            lr,
            clips_per_s: 2.0 * cfg.batch_size as f64 / step_time,
            data_wait: wait / step_time,
            step_time_s: step_time,
            elapsed_s: started.elapsed().as_secs_f64(),
            knn_top1: match &monitor {
                Some(m) if (step + 1) % cfg.eval_every == 0 || step + 1 == plan.total_steps => {
                    let backbone = stepper.backbone();
                    Some(m.top1(backbone, device).map_err(|e| TrainError::Eval(e.to_string()))?)
                }
                _ => None,
            },
        };
        if let Some(top1) = entry.knn_top1 {
            tb.scalars(step, &[("eval/knn_top1", top1)])?;
            reporter.note(&format!("step {}: kNN top-1 {top1:.1}%", step + 1));
        }
        let mut line = serde_json::to_string(&entry).expect("json");
        line.push('\n');
        log.write_all(line.as_bytes()).map_err(io_err(&log_path))?;
        tb.scalars(
            step,
            &[
                ("train/loss", entry.loss),
                ("train/lr", entry.lr),
                ("train/clips_per_s", entry.clips_per_s),
                ("train/data_wait", entry.data_wait),
                ("train/step_time_s", entry.step_time_s),
                ("train/epoch", entry.epoch),
            ],
        )?;
        reporter.step(&entry);
        summary.losses.push(loss);
        summary.step_times.push(step_time);

        let done = step + 1;
        let due = cfg.checkpoint_every > 0 && done % cfg.checkpoint_every == 0;
        if due || done == plan.total_steps {
            let state = CheckpointState::new(
                done,
                cfg.seed,
                cfg.model_description(),
                Some(loss),
                config_json.clone(),
            );
            let dir = match checkpoint::save(out, &state, &stepper.vs, &stepper.optimizer) {
                Ok(dir) => dir,
                Err(CheckpointError::NonFinite { name }) => {
                    reporter.finish();
                    return Err(TrainError::NonFiniteWeights { step, name, last_checkpoint });
                }
                Err(e) => return Err(e.into()),
            };
            checkpoint::export_encoder(&stepper.vs, &encoder)?;
            checkpoint::prune(out, cfg.keep_checkpoints)?;
            reporter.note(&format!("checkpoint {}", dir.display()));
            last_checkpoint = Some(dir);
        }
    }
    log.sync_all().map_err(io_err(&log_path))?;
    reporter.finish();
    summary.last_checkpoint = last_checkpoint;
    Ok(summary)
}

/// The kNN check `--eval-every` asks for, with its labelled sets opened.
fn knn_monitor(cfg: &TrainConfig) -> Result<Option<KnnMonitor>, TrainError> {
    if cfg.eval_every == 0 {
        return Ok(None);
    }
    if cfg.eval_train.is_empty() || cfg.eval_val.is_empty() {
        return Err(TrainError::Eval(
            "needs labelled --eval-train and --eval-val shard sets".into(),
        ));
    }
    KnnMonitor::new(&cfg.eval_train, &cfg.eval_val, cfg.clip(), cfg.crop)
        .map(Some)
        .map_err(|e| TrainError::Eval(e.to_string()))
}

/// The class of every video of the set, for `--supervised`; an error naming what is
/// missing when the set has no classes or some videos no label.
fn video_labels(cfg: &TrainConfig, set: &ShardSet) -> Result<Vec<i64>, TrainError> {
    let no_labels = |reason: String| TrainError::NoLabels { dirs: cfg.shards.clone(), reason };
    if set.classes().is_empty() {
        return Err(no_labels(
            "has no classes (it was built from a flat folder or a CSV without labels; \
             videos/<class>/<video> folders give one)"
                .into(),
        ));
    }
    let unlabelled: Vec<&str> = set
        .videos()
        .iter()
        .filter(|v| v.label_index.is_none())
        .map(|v| v.video_id.as_str())
        .collect();
    if let Some(first) = unlabelled.first() {
        return Err(no_labels(format!(
            "has {} videos without a label (of {}; the first is {first})",
            unlabelled.len(),
            set.len()
        )));
    }
    Ok(set.videos().iter().map(|v| i64::from(v.label_index.unwrap_or(0))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn augmentation_ablations_set_the_views_they_name() {
        for a in [
            Augmentation::Cvrl,
            Augmentation::PerFrame,
            Augmentation::Light,
            Augmentation::LightPerFrame,
            Augmentation::None,
        ] {
            assert_eq!(a.to_string().parse::<Augmentation>(), Ok(a));
        }
        assert!("sideways".parse::<Augmentation>().is_err());
        let cvrl = AugmentTransform::for_run(Augmentation::Cvrl, 32).views;
        assert_eq!(cvrl, AugmentTransform::new(32).views);
        assert!(cvrl.iter().all(|v| v.consistent));
        let per_frame = AugmentTransform::for_run(Augmentation::PerFrame, 32).views;
        assert!(per_frame.iter().all(|v| !v.consistent));
        assert_eq!(per_frame[0], AugmentConfig { consistent: false, ..cvrl[0] });
        let wide = AugmentTransform::for_run(Augmentation::Cvrl, 32).with_min_area(0.6).views;
        assert!(wide.iter().all(|v| v.area == (0.6, 1.0)));
        let grey = AugmentTransform::for_run(Augmentation::Cvrl, 32).with_grayscale(Some(0.8));
        assert!(grey.views.iter().all(|v| v.grayscale_p == 0.8));
        let own = AugmentTransform::for_run(Augmentation::Cvrl, 32).with_grayscale(None);
        assert_eq!(own.views, cvrl);
        let light = AugmentTransform::for_run(Augmentation::Light, 32).views;
        assert_eq!(light[0], light[1]);
        assert_eq!((light[0].blur_p, light[0].solarize_p, light[0].hue), (0.0, 0.0, 0.1));
        assert_eq!(
            (light[0].area, light[0].flip_p, light[0].grayscale_p),
            (cvrl[0].area, 0.5, 0.2)
        );
        let light_per_frame = AugmentTransform::for_run(Augmentation::LightPerFrame, 32).views;
        assert_eq!(light_per_frame, light.map(|v| AugmentConfig { consistent: false, ..v }));
        let none = AugmentTransform::for_run(Augmentation::None, 32).views;
        for v in none {
            assert_eq!(v.crop, CropMode::Center { fraction: 1.0 });
            assert_eq!(
                (v.flip_p, v.jitter_p, v.grayscale_p, v.blur_p, v.solarize_p),
                (0.0, 0.0, 0.0, 0.0, 0.0)
            );
            assert_eq!(v.out_size, 32);
        }
    }

    #[test]
    fn the_augment_transform_gives_the_first_clip_of_a_pair_the_first_view() {
        use cvrl_formats::PixelFormat;
        use rand::SeedableRng;
        // First view grayscale, second in colour: the output tells which view was used.
        let gray = AugmentConfig { grayscale_p: 1.0, ..AugmentConfig::eval(4) };
        let transform = AugmentTransform::with_views([gray, AugmentConfig::eval(4)]);
        let layout = FrameLayout::new(4, 4, PixelFormat::Rgb24).unwrap();
        let frames: Vec<u8> = [200u8, 40, 90].repeat(16);
        let mut out = vec![0u8; transform.output_len(1)];
        let is_gray = |out: &[u8]| out[..16] == out[16..32] && out[16..32] == out[32..];
        let mut apply = |rng: &mut Xoshiro256PlusPlus| {
            transform.apply(rng, &layout, &frames, 1, &mut out);
            is_gray(&out)
        };
        let mut pair = Xoshiro256PlusPlus::seed_from_u64(1);
        assert!(apply(&mut pair), "first clip: first view");
        assert!(!apply(&mut pair), "second clip, same generator: second view");
        assert!(apply(&mut pair), "a third call starts a new pair");
        // A pair whose second clip never came (its video failed): the next generator is
        // another sample's, so its first clip gets the first view.
        let mut next = Xoshiro256PlusPlus::seed_from_u64(2);
        assert!(apply(&mut next));
        assert!(!apply(&mut next));
    }

    #[test]
    fn flags_parse_and_print_back() {
        assert_eq!("r3d50".parse::<Arch>(), Ok(Arch(Depth::R50)));
        assert_eq!(Arch(Depth::R18).to_string(), "r3d18");
        assert!("r50".parse::<Arch>().is_err());
        assert_eq!("cuda:1".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(1)));
        assert_eq!("cuda".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(0)));
        assert!("gpu".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn the_configuration_round_trips_through_json_with_flag_spellings() {
        let mut cfg = TrainConfig::paper(vec!["a".into()], "out".into());
        cfg.interval = IntervalDistribution::Power(2.5);
        cfg.optimizer = OptimizerKind::Lars;
        cfg.length = RunLength::Steps(10);
        let json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(json["model"], "r3d50");
        assert_eq!(json["interval"], "power:2.5");
        assert_eq!(json["optimizer"], "lars");
        assert_eq!(json["length"], serde_json::json!({"steps": 10}));
        assert_eq!(serde_json::from_value::<TrainConfig>(json).unwrap(), cfg);
    }

    #[test]
    fn the_paper_plan_on_kinetics_600() {
        let cfg = TrainConfig::paper(vec!["k600".into()], "out".into());
        let plan = Plan::new(&cfg, 366_016).unwrap();
        assert_eq!(plan.steps_per_epoch, 357);
        assert_eq!(plan.total_steps, 71_400);
        assert_eq!(plan.warmup_steps, 1785);
        assert!((plan.base_lr - 0.32).abs() < 1e-12);
        let small = TrainConfig { batch_size: 8, ..TrainConfig::cpu_demo(vec![], "o".into()) };
        assert!((Plan::new(&small, 9).unwrap().base_lr - 0.0025).abs() < 1e-12);
        assert!(matches!(Plan::new(&small, 7), Err(TrainError::Config(_))));
    }

    #[test]
    fn config_differences_name_the_changed_fields() {
        let a = TrainConfig::cpu_demo(vec!["s".into()], "o1".into());
        let b = TrainConfig { lr: 0.5, out: "o2".into(), ..a.clone() };
        let d = config_differences(
            &serde_json::to_value(&a).unwrap(),
            &serde_json::to_value(&b).unwrap(),
        );
        assert_eq!(d, ["lr: 0.32 -> 0.5"]);
    }

    #[test]
    fn an_out_of_memory_message_names_the_flags_that_help() {
        // What tch's panic carries when the CUDA caching allocator gives up (abridged).
        let cuda = "called `Result::unwrap()` on an `Err` value: Torch(\"CUDA out of memory. \
                    Tried to allocate 3.06 GiB. GPU 0 has a total capacity of 79.19 GiB of which \
                    1.2 GiB is free.\\nException raised from malloc at \
                    /pytorch/c10/cuda/CUDACachingAllocator.cpp:1400 (most recent call first):\
                    \\nframe #0: ...\")";
        assert!(is_out_of_memory(cuda));
        for other in [
            "CUDA error: out of memory",
            "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
            "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory",
        ] {
            assert!(is_out_of_memory(other), "{other}");
        }
        for not in ["CUDA error: device-side assert triggered", "shape mismatch", ""] {
            assert!(!is_out_of_memory(not), "{not}");
        }
        let cfg = TrainConfig {
            batch_size: 1024,
            accumulate: 8,
            ..TrainConfig::cpu_demo(vec![], "o".into())
        };
        let stepper_like = TrainError::OutOfMemory {
            step: 3,
            device: "GPU".into(),
            micro_batch: cfg.micro_batch(),
            accumulate: cfg.accumulate,
            detail: torch_detail(cuda),
        };
        let msg = stepper_like.to_string();
        assert!(msg.contains("lower --batch-size or raise --accumulate"), "{msg}");
        assert!(msg.contains("micro-batches of 128 videos (256 clips)"), "{msg}");
        assert!(
            msg.ends_with("GPU 0 has a total capacity of 79.19 GiB of which 1.2 GiB is free."),
            "{msg}"
        );
        assert!(!msg.contains("frame #0"), "{msg}");
    }

    #[test]
    fn accumulate_must_divide_the_batch_into_micro_batches_of_two() {
        let base = TrainConfig::cpu_demo(vec![], "o".into());
        let with = |batch_size, accumulate, supervised| {
            TrainConfig { batch_size, accumulate, supervised, ..base.clone() }.validate_step()
        };
        assert!(with(8, 4, false).is_ok());
        let err = with(8, 3, false).unwrap_err().to_string();
        assert!(err.contains("--accumulate 3 must divide --batch-size 8"), "{err}");
        assert!(with(8, 0, false).is_err());
        let err = with(8, 8, false).unwrap_err().to_string();
        assert!(err.contains("at least 2 videos (negatives"), "{err}");
        assert!(with(8, 8, true).is_ok(), "supervised: one video (two clips) per pass is enough");
        // The learning rate follows the effective batch, whatever the split.
        let split = TrainConfig { batch_size: 1024, accumulate: 16, ..base.clone() };
        let plan = Plan::new(&split, 366_016).unwrap();
        assert_eq!((plan.micro_batch, plan.accumulate, plan.steps_per_epoch), (64, 16, 357));
        assert!((plan.base_lr - 0.32).abs() < 1e-12);
    }

    #[test]
    fn bf16_autocast_can_be_selected_and_regions_restore_the_setting() {
        // These are plain thread-local state in libtorch: they work without a GPU.
        assert!(enable_bf16_autocast());
        assert!(!cuda_autocast_enabled());
        let inner = cuda_autocast(true, || {
            let on = cuda_autocast_enabled();
            (on, cuda_autocast(false, cuda_autocast_enabled), cuda_autocast_enabled())
        });
        assert_eq!(inner, (true, false, true));
        assert!(!cuda_autocast_enabled());
    }
}
