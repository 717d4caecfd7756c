//! Which BatchNorm the backbone and head use: [`Norm`]. The default, tch's own BatchNorm, is
//! what a single process trains with; [`Norm::SyncBatch`] normalises with the statistics of
//! every rank's batch ([`crate::dist::SyncBatchNorm`]). Both create the same variables under
//! the same names, so checkpoints move freely between them.

use tch::nn::{self, BatchNormConfig, ModuleT};
use tch::Tensor;

use crate::dist::{sync_batch_norm, ProcessGroup, SyncBatchNorm};

/// The BatchNorm flavour of a model.
#[derive(Debug, Clone, Default)]
pub enum Norm {
    /// tch's `nn::BatchNorm`: statistics of this process's batch.
    #[default]
    Batch,
    /// Statistics of the whole group's batch (global BN); in evaluation, the running ones.
    SyncBatch(ProcessGroup),
}

impl Norm {
    /// A BatchNorm layer of this flavour under `p` (see `nn::batch_norm1d`/`3d` for `nd`).
    pub(crate) fn layer(
        &self,
        p: nn::Path,
        nd: usize,
        channels: i64,
        config: BatchNormConfig,
    ) -> BatchNormLayer {
        match self {
            Norm::Batch => BatchNormLayer::Local(match nd {
                1 => nn::batch_norm1d(p, channels, config),
                2 => nn::batch_norm2d(p, channels, config),
                _ => nn::batch_norm3d(p, channels, config),
            }),
            Norm::SyncBatch(group) => {
                BatchNormLayer::Sync(sync_batch_norm(p, nd, channels, config, Some(group.clone())))
            }
        }
    }
}

/// A BatchNorm layer of either flavour.
#[derive(Debug)]
pub(crate) enum BatchNormLayer {
    Local(nn::BatchNorm),
    Sync(SyncBatchNorm),
}

impl ModuleT for BatchNormLayer {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            BatchNormLayer::Local(bn) => bn.forward_t(xs, train),
            BatchNormLayer::Sync(bn) => bn.forward_t(xs, train),
        }
    }
}
