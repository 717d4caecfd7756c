//! Weighted k-nearest-neighbour classification on frozen features (Wu et al. 2018, as used
//! for quick checks in most contrastive work): every training view is a neighbour; a test
//! video is the mean of its L2-normalised views, renormalised; each of its `k` most
//! cosine-similar neighbours votes for its label with weight `exp(similarity / τ)`.
//! No training, so it is cheap enough to run during pretraining.

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use cvrl_formats::{SetPath, ShardSet};

use super::features::{extract, labels, Features, Target};
use super::linear::{normalize, Scores};
use super::views::{ViewSpec, Views};
use super::{confusion, top_k_accuracy, EvalError};
use crate::model::R3d;
use crate::sampler::ClipSpec;
use crate::train::Monitor;

/// Neighbours and vote temperature.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct KnnConfig {
    pub k: i64,
    pub temperature: f64,
}

impl Default for KnnConfig {
    /// k = 20, τ = 0.07 (InstDisc's settings).
    fn default() -> Self {
        KnnConfig { k: 20, temperature: 0.07 }
    }
}

/// Classifies every video of `test` by its neighbours in `train`.
pub fn knn(
    train: &Features,
    test: &Features,
    cfg: &KnnConfig,
    device: Device,
) -> Result<Scores, EvalError> {
    let (n, v, d) = train.shape();
    let (tn, _, td) = test.shape();
    if n == 0 || tn == 0 || d != td {
        return Err(EvalError::Config(format!(
            "kNN needs train and test features of the same width; got {n} x {d} and {tn} x {td}"
        )));
    }
    let classes = train.names.len() as i64;
    let bank = normalize(&train.data.view([n * v, d])).to_device(device);
    let bank_labels = train.labels.repeat_interleave_self_int(v, 0, None).to_device(device);
    let queries =
        normalize(&normalize(&test.data).mean_dim(1, false, Kind::Float)).to_device(device);
    let scores =
        tch::no_grad(|| vote(&bank, &bank_labels, &queries, classes, cfg)).to_device(Device::Cpu);
    // Leave-one-out top-1 on the training videos would need the bank without each query;
    // report the test set only.
    let (top1, top5) = top_k_accuracy(&scores, &test.labels);
    Ok(Scores {
        top1,
        top5,
        train_top1: None,
        confusion: confusion(&scores, &test.labels, classes as usize),
        names: train.names.clone(),
    })
}

/// Class scores `[Q, C]`: the summed vote weights of each query's `k` nearest neighbours.
fn vote(bank: &Tensor, labels: &Tensor, queries: &Tensor, classes: i64, cfg: &KnnConfig) -> Tensor {
    let k = cfg.k.clamp(1, bank.size()[0]);
    let similarity = queries.matmul(&bank.tr());
    let (top_sim, top_idx) = similarity.topk(k, 1, true, true);
    let weights = (top_sim / cfg.temperature).exp();
    let neighbour_labels = labels.index_select(0, &top_idx.flatten(0, -1)).view_as(&top_idx);
    let q = queries.size()[0];
    Tensor::zeros([q, classes], (Kind::Float, queries.device())).scatter_add(
        1,
        &neighbour_labels,
        &weights,
    )
}

/// A quick kNN check of a backbone while it trains (`cvrl-train --eval-every`): labelled
/// sets opened once, one training clip and two test clips per video, no cache (the weights
/// change between checks).
pub struct KnnMonitor {
    train: ShardSet,
    val: ShardSet,
    train_views: ViewSpec,
    test_views: ViewSpec,
    train_labels: Tensor,
    val_labels: Tensor,
    names: Vec<String>,
}

impl KnnMonitor {
    /// Opens the labelled `train` and `val` sets; clips of shape `clip` at `size` pixels.
    pub fn new(
        train: &[SetPath],
        val: &[SetPath],
        clip: ClipSpec,
        size: u32,
    ) -> Result<Self, EvalError> {
        let train = ShardSet::open_paths(train)?;
        let val = ShardSet::open_paths(val)?;
        let (train_labels, names) = labels(&train, &Target::Class, None)?;
        let (val_labels, _) = labels(&val, &Target::Class, Some(&names))?;
        Ok(KnnMonitor {
            train,
            val,
            train_views: ViewSpec { clip, size, views: Views::Train { clips: 1, seed: 0 } },
            test_views: ViewSpec { clip, size, views: Views::Test { temporal: 2, spatial: 1 } },
            train_labels: Tensor::from_slice(&train_labels),
            val_labels: Tensor::from_slice(&val_labels),
            names,
        })
    }

    /// kNN top-1 (percent) of `backbone`'s features on the val set.
    pub fn top1(&self, backbone: &R3d, device: Device) -> Result<f64, EvalError> {
        let quiet = |_| {};
        let features = |set, views: &ViewSpec, labels: &Tensor| -> Result<Features, EvalError> {
            let data = extract(backbone, device, set, views, &quiet)?;
            Ok(Features { data, labels: labels.shallow_clone(), names: self.names.clone() })
        };
        let train = features(&self.train, &self.train_views, &self.train_labels)?;
        let test = features(&self.val, &self.test_views, &self.val_labels)?;
        Ok(knn(&train, &test, &KnnConfig::default(), device)?.top1)
    }
}

impl Monitor for KnnMonitor {
    fn top1(&mut self, backbone: &R3d, device: Device) -> Result<f64, String> {
        KnnMonitor::top1(self, backbone, device).map_err(|e| e.to_string())
    }
}
