//! Weighted k-nearest-neighbour classification on frozen features (Wu et al. 2018, as used
//! for quick checks in most contrastive work): every training view is a neighbour; a test
//! video is the mean of its L2-normalised views, renormalised; each of its `k` most
//! cosine-similar neighbours votes for its label with weight `exp(similarity / τ)`.
//! No training, so it is cheap enough to run during pretraining.

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::features::Features;
use super::linear::{normalize, Scores};
use super::{confusion, top_k_accuracy, EvalError};

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
