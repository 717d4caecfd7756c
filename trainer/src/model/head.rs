//! CVRL's projection head: `hidden_layers` x (Dense `hidden_dim` -> BN -> ReLU), then a Dense
//! `out_dim` layer (reference: 3 x 2048, then 128; four linear layers in all).
//!
//! The head maps the backbone's feature to the embedding the contrastive loss sees; it is
//! thrown away after pretraining. Its BatchNorm uses the reference's head momentum (TF 0.997,
//! tch [`HEAD_BN_MOMENTUM`] = 0.003), far slower than the backbone's; this only affects the
//! running statistics, which pretraining (always in train mode) never reads.
//!
//! Layers are named `{i}.linear` and `{i}.bn` for the hidden layers `i = 0..hidden_layers`,
//! and `{hidden_layers}.linear` for the output layer. The Dense layers keep their bias, as
//! Keras' `Dense` does by default, even where BN follows and makes it redundant.

use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::norm::{BatchNormLayer, Norm};
use super::{ModelError, BN_EPS, HEAD_BN_MOMENTUM};

/// Shape of the projection head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadConfig {
    /// Dense-BN-ReLU layers before the output layer (reference 3).
    pub hidden_layers: usize,
    /// Units of each hidden layer (reference 2048).
    pub hidden_dim: i64,
    /// Units of the output embedding (reference 128).
    pub out_dim: i64,
}

impl HeadConfig {
    /// The reference head: 3 x (Dense 2048, BN, ReLU), Dense 128.
    pub fn reference() -> Self {
        HeadConfig { hidden_layers: 3, hidden_dim: 2048, out_dim: 128 }
    }
}

impl Default for HeadConfig {
    fn default() -> Self {
        Self::reference()
    }
}

/// One hidden layer: Dense, BN, ReLU.
#[derive(Debug)]
struct Hidden {
    linear: nn::Linear,
    bn: BatchNormLayer,
}

/// The projection head. As a [`ModuleT`] it maps features `[N, in_dim]` to embeddings
/// `[N, out_dim]`.
#[derive(Debug)]
pub struct ProjectionHead {
    hidden: Vec<Hidden>,
    out: nn::Linear,
}

impl ProjectionHead {
    /// Builds the head under `p` for features of `in_dim` channels, with tch's BatchNorm.
    pub fn new(p: &nn::Path, in_dim: i64, config: &HeadConfig) -> Result<Self, ModelError> {
        Self::with_norm(p, in_dim, config, &Norm::Batch)
    }

    /// [`ProjectionHead::new`] with the BatchNorm flavour `norm` (the variables are the same).
    pub fn with_norm(
        p: &nn::Path,
        in_dim: i64,
        config: &HeadConfig,
        norm: &Norm,
    ) -> Result<Self, ModelError> {
        let HeadConfig { hidden_layers, hidden_dim, out_dim } = *config;
        if out_dim < 1 || (hidden_layers > 0 && hidden_dim < 1) {
            return Err(ModelError::EmptyHead { hidden_dim, out_dim });
        }
        let bn_config = nn::BatchNormConfig {
            momentum: HEAD_BN_MOMENTUM,
            eps: BN_EPS,
            // tch's default scale init is uniform in [0, 1]; Keras and PyTorch start at 1.
            ws_init: nn::Init::Const(1.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        let mut c_in = in_dim;
        let hidden = (0..hidden_layers)
            .map(|i| {
                let lp = p / i;
                let layer = Hidden {
                    linear: nn::linear(&lp / "linear", c_in, hidden_dim, Default::default()),
                    bn: norm.layer(&lp / "bn", 1, hidden_dim, bn_config),
                };
                c_in = hidden_dim;
                layer
            })
            .collect();
        let out = nn::linear(p / hidden_layers / "linear", c_in, out_dim, Default::default());
        Ok(ProjectionHead { hidden, out })
    }

    /// Embeddings `[N, out_dim]` of features `[N, in_dim]`. In train mode the batch needs at
    /// least two rows (BatchNorm over one sample has no variance).
    pub fn forward_head_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self
            .hidden
            .iter()
            .fold(xs.shallow_clone(), |x, h| x.apply(&h.linear).apply_t(&h.bn, train).relu());
        ys.apply(&self.out)
    }
}

impl ModuleT for ProjectionHead {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_head_t(xs, train)
    }
}
