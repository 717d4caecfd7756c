//! The linear probe: one dense layer on the frozen, L2-normalised pooled features, trained
//! with SGD (momentum 0.9, no weight decay) and a warm-up + cosine schedule, as in the
//! reference's linear evaluation (learning rate 32 per 1024 samples; small because the
//! normalised features are). Every training view is a sample; at test time the softmax of
//! every view of a video is averaged.

use serde::Serialize;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

use super::features::Features;
use super::{confusion, top_k_accuracy, EvalError};
use crate::schedule::{epochs_to_steps, scaled_lr, steps_per_epoch, LrSchedule};

/// How the classifier is trained.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinearConfig {
    pub epochs: f64,
    /// Samples (views) per step.
    pub batch: usize,
    /// Learning rate per 1024 samples (reference 32), scaled linearly to `batch`.
    pub lr: f64,
    pub warmup_epochs: f64,
    pub momentum: f64,
    pub seed: u64,
}

impl Default for LinearConfig {
    /// The reference's settings, with 100 epochs and 5 warm-up epochs.
    fn default() -> Self {
        LinearConfig {
            epochs: 100.0,
            batch: 256,
            lr: 32.0,
            warmup_epochs: 5.0,
            momentum: 0.9,
            seed: 0,
        }
    }
}

/// Scores of a classifier on a test set, and how it was doing on its training set.
#[derive(Clone, Debug, Serialize)]
pub struct Scores {
    pub top1: f64,
    pub top5: f64,
    /// Top-1 on the training views (a probe far above its test score overfits); none for
    /// kNN, which does not train.
    pub train_top1: Option<f64>,
    /// Rows: true label, columns: predicted, over the test videos.
    pub confusion: Vec<Vec<u32>>,
    /// Label names, in index order.
    pub names: Vec<String>,
}

/// L2-normalises the last dimension.
pub fn normalize(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [-1], true).clamp_min(1e-12)
}

/// Trains the probe on `train`, then scores `test` (softmax averaged over its views).
pub fn linear_probe(
    train: &Features,
    test: &Features,
    cfg: &LinearConfig,
    device: Device,
) -> Result<Scores, EvalError> {
    let (n, v, d) = train.shape();
    let classes = train.names.len() as i64;
    if n == 0 || classes < 2 {
        return Err(EvalError::Labels(format!(
            "a linear probe needs labelled videos of at least 2 {}; got {n} videos, {classes} labels",
            "classes"
        )));
    }
    tch::manual_seed(cfg.seed as i64);
    let x = normalize(&train.data.view([n * v, d])).to_device(device);
    let y = train.labels.repeat_interleave_self_int(v, 0, None).to_device(device);
    let vs = nn::VarStore::new(device);
    let layer = nn::linear(vs.root() / "linear", d, classes, Default::default());
    let mut opt = nn::Sgd { momentum: cfg.momentum, ..Default::default() }
        .build(&vs, 0.0)
        .map_err(EvalError::torch("linear probe optimiser"))?;
    let samples = (n * v) as usize;
    let batch = cfg.batch.clamp(1, samples);
    let per_epoch = steps_per_epoch(samples, batch);
    let schedule = LrSchedule::new(
        scaled_lr(cfg.lr, batch),
        epochs_to_steps(cfg.warmup_epochs, per_epoch),
        epochs_to_steps(cfg.epochs, per_epoch).max(1),
    );
    let mut step = 0;
    while step < schedule.total_steps {
        let order = Tensor::randperm(samples as i64, (Kind::Int64, device));
        for idx in order.split(batch as i64, 0) {
            if step == schedule.total_steps {
                break;
            }
            opt.set_lr(schedule.lr_at(step));
            let logits = layer.forward(&x.index_select(0, &idx));
            let loss = logits.cross_entropy_loss::<Tensor>(
                &y.index_select(0, &idx),
                None,
                Reduction::Mean,
                -100,
                0.0,
            );
            opt.backward_step(&loss);
            step += 1;
        }
    }
    let train_scores = tch::no_grad(|| layer.forward(&x));
    let (train_top1, _) = top_k_accuracy(&train_scores, &y);
    let (tn, tv, td) = test.shape();
    if td != d {
        return Err(EvalError::Config(format!("train features have {d} channels, test {td}")));
    }
    let probs = tch::no_grad(|| {
        let xt = normalize(&test.data.view([tn * tv, td])).to_device(device);
        layer.forward(&xt).softmax(-1, Kind::Float).view([tn, tv, classes]).mean_dim(
            1,
            false,
            Kind::Float,
        )
    })
    .to_device(Device::Cpu);
    let (top1, top5) = top_k_accuracy(&probs, &test.labels);
    Ok(Scores {
        top1,
        top5,
        train_top1: Some(train_top1),
        confusion: confusion(&probs, &test.labels, classes as usize),
        names: train.names.clone(),
    })
}
