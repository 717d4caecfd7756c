//! Evaluation of a pretrained encoder, as in the paper: frozen features probed by a linear
//! classifier ([`linear`]) or by k nearest neighbours ([`knn`]), and plots of the results
//! ([`plot`]). Fine-tuning trains the whole encoder and lives in the training loop.
//!
//! The pipeline: [`Encoder::load`] builds the backbone a run directory describes (its
//! `run.json`) and loads its `encoder.safetensors`, or keeps the random initialisation for
//! the random-init baseline, so every method goes through the same code. [`views`] cuts the
//! clips (one or more random clips per training video, K temporal x S spatial views per test
//! video), [`features`] runs the frozen backbone over them once and caches the pooled
//! features under a key that changes when the weights, the shard set or the sampling do.

pub mod features;
pub mod finetune;
pub mod knn;
pub mod linear;
pub mod plot;
pub mod probe;
pub mod views;

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tch::nn::VarStore;
use tch::{Device, Tensor};

use crate::checkpoint;
use crate::model::R3d;
use crate::run_dir::RunDir;
use crate::train::TrainConfig;

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A run directory without a usable `run.json` or encoder.
    #[error("{path}: {what}")]
    Run { path: PathBuf, what: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Format(#[from] cvrl_formats::FormatError),
    /// Writing tensors (the feature cache) failed.
    #[error(transparent)]
    Tensors(#[from] checkpoint::CheckpointError),
    #[error("{context}: {source}")]
    Torch {
        context: String,
        #[source]
        source: tch::TchError,
    },
    /// Labels are missing for the target asked for.
    #[error("{0}")]
    Labels(String),
    /// Flags that cannot work together.
    #[error("{0}")]
    Config(String),
    #[error("plot {path}: {what}")]
    Plot { path: PathBuf, what: String },
}

impl EvalError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EvalError + '_ {
        move |source| EvalError::Io { path: path.to_path_buf(), source }
    }
    fn torch(context: impl Into<String>) -> impl FnOnce(tch::TchError) -> EvalError {
        let context = context.into();
        move |source| EvalError::Torch { context, source }
    }
}

/// Reads the training configuration recorded in `run_dir/run.json`.
pub fn read_run_config(run_dir: &Path) -> Result<TrainConfig, EvalError> {
    let path = RunDir::new(run_dir).run_json();
    let text = fs::read_to_string(&path).map_err(|e| EvalError::Run {
        path: path.clone(),
        what: format!("{e} (is this a cvrl-train run directory?)"),
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| EvalError::Run { path: path.clone(), what: format!("not JSON: {e}") })?;
    serde_json::from_value(value["config"].clone())
        .map_err(|e| EvalError::Run { path, what: format!("no valid \"config\": {e}") })
}

/// A frozen backbone and where its weights came from.
pub struct Encoder {
    /// Holds the backbone's variables; kept alive with it.
    pub vs: VarStore,
    pub backbone: R3d,
    /// The configuration of the run the backbone belongs to.
    pub config: TrainConfig,
    /// What the weights are, for reports: the encoder file, or `random init (seed S)`.
    pub source: String,
    /// A digest of the weights' origin (file contents, or architecture + seed): part of the
    /// feature cache's key.
    pub digest: String,
}

impl Encoder {
    /// Builds the backbone of the run in `run_dir` on `device` and loads its trained weights,
    /// or, with `random_init = Some(seed)`, keeps a seeded random initialisation of the same
    /// architecture (the baseline every method is compared with).
    pub fn load(
        run_dir: &Path,
        random_init: Option<u64>,
        device: Device,
    ) -> Result<Encoder, EvalError> {
        let config = read_run_config(run_dir)?;
        if let Some(seed) = random_init {
            tch::manual_seed(seed as i64);
        }
        let mut vs = VarStore::new(device);
        let backbone = R3d::new(&vs.root(), &config.backbone()).map_err(|e| EvalError::Run {
            path: RunDir::new(run_dir).run_json(),
            what: e.to_string(),
        })?;
        let arch = config.model_description();
        let (source, digest) = match random_init {
            Some(seed) => {
                (format!("random init (seed {seed})"), digest(format!("{arch}/random/{seed}")))
            }
            None => {
                let path = RunDir::new(run_dir).encoder();
                let bytes = fs::read(&path).map_err(|e| EvalError::Run {
                    path: path.clone(),
                    what: format!("{e} (the run exports it when it finishes)"),
                })?;
                checkpoint::load_backbone(&vs, &path).map_err(|e| EvalError::Run {
                    path: path.clone(),
                    what: match e {
                        checkpoint::CheckpointError::Torch { error, .. } => format!(
                            "cannot be read as safetensors ({error}): the file is damaged \
                             or not an encoder; copy the run directory again"
                        ),
                        e => format!("does not match the run's model: {e}"),
                    },
                })?;
                (path.display().to_string(), digest(bytes))
            }
        };
        vs.freeze();
        Ok(Encoder { vs, backbone, config, source, digest })
    }
}

/// Hex SHA-256 of `data`, shortened to 16 digits (a cache key, not a security measure).
pub fn digest(data: impl AsRef<[u8]>) -> String {
    let hash = Sha256::digest(data.as_ref());
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Top-1 and top-5 accuracy of class scores `[N, C]` against `labels` `[N]`, in percent.
pub fn top_k_accuracy(scores: &Tensor, labels: &Tensor) -> (f64, f64) {
    let n = labels.size()[0].max(1) as f64;
    let classes = scores.size()[1];
    let hits = |k: i64| {
        let (_, top) = scores.topk(k.min(classes), 1, true, true);
        let hit = top.eq_tensor(&labels.unsqueeze(1)).any_dim(1, false);
        100.0 * hit.sum(tch::Kind::Float).double_value(&[]) / n
    };
    (hits(1), hits(5))
}

/// Counts of (true class, predicted class) from scores `[N, C]`: row = truth.
pub fn confusion(scores: &Tensor, labels: &Tensor, classes: usize) -> Vec<Vec<u32>> {
    let predicted = Vec::<i64>::try_from(scores.argmax(1, false)).unwrap_or_default();
    let truth = Vec::<i64>::try_from(labels).unwrap_or_default();
    let mut m = vec![vec![0u32; classes]; classes];
    for (t, p) in truth.into_iter().zip(predicted) {
        if let Some(cell) = m.get_mut(t as usize).and_then(|row| row.get_mut(p as usize)) {
            *cell += 1;
        }
    }
    m
}
