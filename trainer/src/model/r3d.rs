//! The 3D ResNet backbone (R3D) of CVRL: the "Slow" pathway of SlowFast with a 5x7x7,
//! temporal-stride-2 stem, as set in the reference's pretraining config.
//!
//! Layout (R3D-50, input `[N, 3, T, H, W]`, widths before the width multiplier):
//!
//! | layer | blocks | ops                                                         | output          |
//! |-------|--------|-------------------------------------------------------------|-----------------|
//! | stem  |        | conv 5x7x7, 64, stride (2,2,2); BN; ReLU; max-pool 1x3x3 s(1,2,2) | 64 x T/2 x H/4 |
//! | res2  | 3      | [1x1x1, 64; 1x3x3, 64; 1x1x1, 256]                          | 256 x T/2 x H/4 |
//! | res3  | 4      | [1x1x1, 128; 1x3x3, 128 (s 2 in block 0); 1x1x1, 512]       | 512 x T/2 x H/8 |
//! | res4  | 6      | [3x1x1, 256; 1x3x3, 256 (s 2); 1x1x1, 1024]                 | 1024 x T/2 x H/16 |
//! | res5  | 3      | [3x1x1, 512; 1x3x3, 512 (s 2); 1x1x1, 2048]                 | 2048 x T/2 x H/32 |
//! |       |        | global average pool over T, H, W                            | 2048            |
//!
//! Every conv is bias-free and followed by BatchNorm; a block whose input and output shapes
//! differ gets a 1x1x1 projection shortcut (conv + BN), carrying the block's spatial stride.
//! Time is never strided after the stem, so a 16-frame clip stays 8 frames long to the end.
//! Padding is symmetric, half the kernel (PyTorch style): for stride 2 the output sizes equal
//! TF's `same` padding, though TF puts the odd pixel of padding at the end only.
//!
//! Depths 101 and 152 only change the block counts (3/4/23/3, 3/8/36/3). Depths 18 and 34
//! (not in the reference; for small machines) use basic blocks without expansion (512-d
//! feature): `[t x3x3 conv, BN, ReLU, 1x3x3 conv, BN]` with the same temporal-kernel plan,
//! `t` = 1 in res2/res3 and 3 in res4/res5. This is SlowFast's `BasicTransform` ("Tx3x3,
//! 1x3x3"): one temporal conv per block, as in the bottleneck, so the temporal receptive
//! field grows as in R3D-50 rather than twice as fast.
//!
//! The width multiplier (the paper's 2x and 4x models) scales every width, the stem's
//! included. The released TF code has no such option; this follows the paper's description.
//!
//! [`Stem::Small`] (not in the reference) is for crops of 32-64 pixels, where the 7x7
//! stride-2 stem and its pool leave res2 an 8x8 grid at 32 pixels: a 3x3 conv of spatial
//! stride 1 keeps the first layer at full resolution (CIFAR ResNets do the same), so res2
//! sees H/2 and every later stage twice the side, for 4x their compute.

use std::fmt;
use std::str::FromStr;

use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::norm::{BatchNormLayer, Norm};
use super::{ModelError, BACKBONE_BN_MOMENTUM, BN_EPS};

/// Network depth, which fixes the block type and the number of blocks per stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Depth {
    /// Basic blocks, 2/2/2/2.
    R18,
    /// Basic blocks, 3/4/6/3.
    R34,
    /// Bottleneck blocks, 3/4/6/3: the reference.
    R50,
    /// Bottleneck blocks, 3/4/23/3.
    R101,
    /// Bottleneck blocks, 3/8/36/3.
    R152,
}

impl Depth {
    /// Blocks in res2, res3, res4, res5.
    pub fn blocks(self) -> [usize; 4] {
        match self {
            Depth::R18 => [2, 2, 2, 2],
            Depth::R34 | Depth::R50 => [3, 4, 6, 3],
            Depth::R101 => [3, 4, 23, 3],
            Depth::R152 => [3, 8, 36, 3],
        }
    }

    /// Whether the stages use bottleneck blocks (x4 expansion) rather than basic ones.
    pub fn bottleneck(self) -> bool {
        !matches!(self, Depth::R18 | Depth::R34)
    }

    /// The layer count the name carries: 18, 34, 50, 101 or 152.
    pub fn layers(self) -> u32 {
        match self {
            Depth::R18 => 18,
            Depth::R34 => 34,
            Depth::R50 => 50,
            Depth::R101 => 101,
            Depth::R152 => 152,
        }
    }
}

impl fmt::Display for Depth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.layers())
    }
}

/// A depth that is not 18, 34, 50, 101 or 152.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown R3D depth {0:?} (expected 18, 34, 50, 101 or 152)")]
pub struct ParseDepthError(String);

impl FromStr for Depth {
    type Err = ParseDepthError;

    /// Parses `"50"` or `"r50"` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix(['r', 'R']).unwrap_or(s);
        match digits {
            "18" => Ok(Depth::R18),
            "34" => Ok(Depth::R34),
            "50" => Ok(Depth::R50),
            "101" => Ok(Depth::R101),
            "152" => Ok(Depth::R152),
            _ => Err(ParseDepthError(s.to_owned())),
        }
    }
}

/// The stem's spatial layout (module doc). Both end with the 1x3x3 stride-2 max-pool.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// The reference's conv `t`x7x7, spatial stride 2: res2 at H/4.
    #[default]
    Reference,
    /// A conv `t`x3x3 of spatial stride 1, for small crops: res2 at H/2.
    Small,
}

impl Stem {
    /// Spatial kernel and stride of the stem conv.
    fn spatial(self) -> (i64, i64) {
        match self {
            Stem::Reference => (7, 2),
            Stem::Small => (3, 1),
        }
    }
}

impl fmt::Display for Stem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stem::Reference => "reference",
            Stem::Small => "small",
        })
    }
}

impl FromStr for Stem {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reference" => Ok(Stem::Reference),
            "small" => Ok(Stem::Small),
            other => Err(format!("{other:?}: expected reference or small")),
        }
    }
}

/// How to build an [`R3d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct R3dConfig {
    /// Block type and count.
    pub depth: Depth,
    /// Channels of the stem and of res2's inner width (reference 64); res3..res5 double it
    /// stage by stage. Lower it (16, 32) for CPU experiments; `width_multiplier` scales it.
    pub base_width: u32,
    /// Scales every width (stem included): 1, or the paper's 2 and 4.
    pub width_multiplier: u32,
    /// Temporal kernel of the stem conv (reference 5; must be odd).
    pub stem_temporal_kernel: u32,
    /// Temporal stride of the stem conv (reference 2); the only temporal stride in the net.
    pub stem_temporal_stride: u32,
    /// Spatial kernel and stride of the stem conv.
    pub stem: Stem,
}

impl R3dConfig {
    /// The reference's R3D-50: 5x7x7 stem with temporal stride 2, width 1; 31.7M parameters.
    pub fn r3d50() -> Self {
        R3dConfig {
            depth: Depth::R50,
            base_width: STEM_WIDTH as u32,
            width_multiplier: 1,
            stem_temporal_kernel: 5,
            stem_temporal_stride: 2,
            stem: Stem::Reference,
        }
    }

    /// R3D-18 with the reference's stem and temporal-kernel plan, for small machines.
    pub fn r3d18() -> Self {
        R3dConfig { depth: Depth::R18, ..Self::r3d50() }
    }

    /// Channels of the pooled feature: 2048 x width for bottleneck depths, 512 x width else.
    pub fn feature_dim(&self) -> i64 {
        let expansion = if self.depth.bottleneck() { 4 } else { 1 };
        self.stage_width(3) * expansion
    }

    /// Channels of the stem.
    fn stem_width(&self) -> i64 {
        i64::from(self.base_width) * i64::from(self.width_multiplier)
    }

    /// Inner width of stage `i` (0 = res2): the stem's width, doubled per stage.
    fn stage_width(&self, i: usize) -> i64 {
        self.stem_width() * STAGE_WIDTHS[i] / STAGE_WIDTHS[0]
    }

    /// Checks the fields that the types alone do not.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.width_multiplier == 0 {
            return Err(ModelError::ZeroWidthMultiplier);
        }
        if self.base_width == 0 {
            return Err(ModelError::ZeroBaseWidth);
        }
        if self.stem_temporal_stride == 0 {
            return Err(ModelError::ZeroStemTemporalStride);
        }
        if self.stem_temporal_kernel % 2 != 1 {
            return Err(ModelError::EvenStemTemporalKernel(self.stem_temporal_kernel));
        }
        Ok(())
    }
}

/// Output channels of the stem in the reference (base width 64, multiplier 1).
const STEM_WIDTH: i64 = 64;
/// Inner widths of res2..res5 at width 1 (the output of a bottleneck stage is 4x this).
const STAGE_WIDTHS: [i64; 4] = [64, 128, 256, 512];
/// Temporal kernel of the temporal conv in every block of res2..res5 (reference: 1, 1, 3, 3).
const STAGE_TEMPORAL_KERNELS: [i64; 4] = [1, 1, 3, 3];
/// Spatial stride of the first block of res2..res5. res2 needs none: the stem's pool halved
/// the size already.
const STAGE_SPATIAL_STRIDES: [i64; 4] = [1, 2, 2, 2];
/// Bottleneck expansion.
const EXPANSION: i64 = 4;

/// He initialisation suits the ReLU that follows every conv; BatchNorm right after each conv
/// makes the exact scale matter little.
const CONV_INIT: nn::Init = nn::init::DEFAULT_KAIMING_NORMAL;

/// A bias-free 3D conv with any kernel, padded by half the kernel on each side. tch's
/// `nn::conv3d` only takes cubic kernels, and `ConvConfigND<[i64; 3]>` has no `Default`.
fn conv3d(p: nn::Path, c_in: i64, c_out: i64, kernel: [i64; 3], stride: [i64; 3]) -> nn::Conv3D {
    let config = nn::ConvConfigND::<[i64; 3]> {
        stride,
        padding: kernel.map(|k| k / 2),
        dilation: [1, 1, 1],
        groups: 1,
        bias: false,
        ws_init: CONV_INIT,
        bs_init: nn::Init::Const(0.0),
        padding_mode: nn::PaddingMode::Zeros,
    };
    nn::conv(p, c_in, c_out, kernel, config)
}

/// Backbone BatchNorm. tch's default initialises the scale uniformly in [0, 1]; the
/// reference (Keras) and PyTorch start at 1.
fn batch_norm3d(p: nn::Path, channels: i64, norm: &Norm) -> BatchNormLayer {
    let config = nn::BatchNormConfig {
        momentum: BACKBONE_BN_MOMENTUM,
        eps: BN_EPS,
        ws_init: nn::Init::Const(1.0),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    norm.layer(p, 3, channels, config)
}

/// A conv and the BatchNorm after it; the pair every layer of the net is made of.
#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv3D,
    bn: BatchNormLayer,
}

impl ConvBn {
    /// Variables `p / "conv_{name}"` and `p / "bn_{name}"` (`name` empty: `conv`, `bn`).
    fn new(
        p: &nn::Path,
        name: &str,
        (c_in, c_out): (i64, i64),
        kernel: [i64; 3],
        stride: [i64; 3],
        norm: &Norm,
    ) -> Self {
        let suffix = if name.is_empty() { String::new() } else { format!("_{name}") };
        ConvBn {
            conv: conv3d(p / format!("conv{suffix}"), c_in, c_out, kernel, stride),
            bn: batch_norm3d(p / format!("bn{suffix}"), c_out, norm),
        }
    }
}

impl ModuleT for ConvBn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.conv).apply_t(&self.bn, train)
    }
}

/// One residual block: basic (`a`, `b`) or bottleneck (`a`, `b`, `c`), and a projection
/// shortcut where the shape changes.
#[derive(Debug)]
struct Block {
    a: ConvBn,
    b: ConvBn,
    c: Option<ConvBn>,
    shortcut: Option<ConvBn>,
}

impl Block {
    /// `width` is the inner width; the output has `width * EXPANSION` channels for a
    /// bottleneck, `width` for a basic block.
    fn new(
        p: &nn::Path,
        bottleneck: bool,
        (c_in, width): (i64, i64),
        temporal_kernel: i64,
        spatial_stride: i64,
        norm: &Norm,
    ) -> Self {
        let stride = [1, spatial_stride, spatial_stride];
        let (a, b, c, c_out) = if bottleneck {
            let c_out = width * EXPANSION;
            (
                ConvBn::new(p, "a", (c_in, width), [temporal_kernel, 1, 1], [1, 1, 1], norm),
                ConvBn::new(p, "b", (width, width), [1, 3, 3], stride, norm),
                Some(ConvBn::new(p, "c", (width, c_out), [1, 1, 1], [1, 1, 1], norm)),
                c_out,
            )
        } else {
            (
                ConvBn::new(p, "a", (c_in, width), [temporal_kernel, 3, 3], stride, norm),
                ConvBn::new(p, "b", (width, width), [1, 3, 3], [1, 1, 1], norm),
                None,
                width,
            )
        };
        let shortcut = (c_in != c_out || spatial_stride != 1)
            .then(|| ConvBn::new(p, "shortcut", (c_in, c_out), [1, 1, 1], stride, norm));
        Block { a, b, c, shortcut }
    }
}

impl ModuleT for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.apply_t(&self.a, train).relu().apply_t(&self.b, train);
        if let Some(c) = &self.c {
            ys = ys.relu().apply_t(c, train);
        }
        let shortcut = match &self.shortcut {
            Some(s) => xs.apply_t(s, train),
            None => xs.shallow_clone(),
        };
        (ys + shortcut).relu()
    }
}

/// The blocks of one stage (res2..res5), named `0`, `1`, ... under the stage's path.
#[derive(Debug)]
struct Stage {
    blocks: Vec<Block>,
}

impl ModuleT for Stage {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.blocks.iter().fold(xs.shallow_clone(), |x, block| x.apply_t(block, train))
    }
}

/// The output of every layer of the backbone, for inspection and tests.
#[derive(Debug)]
pub struct Stages {
    /// After the stem's max-pool: `[N, 64w, T/s, H/4, W/4]` (`s` the stem temporal stride).
    pub stem: Tensor,
    /// `[N, 256w or 64w, T/s, H/4, W/4]`.
    pub res2: Tensor,
    /// `[N, 512w or 128w, T/s, H/8, W/8]`.
    pub res3: Tensor,
    /// `[N, 1024w or 256w, T/s, H/16, W/16]`.
    pub res4: Tensor,
    /// `[N, 2048w or 512w, T/s, H/32, W/32]`.
    pub res5: Tensor,
    /// Global average of `res5` over T, H, W: `[N, feature dim]`.
    pub features: Tensor,
}

/// The R3D backbone: stem, res2..res5 and global average pooling. As a [`ModuleT`] it maps
/// `[N, C, T, H, W]` to features `[N, feature dim]`.
#[derive(Debug)]
pub struct R3d {
    config: R3dConfig,
    stem: ConvBn,
    stages: [Stage; 4],
}

impl R3d {
    /// Builds the backbone under `p`: `p / "stem"`, `p / "res2"` .. `p / "res5"`, with tch's
    /// BatchNorm.
    pub fn new(p: &nn::Path, config: &R3dConfig) -> Result<Self, ModelError> {
        Self::with_norm(p, config, &Norm::Batch)
    }

    /// [`R3d::new`] with the BatchNorm flavour `norm` (the variables are the same).
    pub fn with_norm(p: &nn::Path, config: &R3dConfig, norm: &Norm) -> Result<Self, ModelError> {
        config.validate()?;
        let stem_width = config.stem_width();
        let t_kernel = i64::from(config.stem_temporal_kernel);
        let t_stride = i64::from(config.stem_temporal_stride);
        let (k, s) = config.stem.spatial();
        let stem = ConvBn::new(
            &(p / "stem"),
            "",
            (3, stem_width),
            [t_kernel, k, k],
            [t_stride, s, s],
            norm,
        );

        let bottleneck = config.depth.bottleneck();
        let mut c_in = stem_width;
        let stages = std::array::from_fn(|i| {
            let sp = p / format!("res{}", i + 2);
            let width = config.stage_width(i);
            let blocks = (0..config.depth.blocks()[i])
                .map(|j| {
                    let stride = if j == 0 { STAGE_SPATIAL_STRIDES[i] } else { 1 };
                    let block = Block::new(
                        &(&sp / j),
                        bottleneck,
                        (c_in, width),
                        STAGE_TEMPORAL_KERNELS[i],
                        stride,
                        norm,
                    );
                    c_in = if bottleneck { width * EXPANSION } else { width };
                    block
                })
                .collect();
            Stage { blocks }
        });
        Ok(R3d { config: *config, stem, stages })
    }

    /// The configuration this backbone was built from.
    pub fn config(&self) -> &R3dConfig {
        &self.config
    }

    /// Channels of the pooled feature (2048 for R3D-50, 512 for R3D-18, times the width).
    pub fn feature_dim(&self) -> i64 {
        self.config.feature_dim()
    }

    fn stem_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply_t(&self.stem, train).relu().max_pool3d(
            [1, 3, 3],
            [1, 2, 2],
            [0, 1, 1],
            [1, 1, 1],
            false,
        )
    }

    /// Global average pooling over T, H, W.
    fn pool(xs: &Tensor) -> Tensor {
        xs.mean_dim([2i64, 3, 4].as_slice(), false, None)
    }

    /// Features `[N, feature dim]` of clips `[N, C, T, H, W]`.
    pub fn forward_features_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.stages.iter().fold(self.stem_t(xs, train), |x, s| x.apply_t(s, train));
        Self::pool(&ys)
    }

    /// Like [`R3d::forward_features_t`], keeping every layer's output (more memory).
    pub fn forward_stages_t(&self, xs: &Tensor, train: bool) -> Stages {
        let stem = self.stem_t(xs, train);
        let res2 = stem.apply_t(&self.stages[0], train);
        let res3 = res2.apply_t(&self.stages[1], train);
        let res4 = res3.apply_t(&self.stages[2], train);
        let res5 = res4.apply_t(&self.stages[3], train);
        let features = Self::pool(&res5);
        Stages { stem, res2, res3, res4, res5, features }
    }
}

impl ModuleT for R3d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_features_t(xs, train)
    }
}
