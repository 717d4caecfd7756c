//! Synchronised BatchNorm: [`SyncBatchNorm`] normalises with the statistics of the whole
//! group's batch instead of this rank's.
//!
//! With a per-rank batch of a few clips, per-rank BatchNorm statistics are noisy, and in
//! contrastive learning they also leak which clips share a rank (SimCLR's reason for global
//! BN). In training with a group, each rank sums every channel's values and squares over its
//! batch (and spatial positions), all-reduces `[Σx, Σx², count]` with gradient, and
//! normalises with the global mean and biased variance; the running statistics are updated
//! as libtorch's `batch_norm` would over the concatenated global batch (momentum as in tch,
//! unbiased variance for `running_var`). Backward flows through the all-reduce, so the input
//! gradient of each rank is that of the global batch.
//!
//! Variables are tch's: `weight`, `bias`, `running_mean`, `running_var`, created in the same
//! order with the same initialisers as `nn::batch_norm*d`, so a checkpoint loads into either
//! and the model builds the same. tch keeps no `num_batches_tracked` and neither does this.
//! Without a group, in a group of one, or in evaluation, the forward is tch's exactly
//! (`Tensor::batch_norm`).

use std::borrow::Borrow;

use tch::nn::{self, BatchNormConfig, ModuleT};
use tch::{Kind, Tensor};

use super::{DistError, ProcessGroup};

/// BatchNorm over the group's batch (module docs).
#[derive(Debug)]
pub struct SyncBatchNorm {
    config: BatchNormConfig,
    /// Running mean, `[C]`.
    pub running_mean: Tensor,
    /// Running (unbiased) variance, `[C]`.
    pub running_var: Tensor,
    /// Scale γ, `[C]` (absent when not affine).
    pub ws: Option<Tensor>,
    /// Shift β, `[C]` (absent when not affine).
    pub bs: Option<Tensor>,
    nd: usize,
    group: Option<ProcessGroup>,
}

/// A [`SyncBatchNorm`] over inputs with `nd` spatial dimensions (1: `[N, C]` or `[N, C, L]`;
/// 3: `[N, C, T, H, W]`) and `channels` channels, under `vs`. With `group` `None` it is
/// tch's BatchNorm.
pub fn sync_batch_norm<'a, T: Borrow<nn::Path<'a>>>(
    vs: T,
    nd: usize,
    channels: i64,
    config: BatchNormConfig,
    group: Option<ProcessGroup>,
) -> SyncBatchNorm {
    let vs = vs.borrow();
    // The order and initialisers of tch's `batch_norm`, so both build the same variables.
    let (ws, bs) = if config.affine {
        let ws = vs.var("weight", &[channels], config.ws_init);
        let bs = vs.var("bias", &[channels], config.bs_init);
        (Some(ws), Some(bs))
    } else {
        (None, None)
    };
    SyncBatchNorm {
        config,
        running_mean: vs.zeros_no_train("running_mean", &[channels]),
        running_var: vs.ones_no_train("running_var", &[channels]),
        ws,
        bs,
        nd,
        group,
    }
}

impl SyncBatchNorm {
    /// The forward pass; in training with a group it runs two all-reduces now and two in
    /// backward, so every rank must call it in step.
    ///
    /// # Panics
    ///
    /// If `xs` does not have the layer's number of dimensions, as tch's BatchNorm.
    pub fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor, DistError> {
        let dim = xs.dim();
        let ok = if self.nd == 1 { dim == 2 || dim == 3 } else { dim == self.nd + 2 };
        assert!(ok, "as nd={}, got an input with {dim} dims ({:?})", self.nd, xs.size());
        match (&self.group, train) {
            // A world of one holds the whole batch: libtorch's fused kernel gives the same
            // statistics without two all-reduces (PyTorch's SyncBatchNorm falls back the
            // same way).
            (Some(group), true) if group.world_size() > 1 => self.synced(xs, group),
            _ => Ok(Tensor::batch_norm(
                xs,
                self.ws.as_ref(),
                self.bs.as_ref(),
                Some(&self.running_mean),
                Some(&self.running_var),
                train,
                self.config.momentum,
                self.config.eps,
                self.config.cudnn_enabled,
            )),
        }
    }

    fn synced(&self, xs: &Tensor, group: &ProcessGroup) -> Result<Tensor, DistError> {
        let channels = xs.size()[1];
        let reduce: Vec<i64> = (0..xs.dim() as i64).filter(|&d| d != 1).collect();
        // Statistics in f32 at least (bf16/f16 sums of squares would lose too much), in f64
        // for f64 inputs.
        let kind = if xs.kind() == Kind::Double { Kind::Double } else { Kind::Float };
        let x = xs.to_kind(kind);
        let count = (x.numel() as i64 / channels.max(1)) as f64;
        let mut shape = vec![1i64; xs.dim()];
        shape[1] = channels;
        // Two passes, as batch_norm itself: the mean first, then the squares about it. The
        // one-pass E[x²] − E[x]² loses digits to cancellation wherever the mean is large
        // against the spread (after every ReLU), enough to part two ranks' training from one
        // process's within a few steps.
        let local = Tensor::cat(
            &[
                x.sum_dim_intlist(reduce.as_slice(), false, kind),
                Tensor::full([1], count, (kind, x.device())),
            ],
            0,
        );
        let global = group.all_reduce_with_grad(&local)?;
        let n = global.narrow(0, channels, 1);
        let mean = global.narrow(0, 0, channels) / &n;
        let centred = &x - mean.view(shape.as_slice());
        let squares = centred.square().sum_dim_intlist(reduce.as_slice(), false, kind);
        // The biased variance batch_norm normalises with.
        let var = group.all_reduce_with_grad(&squares)? / &n;
        let invstd = (&var + self.config.eps).rsqrt();

        let scale = match &self.ws {
            Some(w) => &invstd * w,
            None => invstd,
        };
        let scaled = centred * scale.view(shape.as_slice());
        let y = match &self.bs {
            Some(b) => scaled + b.view(shape.as_slice()),
            None => scaled,
        };

        tch::no_grad(|| {
            let m = self.config.momentum;
            // Unbiased: n / (n − 1), with n the global count (a tensor: no device sync).
            let unbiased = &var * &n / (&n - 1.0).clamp_min(1.0);
            let mut running_mean = self.running_mean.shallow_clone();
            let mut running_var = self.running_var.shallow_clone();
            running_mean.copy_(&(&self.running_mean * (1.0 - m) + mean.detach() * m));
            running_var.copy_(&(&self.running_var * (1.0 - m) + unbiased.detach() * m));
        });
        Ok(y.to_kind(xs.kind()))
    }
}

impl ModuleT for SyncBatchNorm {
    /// [`SyncBatchNorm::f_forward_t`]; a failed collective (a lost rank) panics with its
    /// message, as a tch op that fails does.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.f_forward_t(xs, train).unwrap_or_else(|e| panic!("sync BatchNorm: {e}"))
    }
}
