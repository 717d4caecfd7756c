//! Fine-tuning, the downstream protocol (UCF-101/HMDB-51 in the paper): the whole encoder
//! plus a linear classifier trained on labels, starting from a pretrained encoder (or from
//! random weights, which makes it the supervised baseline), then scored on the test views
//! with the softmax averaged over views, like the linear probe.
//!
//! The training is `cvrl-train --supervised --init-encoder`: the run's configuration with
//! the labelled set, the schedule given here and supervision switched on, in its own run
//! directory, so it logs, checkpoints and resumes like any run.

use std::path::{Path, PathBuf};

use cvrl_formats::ShardSet;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::features::{features, Target};
use super::linear::Scores;
use super::probe::ProbeData;
use super::{confusion, read_run_config, top_k_accuracy, Encoder, EvalError};
use crate::checkpoint;
use crate::device::DeviceChoice;
use crate::run_dir::RunDir;
use crate::train::{train, Reporter, RunLength, SplitChoice, TrainConfig};

/// How long and how fast the whole network is trained.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FinetuneConfig {
    pub epochs: f64,
    /// Videos per step [default: the pretraining run's].
    pub batch_size: Option<usize>,
    /// Learning rate per 1024 videos.
    pub lr: f64,
    pub warmup_epochs: f64,
    /// Where the fine-tuning run goes.
    pub out: PathBuf,
    #[serde(skip)]
    pub device: DeviceChoice,
}

/// The training configuration of a fine-tuning run of `run_dir`'s encoder on `data.train`.
pub fn finetune_config(
    run_dir: &Path,
    random_init: bool,
    data: &ProbeData,
    cfg: &FinetuneConfig,
) -> Result<TrainConfig, EvalError> {
    let base = read_run_config(run_dir)?;
    if data.target != Target::Class {
        return Err(EvalError::Config("fine-tuning trains on the class labels only".into()));
    }
    Ok(TrainConfig {
        shards: data.train.iter().map(|p| p.dir.clone()).collect(),
        split: match data.train.first().and_then(|p| p.split.clone()) {
            Some(split) => SplitChoice::Named(split),
            None => SplitChoice::All,
        },
        out: cfg.out.clone(),
        supervised: true,
        init_encoder: (!random_init).then(|| RunDir::new(run_dir).encoder()),
        length: RunLength::Epochs(cfg.epochs),
        lr: cfg.lr,
        warmup_epochs: cfg.warmup_epochs,
        batch_size: cfg.batch_size.unwrap_or(base.batch_size),
        accumulate: 1,
        seed: data.seed,
        checkpoint_every: 0,
        keep_checkpoints: 1,
        device: cfg.device,
        // The pretraining run's kNN check (--eval-every) is not part of fine-tuning.
        eval_every: 0,
        eval_train: Vec::new(),
        eval_val: Vec::new(),
        ..base
    })
}

/// Fine-tunes (see the module docs) and scores the result on `data.val`.
pub fn finetune(
    run_dir: &Path,
    random_init: bool,
    data: &ProbeData,
    cfg: &FinetuneConfig,
    reporter: &mut dyn Reporter,
    progress: &dyn Fn(&str, usize, usize),
) -> Result<(Scores, String), EvalError> {
    let train_cfg = finetune_config(run_dir, random_init, data, cfg)?;
    let summary = train(&train_cfg, None, reporter)
        .map_err(|e| EvalError::Config(format!("fine-tuning into {}: {e}", cfg.out.display())))?;
    let device = crate::device::pick_device(train_cfg.device)
        .map_err(|e| EvalError::Config(e.to_string()))?;
    let encoder = Encoder::load(&cfg.out, None, device)?;
    let (weight, bias) = classifier(&cfg.out, summary.last_checkpoint.as_deref())?;
    let train_set = ShardSet::open_paths(&data.train)?;
    let val_set = ShardSet::open_paths(&data.val)?;
    let names = train_set.classes().to_vec();
    let [_, views] = data.views(&encoder.config);
    let n = val_set.len();
    let test = features(
        &encoder,
        &val_set,
        &views,
        &Target::Class,
        Some(&names),
        data.cache.as_deref(),
        &|d| progress("val features", d, n),
    )?;
    let (tn, tv, d) = test.shape();
    let logits = test.data.view([tn * tv, d]).matmul(&weight.tr()) + &bias;
    let probs = logits.softmax(-1, Kind::Float).view([tn, tv, -1]).mean_dim(1, false, Kind::Float);
    let (top1, top5) = top_k_accuracy(&probs, &test.labels);
    let confusion = confusion(&probs, &test.labels, names.len());
    let scores = Scores { top1, top5, train_top1: None, confusion, names };
    Ok((scores, views.to_string()))
}

/// The linear classifier of the fine-tuned run's last checkpoint, on the CPU.
fn classifier(out: &Path, last: Option<&Path>) -> Result<(Tensor, Tensor), EvalError> {
    let dir = match last {
        Some(dir) => dir.to_path_buf(),
        None => checkpoint::resolve(out)
            .map_err(|e| EvalError::Run { path: out.into(), what: e.to_string() })?,
    };
    let path = dir.join(checkpoint::MODEL_FILE);
    let tensors =
        Tensor::read_safetensors(&path).map_err(EvalError::torch(path.display().to_string()))?;
    let get = |name: &str| {
        tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t.to_device(Device::Cpu)).ok_or_else(
            || EvalError::Run {
                path: path.clone(),
                what: format!("no {name}: not a supervised run"),
            },
        )
    };
    Ok((get("head.linear.weight")?, get("head.linear.bias")?))
}
