//! CVRL's per-pixel augmentation as batched tensor operations on the training device, equal
//! to the host path ([`crate::augment::augment_clip`]) for the same parameters.
//!
//! The work splits where the shards end. A loader worker draws each clip's parameters on the
//! host exactly as today ([`draw_params`], the same generator calls as
//! [`crate::augment::augment`]), cuts the crop boxes out of the stored frames and packs the
//! batch into one buffer ([`PackedBatch`]). The training thread copies that buffer to the
//! device in one transfer from pinned memory ([`Stager`]) and runs everything per pixel there
//! ([`StagedBatch::augment`]): resize (bilinear, half-pixel centres, chroma sited as the host
//! sites it), flip, `yuv420p` to RGB, the colour jitter in each clip's drawn order,
//! grayscale, Gaussian blur and solarization, to `u8` `[B, 3, T, S, S]` clips, the layout the
//! host path hands the training step. The same code runs on CPU tensors.
//!
//! **Equal to the host.** Every operation is the host's arithmetic op for op in `f32` (no
//! fused multiply-add, the same order of operands, the host's tap tables and blur taps), with
//! the host's roundings to whole levels after the resize, the colour ops and the blur. The
//! only sum whose order differs is contrast's mean, when other ops run before contrast (the
//! host sums `f32` blocks, the device sums in `f64`); it moves a pixel only where its value
//! sits on a rounding boundary. The tests in `device/tests.rs` measure the difference per
//! operation and for the whole chain.
//!
//! **Batched, ragged.** Crops differ in size from clip to clip. The packed buffer holds them
//! back to back, and a row table says where each cut row starts and which tap table it uses:
//! the horizontal pass is one gather over all rows of the batch and the vertical pass one row
//! gather, whatever the crop sizes. The other steps act on the frames that drew them (an
//! index list per step, built on the host), with per-frame factors; a clip's frames share
//! its factors in consistent mode and each frame has its own in the per-frame ablation.
//! Nothing on the device path waits for the device: every shape and every list is known on
//! the host.
//!
//! ```
//! use cvrl_formats::{FrameLayout, PixelFormat};
//! use cvrl_trainer::augment::device::{draw_params, PackedBatch, Stager};
//! use cvrl_trainer::augment::AugmentConfig;
//! use rand::SeedableRng;
//!
//! let layout = FrameLayout::new(64, 48, PixelFormat::Yuv420p).unwrap();
//! let frames = vec![128u8; 4 * layout.frame_bytes()];
//! let cfg = AugmentConfig { out_size: 32, ..AugmentConfig::first_view() };
//! let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1);
//! // A loader worker: draw, cut, pack.
//! let (mut batch, mut params) = (PackedBatch::new(32), Vec::new());
//! for _ in 0..2 {
//!     draw_params(&mut rng, &cfg, &layout, 4, &mut params);
//!     batch.push_clip(&layout, &frames, 4, &params).unwrap();
//! }
//! batch.finish().unwrap();
//! // The training step: one upload, then the per-pixel work on the device.
//! let clips = Stager::new(tch::Device::Cpu).upload(&batch).augment();
//! assert_eq!(clips.size(), [2, 3, 4, 32, 32]);
//! ```

mod blur;
mod colour;
mod pack;
mod resize;
#[cfg(test)]
mod tests;

pub use pack::{BatchPlan, PackError, PackedBatch};

use super::{sample_params, AugmentConfig, ClipParams};
use cvrl_formats::FrameLayout;
use pack::{Section, Subset};
use rand::Rng;
use tch::{Cuda, Device, Kind, Tensor};

/// Draws the parameters of a clip of `t` frames as [`crate::augment::augment`] draws them:
/// one set (consistent mode) or one per frame, from the same generator calls, so a loader
/// that cuts clips for the device draws what the host path would have drawn.
pub fn draw_params<R: Rng + ?Sized>(
    rng: &mut R,
    cfg: &AugmentConfig,
    layout: &FrameLayout,
    t: usize,
    out: &mut Vec<ClipParams>,
) {
    let sets = if cfg.consistent { 1 } else { t.max(1) };
    out.clear();
    out.extend((0..sets).map(|_| sample_params(rng, cfg, layout.width(), layout.height())));
}

/// Copies finished [`PackedBatch`]es to a device. On CUDA the bytes go through one pinned
/// host buffer, kept across batches (pinned again only when a batch outgrows it), and are
/// copied from it without blocking; the device is synchronised right after the copy is
/// queued, so the next batch's write into the buffer cannot overtake it. Called before the
/// step's kernels are queued, that wait is for the previous step, which the host's packing
/// and this copy into the buffer overlap.
pub struct Stager {
    device: Device,
    pinned: Option<Tensor>,
}

/// A packed batch on the device, ready to augment.
pub struct StagedBatch {
    data: Tensor,
    plan: BatchPlan,
}

impl Stager {
    pub fn new(device: Device) -> Self {
        Stager { device, pinned: None }
    }

    /// The finished `batch` on the device.
    ///
    /// # Panics
    ///
    /// If `batch` is not finished ([`PackedBatch::finish`]).
    pub fn upload(&mut self, batch: &PackedBatch) -> StagedBatch {
        let plan = batch.plan().expect("a finished batch").clone();
        let bytes = batch.bytes();
        let Device::Cuda(index) = self.device else {
            return StagedBatch { data: Tensor::from_slice(bytes).to_device(self.device), plan };
        };
        let len = bytes.len();
        if self.pinned.as_ref().is_none_or(|p| p.numel() < len) {
            // Headroom, so that batches a little larger than the first do not pin again.
            let size = (len + len / 4).max(1 << 20) as i64;
            let host = Tensor::empty([size], (Kind::Uint8, Device::Cpu));
            self.pinned = Some(host.pin_memory(self.device));
        }
        let host = self.pinned.as_ref().expect("allocated above");
        assert!(host.is_contiguous() && host.numel() >= len, "pinned buffer of the batch size");
        // SAFETY: `host` is a contiguous u8 CPU tensor of at least `len` bytes owned by this
        // stager, and no copy from it is in flight (the previous upload synchronised).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), host.data_ptr() as *mut u8, len) };
        let data = host.narrow(0, 0, len as i64).to_device_(self.device, Kind::Uint8, true, false);
        Cuda::synchronize(index as i64);
        StagedBatch { data, plan }
    }
}

impl StagedBatch {
    pub fn plan(&self) -> &BatchPlan {
        &self.plan
    }

    /// The augmented clips, `u8` `[B, 3, T, S, S]` on the batch's device.
    pub fn augment(&self) -> Tensor {
        self.frames().to_kind(Kind::Uint8)
    }

    /// The augmented clips of a batch packed pair by pair (each video's first clip, then
    /// its second: the loader's order), regrouped as the training step takes them: every
    /// first clip, then every second clip, `u8` `[B, 3, T, S, S]`.
    pub fn augment_views(&self) -> Tensor {
        let x = self.augment();
        let size = x.size();
        let mut pairs = vec![size[0] / 2, 2];
        pairs.extend_from_slice(&size[1..]);
        x.view(pairs.as_slice()).transpose(0, 1).reshape(size.as_slice())
    }

    /// The augmented clips as the model's input: `f32` `[B, 3, T, S, S]` in `[0, 1]`, the
    /// same values as [`crate::model::clips_to_input`] makes of [`StagedBatch::augment`].
    pub fn augment_float(&self) -> Tensor {
        self.frames() / 255.0
    }

    /// Whole levels in `f32`, `[B, 3, T, S, S]`.
    fn frames(&self) -> Tensor {
        let p = &self.plan;
        let mut x = resize::resample(&self.data, p);
        colour::jitter(&mut x, &self.data, p);
        blur::blur(&mut x, &self.data, p);
        blur::solarize(&mut x, &self.data, p);
        let (b, t, s) = (p.clips as i64, p.frames as i64, p.out_size as i64);
        x.view([3, b, t, s, s]).permute([1, 0, 2, 3, 4]).contiguous()
    }
}

/// An `i64` array of the tables, in place.
fn longs(data: &Tensor, s: Section) -> Tensor {
    data.narrow(0, s.offset as i64, 8 * s.len as i64).view_dtype(Kind::Int64)
}

/// An `f32` array of the tables, in place.
fn floats(data: &Tensor, s: Section) -> Tensor {
    data.narrow(0, s.offset as i64, 4 * s.len as i64).view_dtype(Kind::Float)
}

/// An `f64` array of the tables, in place.
fn doubles(data: &Tensor, s: Section) -> Tensor {
    data.narrow(0, s.offset as i64, 8 * s.len as i64).view_dtype(Kind::Double)
}

/// Replaces the frames `frames` of `x` (`[3, N, S, S]`) by `f` of them; `f` also gets their
/// numbers, or `None` when they are all the frames in order.
fn on_frames(
    x: &mut Tensor,
    data: &Tensor,
    frames: &Subset,
    f: impl FnOnce(&Tensor, Option<&Tensor>) -> Tensor,
) {
    if frames.is_empty() {
        return;
    }
    if frames.all {
        *x = f(x, None);
        return;
    }
    let index = longs(data, frames.index);
    let done = f(&x.index_select(1, &index), Some(&index));
    let _ = x.index_copy_(1, &index, &done);
}

/// Row `row` of an `f32 [rows, N]` table for the frames `index` (all when `None`), shaped
/// `[n, 1, 1]` to scale `[n, S, S]` planes or `[3, n, S, S]` frames.
fn per_frame(
    data: &Tensor,
    table: Section,
    rows: usize,
    row: usize,
    index: Option<&Tensor>,
) -> Tensor {
    let values = floats(data, table).view([rows as i64, -1]).get(row as i64);
    let values = match index {
        Some(i) => values.index_select(0, i),
        None => values,
    };
    values.view([-1, 1, 1])
}

/// `x` rounded to whole levels in `[0, 255]`, ties to even, as the host's `to_u8`.
fn levels(x: &Tensor) -> Tensor {
    x.clamp(0.0, 255.0).round()
}

/// `a + (b - a) * f`, the host's interpolation, op for op.
fn lerp(a: &Tensor, b: &Tensor, f: &Tensor) -> Tensor {
    a + (b - a) * f
}
