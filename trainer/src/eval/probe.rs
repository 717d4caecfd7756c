//! One evaluation from start to end: open the labelled train and val sets, extract (or load)
//! the frozen encoder's features for both, fit the probe, score it. Used by `cvrl-eval` and
//! by `cvrl-train --eval-every`.

use std::path::PathBuf;

use cvrl_formats::{SetPath, ShardSet};
use serde::Serialize;

use super::features::{features, Target};
use super::finetune::FinetuneConfig;
use super::knn::{knn, KnnConfig};
use super::linear::{linear_probe, LinearConfig, Scores};
use super::views::{ViewSpec, Views};
use super::{Encoder, EvalError};
use crate::sampler::ClipSpec;
use crate::train::TrainConfig;

/// The data and the views an evaluation uses. Clip shape and size default to the run's.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeData {
    /// Labelled sets to fit on (`DIR` or `DIR:SPLIT`).
    pub train: Vec<SetPath>,
    /// Labelled sets to score.
    pub val: Vec<SetPath>,
    #[serde(serialize_with = "as_display")]
    pub target: Target,
    /// Frames per clip (default: the run's).
    pub frames: Option<u32>,
    /// Stride between clip frames at the run's base fps (default: the run's).
    pub stride: Option<u32>,
    /// Side of the square views (default: the run's crop).
    pub size: Option<u32>,
    /// Random clips per training video.
    pub train_clips: u32,
    /// Evenly spaced clips per test video.
    pub temporal_views: u32,
    /// Full-short-side crops per test clip, along the long side.
    pub spatial_crops: u32,
    /// Seeds the training views and the probe.
    pub seed: u64,
    /// Where features are cached (None: not cached).
    pub cache: Option<PathBuf>,
}

impl ProbeData {
    /// The training and test views, with the clip shape and size of `run` where not given.
    pub fn views(&self, run: &TrainConfig) -> [ViewSpec; 2] {
        let clip = ClipSpec {
            frames: self.frames.unwrap_or(run.frames),
            stride: self.stride.unwrap_or(run.stride),
            ..run.clip()
        };
        let size = self.size.unwrap_or(run.crop);
        let train = Views::Train { clips: self.train_clips, seed: self.seed };
        let test = Views::Test { temporal: self.temporal_views, spatial: self.spatial_crops };
        [ViewSpec { clip, size, views: train }, ViewSpec { clip, size, views: test }]
    }
}

fn as_display<S: serde::Serializer>(t: &Target, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

/// Which probe.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Linear(LinearConfig),
    Knn(KnnConfig),
    /// Scored by [`super::finetune::finetune`], which trains the encoder first.
    Finetune(FinetuneConfig),
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::Linear(_) => "linear",
            Method::Knn(_) => "knn",
            Method::Finetune(_) => "finetune",
        }
    }
}

/// An evaluation's result and everything needed to tell it apart from others.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub method: Method,
    /// What the encoder's weights are (file, or random init).
    pub encoder: String,
    pub data: ProbeData,
    /// The views actually used, train then test.
    pub views: [String; 2],
    pub scores: Scores,
}

/// Evaluates `encoder` with `method` on `data`; `progress(stage, done, total)` reports
/// feature extraction.
pub fn evaluate(
    encoder: &Encoder,
    data: &ProbeData,
    method: &Method,
    progress: &dyn Fn(&str, usize, usize),
) -> Result<Report, EvalError> {
    let [train_views, test_views] = data.views(&encoder.config);
    let train_set = ShardSet::open_paths(&data.train)?;
    let val_set = ShardSet::open_paths(&data.val)?;
    let cache = data.cache.as_deref();
    let n = train_set.len();
    let train = features(encoder, &train_set, &train_views, &data.target, None, cache, &|d| {
        progress("train features", d, n)
    })?;
    let n = val_set.len();
    let test =
        features(encoder, &val_set, &test_views, &data.target, Some(&train.names), cache, &|d| {
            progress("val features", d, n)
        })?;
    let device = encoder.vs.device();
    let scores = match method {
        Method::Linear(cfg) => {
            linear_probe(&train, &test, &LinearConfig { seed: data.seed, ..cfg.clone() }, device)?
        }
        Method::Knn(cfg) => knn(&train, &test, cfg, device)?,
        Method::Finetune(_) => {
            return Err(EvalError::Config(
                "fine-tuning trains the encoder: see eval::finetune".into(),
            ))
        }
    };
    Ok(Report {
        method: method.clone(),
        encoder: encoder.source.clone(),
        data: data.clone(),
        views: [train_views.to_string(), test_views.to_string()],
        scores,
    })
}
