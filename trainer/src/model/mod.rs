//! CVRL's encoder: a 3D ResNet backbone ([`R3d`], the paper's stem and res2..res5) followed
//! by the projection head ([`ProjectionHead`], three Dense-BN-ReLU layers and a 128-d
//! Dense), joined in [`Model`].
//!
//! The backbone's pooled feature (2048-d for R3D-50) is what linear evaluation and fine-tuning
//! use; the head's embedding only feeds the contrastive loss ([`crate::loss::info_nce`]).
//! Variables are named as the paper names the layers: `stem.*`, `res2.*` .. `res5.*` and
//! `head.*`, all at the root of the path given to [`Model::new`], so a linear-evaluation
//! program can build [`R3d::new`] on its own root and load the backbone from a pretraining
//! checkpoint under the same names.
//!
//! Input: float clips `[N, C, T, H, W]` with pixels in `[0, 1]` and no mean/std
//! normalisation, as in the reference; [`clips_to_input`] makes them from decoded `u8` clips.
//!
//! ```no_run
//! use cvrl_trainer::model::{clips_to_input, HeadConfig, Model, R3dConfig};
//! use tch::{nn, Device, Kind, Tensor};
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let model = Model::new(&vs.root(), &R3dConfig::r3d18(), &HeadConfig::reference()).unwrap();
//! let clips = Tensor::zeros([2, 3, 16, 112, 112], (Kind::Uint8, Device::Cpu));
//! let (features, embeddings) = model.forward_t(&clips_to_input(&clips, vs.device()).unwrap(), true);
//! assert_eq!(features.size(), [2, 512]);
//! assert_eq!(embeddings.size(), [2, 128]);
//! ```

mod head;
mod norm;
mod r3d;

pub use head::{HeadConfig, ProjectionHead};
pub use norm::Norm;
pub use r3d::{Depth, ParseDepthError, R3d, R3dConfig, Stages, Stem};

use tch::{nn, Device, Kind, Tensor};

/// BatchNorm momentum of the backbone, in PyTorch/tch convention.
///
/// The reference sets momentum 0.9 in TensorFlow's convention, where the moving statistic is
/// updated as `moving = m * moving + (1 - m) * batch`. PyTorch (and so tch) weighs the batch by
/// its momentum instead, `moving = (1 - m) * moving + m * batch`, so TF's 0.9 is 1 - 0.9 = 0.1.
pub const BACKBONE_BN_MOMENTUM: f64 = 0.1;

/// BatchNorm momentum of the projection head, in PyTorch/tch convention: the reference's TF
/// momentum 0.997 becomes 1 - 0.997 = 0.003 (see [`BACKBONE_BN_MOMENTUM`] for the conversion).
pub const HEAD_BN_MOMENTUM: f64 = 0.003;

/// BatchNorm epsilon of backbone and head (reference: 1e-5 for both; same meaning in TF and
/// PyTorch, added to the variance before the square root).
pub const BN_EPS: f64 = 1e-5;

/// A model that cannot be built, or an input it cannot take.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    /// The width multiplier scales every channel count; zero would leave no channels.
    #[error("width multiplier must be at least 1, got 0")]
    ZeroWidthMultiplier,
    /// The base width is the stem's channel count; zero would leave no channels.
    #[error("base width must be at least 1, got 0")]
    ZeroBaseWidth,
    /// The stem's temporal stride must be at least 1.
    #[error("stem temporal stride must be at least 1, got 0")]
    ZeroStemTemporalStride,
    /// The stem pads time by `kernel / 2` on each side; only an odd kernel then keeps the
    /// output length at `ceil(T / stride)`.
    #[error("stem temporal kernel must be odd, got {0}")]
    EvenStemTemporalKernel(u32),
    /// The projection head needs at least its output layer, with at least one unit.
    #[error("projection head dimensions must be at least 1 (hidden {hidden_dim}, out {out_dim})")]
    EmptyHead {
        /// Units of each hidden layer.
        hidden_dim: i64,
        /// Units of the output layer.
        out_dim: i64,
    },
    /// [`clips_to_input`] takes decoded pixels, `u8`.
    #[error("clips must be u8 pixels, got {0:?}")]
    ClipKind(Kind),
    /// [`clips_to_input`] takes `[N, C, T, H, W]`.
    #[error("clips must have shape [N, C, T, H, W], got {0:?}")]
    ClipShape(Vec<i64>),
}

/// Backbone plus projection head: the network CVRL pretrains.
#[derive(Debug)]
pub struct Model {
    /// The R3D backbone; its output is the representation kept after pretraining.
    pub backbone: R3d,
    /// The projection head; only the contrastive loss sees its output.
    pub head: ProjectionHead,
}

impl Model {
    /// Builds backbone and head under `p` (`p / "stem"`, `p / "res2"`, ..., `p / "head"`),
    /// with tch's BatchNorm.
    pub fn new(p: &nn::Path, backbone: &R3dConfig, head: &HeadConfig) -> Result<Self, ModelError> {
        Self::with_norm(p, backbone, head, &Norm::Batch)
    }

    /// [`Model::new`] with the BatchNorm flavour `norm` for backbone and head:
    /// [`Norm::SyncBatch`] for global BN in data-parallel training. The variables are the
    /// same either way.
    pub fn with_norm(
        p: &nn::Path,
        backbone: &R3dConfig,
        head: &HeadConfig,
        norm: &Norm,
    ) -> Result<Self, ModelError> {
        let backbone = R3d::with_norm(p, backbone, norm)?;
        let head = ProjectionHead::with_norm(&(p / "head"), backbone.feature_dim(), head, norm)?;
        Ok(Model { backbone, head })
    }

    /// Runs clips `[N, C, T, H, W]` (float, pixels in `[0, 1]`) through the backbone and head
    /// and returns `(features [N, backbone dim], embeddings [N, head out dim])`.
    ///
    /// `train` switches BatchNorm between batch statistics (and updating the running ones)
    /// and the running statistics. The features are not L2-normalised: the reference feeds
    /// them to the head as they are; the loss normalises the embeddings.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        let features = self.backbone.forward_features_t(xs, train);
        let embeddings = self.head.forward_head_t(&features, train);
        (features, embeddings)
    }
}

/// Turns decoded clips, `u8` `[N, C, T, H, W]`, into the model's input on `device`: `f32`
/// with pixels in `[0, 1]` (divided by 255, no mean/std, as the reference).
///
/// The `u8` tensor is moved first and converted there, so a host-to-GPU copy moves a quarter
/// of the bytes a float copy would.
pub fn clips_to_input(clips: &Tensor, device: Device) -> Result<Tensor, ModelError> {
    if clips.kind() != Kind::Uint8 {
        return Err(ModelError::ClipKind(clips.kind()));
    }
    if clips.dim() != 5 {
        return Err(ModelError::ClipShape(clips.size()));
    }
    Ok(clips.to_device(device).to_kind(Kind::Float) / 255.0)
}
