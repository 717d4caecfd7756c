//! What a run is made of: [`TrainConfig`] (every `cvrl-train` flag, stored in `run.json`
//! and in every checkpoint), its named [`Preset`]s, its validation, and the [`Plan`] it
//! turns into once the shard set's size is known.
//!
//! The presets are the one place where the demo, the paper's run and the proxy
//! experiments' settings are written down; `cvrl-train --preset NAME` starts from one and
//! lays the flags given on the command line over it, and `scripts/experiment.sh` and the
//! learning test name a preset instead of repeating its flags.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use cvrl_formats::SetPath;
use serde::{Deserialize, Serialize};

use super::TrainError;
use crate::augment::{AugmentConfig, AugmentOn, Augmentation};
use crate::device::DeviceChoice;
use crate::model::{Depth, HeadConfig, R3dConfig, Stem};
use crate::optim::OptimizerKind;
use crate::sampler::{ClipSpec, IntervalDistribution};
use crate::schedule::{epochs_to_steps, scaled_lr, steps_per_epoch, LrSchedule};

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
    /// Which of their videos to train on.
    #[serde(default, with = "as_string")]
    pub split: SplitChoice,
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
    /// Where the per-pixel augmentation runs (auto: on the device when it is a GPU).
    #[serde(default, with = "as_string")]
    pub augment_on: AugmentOn,
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
    pub eval_train: Vec<SetPath>,
    /// Labelled shard sets the kNN check scores.
    #[serde(default)]
    pub eval_val: Vec<SetPath>,
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
    /// With several ranks, BatchNorm statistics over the whole batch (the reference's
    /// `use_sync_bn`) rather than each rank's share. No effect on one process.
    #[serde(default = "yes")]
    pub sync_bn: bool,
    /// With several ranks, how long a collective may wait for the others before the run
    /// stops with an error (a rank that hangs).
    #[serde(default = "default_dist_timeout")]
    pub dist_timeout_s: u64,
}

fn yes() -> bool {
    true
}

/// PyTorch's default: long enough for a checkpoint or a kNN check on rank 0 while the
/// others wait.
fn default_dist_timeout() -> u64 {
    crate::dist::DEFAULT_TIMEOUT.as_secs()
}

/// Which videos of the shard sets a run trains on (`--split`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SplitChoice {
    /// The `train` split when the sets have splits (a set built from `videos/train/...` and
    /// `videos/val/...`), so that evaluation videos never leak into pretraining; every
    /// video of a set without splits.
    #[default]
    Auto,
    /// Every video, whatever its split.
    All,
    /// The videos of one split.
    Named(String),
}

impl FromStr for SplitChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" => Err("an empty split name (auto, all or a split of the set)".into()),
            "auto" => Ok(SplitChoice::Auto),
            "all" => Ok(SplitChoice::All),
            name => Ok(SplitChoice::Named(name.to_owned())),
        }
    }
}

impl fmt::Display for SplitChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitChoice::Auto => f.write_str("auto"),
            SplitChoice::All => f.write_str("all"),
            SplitChoice::Named(name) => f.write_str(name),
        }
    }
}

/// A named starting point for a run (`cvrl-train --preset NAME`); flags override its fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// A CPU demo: R3D-18, 8 frames at stride 2, 64-pixel crops, batch 8, the reference's
    /// schedule and loss settings.
    #[default]
    #[value(alias = "cpu")]
    Demo,
    /// The reference's pretraining run: R3D-50, 16 frames at stride 2, 224-pixel crops,
    /// batch 1024, 200 epochs, lr 0.32 per 1024 videos, 5 warm-up epochs.
    Paper,
    /// The CPU experiments on the proxy dataset (`just proxy-data easy`): R3D-18 at width 16
    /// with the small stem on 8 x 32 x 32 clips, batch 32, 160 epochs at lr 1, light
    /// augmentation with every clip grey, crops of at least 0.6 of the frame, temperature 0.2.
    /// Not the reference: tuned so that CVRL learns on the flat-coloured proxy in a CPU budget
    /// (EXPERIMENTS.md).
    ProxyCpu,
    /// The GPU experiments on the proxy dataset (`just proxy-data gpu`): R3D-18 at width 64
    /// on 16 x 112 x 112 clips, batch 128, 60 epochs at lr 1, the reference's augmentation.
    ProxyGpu,
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use clap::ValueEnum;
        let value = self.to_possible_value().expect("no preset is skipped");
        f.write_str(value.get_name())
    }
}

impl TrainConfig {
    /// The configuration `preset` names, training on `shards` into `out`.
    pub fn preset(preset: Preset, shards: Vec<PathBuf>, out: PathBuf) -> Self {
        let demo = TrainConfig {
            shards,
            split: SplitChoice::Auto,
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
            augment_on: AugmentOn::Auto,
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
            sync_bn: true,
            dist_timeout_s: default_dist_timeout(),
        };
        match preset {
            Preset::Demo => demo,
            Preset::Paper => TrainConfig {
                model: Arch(Depth::R50),
                frames: 16,
                crop: 224,
                batch_size: 1024,
                ..demo
            },
            Preset::ProxyCpu => TrainConfig {
                base_width: 16,
                stem: Stem::Small,
                crop: 32,
                batch_size: 32,
                head_hidden_dim: 256,
                embedding_dim: 64,
                length: RunLength::Epochs(160.0),
                lr: 1.0,
                warmup_epochs: 1.0,
                temperature: 0.2,
                augmentation: Augmentation::Light,
                crop_area_min: 0.6,
                grayscale_p: Some(1.0),
                channels_last: true,
                device: DeviceChoice::Cpu,
                ..demo
            },
            Preset::ProxyGpu => TrainConfig {
                frames: 16,
                crop: 112,
                batch_size: 128,
                length: RunLength::Epochs(60.0),
                lr: 1.0,
                warmup_epochs: 3.0,
                workers: 12,
                ..demo
            },
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

    pub(super) fn validate(&self) -> Result<(), TrainError> {
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
    pub(super) fn validate_step(&self) -> Result<(), TrainError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_print_back() {
        assert_eq!("r3d50".parse::<Arch>(), Ok(Arch(Depth::R50)));
        assert_eq!(Arch(Depth::R18).to_string(), "r3d18");
        assert!("r50".parse::<Arch>().is_err());
    }

    #[test]
    fn the_configuration_round_trips_through_json_with_flag_spellings() {
        let mut cfg = TrainConfig::preset(Preset::Paper, vec!["a".into()], "out".into());
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
        let cfg = TrainConfig::preset(Preset::Paper, vec!["k600".into()], "out".into());
        let plan = Plan::new(&cfg, 366_016).unwrap();
        assert_eq!(plan.steps_per_epoch, 357);
        assert_eq!(plan.total_steps, 71_400);
        assert_eq!(plan.warmup_steps, 1785);
        assert!((plan.base_lr - 0.32).abs() < 1e-12);
        let small =
            TrainConfig { batch_size: 8, ..TrainConfig::preset(Preset::Demo, vec![], "o".into()) };
        assert!((Plan::new(&small, 9).unwrap().base_lr - 0.0025).abs() < 1e-12);
        assert!(matches!(Plan::new(&small, 7), Err(TrainError::Config(_))));
    }

    #[test]
    fn accumulate_must_divide_the_batch_into_micro_batches_of_two() {
        let base = TrainConfig::preset(Preset::Demo, vec![], "o".into());
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
}
