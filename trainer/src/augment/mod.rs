//! CVRL's spatial augmentation (step 2), on the CPU, temporally consistent.
//!
//! A clip of `T` stored frames (`yuv420p` or `rgb24`, see [`cvrl_formats::pixel`]) becomes
//! `u8` RGB in layout `[C, T, H, W]` (channel-major, the shape of the tch tensor it turns
//! into; scaling to `[0, 1]` floats happens on the device). The pipeline follows the
//! reference (TF Model Garden `video_ssl`, see `shared/reference/cvrl.md` §2) step by step:
//!
//! 1. **Crop** a box drawn as TF's `sample_distorted_bounding_box` draws it
//!    ([`sample_crop`]: area 0.3–1, aspect 0.5–2, 100 attempts, then the whole frame), then
//!    **resize** it to `out_size²` bilinearly with half-pixel centres and no antialiasing
//!    (`tf.image.resize`). The reference slices the raw decoded frames, so do we: the box is
//!    in stored pixels.
//! 2. **Flip** horizontally with p = 0.5.
//! 3. **Colour jitter** with p = 0.8 (SimCLRv2 style, strength 1): brightness is a factor
//!    `U[0.2, 1.8]` that multiplies, contrast `U[0.2, 1.8]` around the per-channel mean,
//!    saturation `U[0.2, 1.8]` on HSV saturation, hue `U[-0.2, 0.2]` of a turn in HSV; the
//!    four in a random order, each clipped to `[0, 255]`. Then **grayscale** with p = 0.2
//!    (`tf.image.rgb_to_grayscale` weights).
//! 4. **Gaussian blur** (σ `U[0.1, 2]`, 23 taps at 224, zero padding) and **solarization**,
//!    which the reference makes asymmetric: blur p = 1 for the first view and 0.1 for the
//!    second, solarization p = 0.2 for the second only ([`AugmentConfig::first_view`],
//!    [`AugmentConfig::second_view`]).
//!
//! **Temporal consistency.** In consistent mode one [`ClipParams`] drives every frame: same
//! box, same flip, same colour factors, same blur. The reference gets this by reshaping the
//! clip `[T, H, W, C]` into one tall image `[T·H, W, C]` before jittering, so the statistics
//! an op needs are taken over the whole clip: here that is contrast's per-channel mean, which
//! [`augment_clip`] computes over all `T` frames. (TF's saturation works pixel by pixel in
//! HSV and needs no statistics.) The ablation, inconsistent mode, gives each frame its own
//! parameters, and each frame is then its own image: contrast uses that frame's mean.
//!
//! **Speed.** Crop and resize read `yuv420p` directly: luma and both chroma planes are each
//! resampled separably at the output resolution (chroma bilinearly from its own half-size
//! plane, centre-sited) and converted to RGB only at the `out_size²` output pixels. This beat
//! converting the frame to RGB first and resampling that, 2.3 ms against 16 ms for 16 frames
//! of 342x256 (numbers in the `speed` test). The
//! sample tables are built once per clip in consistent mode; scratch buffers live in a
//! thread-local and are reused, so the hot path allocates nothing per frame, and the output
//! goes into the caller's buffer. Colour ops run on blocks of `f32` pixels, op by op, so each
//! loop is branch-free enough for the compiler to vectorise.
//!
//! **Blur is the expensive step** (a 23-tap separable filter, taps below 1e-5 dropped, on
//! every output pixel of the first view). It is a per-sample depthwise convolution that a
//! GPU does for free: a trainer that prefers that can clear `blur_sigma` in the drawn
//! parameters before [`augment_clip`] and blur on the device with [`blur_kernel`], which is
//! the reference's kernel.
//!
//! **Rounding.** The reference casts the resized frames to `uint8` by truncation and does
//! everything after that in `float32`. We round after the resize (instead of truncating)
//! and once more after the colour ops; blur and solarization, when drawn, add one rounding
//! each. Each rounding is at most half a level.
//!
//! ```
//! use cvrl_formats::{FrameLayout, PixelFormat};
//! use cvrl_trainer::augment::{augment, AugmentConfig};
//! use rand::SeedableRng;
//!
//! let layout = FrameLayout::new(64, 48, PixelFormat::Yuv420p).unwrap();
//! let frames = vec![128u8; 4 * layout.frame_bytes()];
//! let cfg = AugmentConfig { out_size: 32, ..AugmentConfig::first_view() };
//! let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1);
//! let mut out = Vec::new();
//! let params = augment(&mut rng, &cfg, &layout, &frames, 4, &mut out).unwrap();
//! assert_eq!(params.len(), 1); // consistent: one set for the whole clip
//! assert_eq!(out.len(), 3 * 4 * 32 * 32); // [C, T, H, W]
//! ```

mod blur;
mod colour;
pub mod device;
mod params;
mod resize;
mod transform;

pub use blur::blur_kernel;
pub use params::{center_crop, sample_crop, sample_params};
pub use transform::{AugmentOn, AugmentTransform, Augmentation};

use blur::BlurScratch;
use colour::colour;
use resize::{resample_frame, Rows, Tables};

use cvrl_formats::{FrameLayout, PixelFormat};
use rand::Rng;
use std::cell::RefCell;

/// Boxes `sample_distorted_bounding_box` tries before it falls back to the whole frame.
pub const MAX_ATTEMPTS: u32 = 100;

/// The reference's `min_object_covered`: the box must cover this fraction of the (only)
/// bounding box, the whole frame. Any area range starting above it always satisfies it.
pub(crate) const MIN_OBJECT_COVERED: f32 = 0.1;

/// How the crop box is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CropMode {
    /// TF's `sample_distorted_bounding_box` with [`AugmentConfig::area`] and
    /// [`AugmentConfig::aspect`] (training).
    Random,
    /// The centred square whose side is `fraction` of the frame's short side (evaluation:
    /// the reference resizes the short side to 256 and centre-crops 224, `fraction = 0.875`).
    Center { fraction: f64 },
}

/// What to draw for each clip, and the output size. Probabilities are in `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AugmentConfig {
    /// Side of the square output frames.
    pub out_size: u32,
    pub crop: CropMode,
    /// Range of the box area as a fraction of the frame ([`CropMode::Random`]).
    pub area: (f64, f64),
    /// Range of the box aspect ratio, width / height, drawn uniformly ([`CropMode::Random`]).
    pub aspect: (f64, f64),
    pub flip_p: f64,
    /// Probability of the colour jitter (all four ops, in random order).
    pub jitter_p: f64,
    /// Brightness factor `U[max(1 - b, 0), 1 + b]`.
    pub brightness: f64,
    /// Contrast factor `U[1 - c, 1 + c]`.
    pub contrast: f64,
    /// Saturation factor `U[1 - s, 1 + s]`.
    pub saturation: f64,
    /// Hue shift `U[-h, h]`, in turns.
    pub hue: f64,
    /// Probability of grayscale, drawn after (and independently of) the jitter.
    pub grayscale_p: f64,
    pub blur_p: f64,
    /// Range of the blur's σ, in output pixels.
    pub blur_sigma: (f64, f64),
    pub solarize_p: f64,
    /// One parameter set for the whole clip (CVRL) or one per frame (the ablation).
    pub consistent: bool,
}

impl Default for AugmentConfig {
    /// The reference's first view ([`AugmentConfig::first_view`]). Use
    /// [`AugmentConfig::second_view`] for the other clip of the pair.
    fn default() -> Self {
        AugmentConfig::first_view()
    }
}

impl AugmentConfig {
    /// The reference's augmentation of the first clip of a pair: blur always, no solarization.
    pub fn first_view() -> Self {
        AugmentConfig {
            out_size: 224,
            crop: CropMode::Random,
            area: (0.3, 1.0),
            aspect: (0.5, 2.0),
            flip_p: 0.5,
            jitter_p: 0.8,
            brightness: 0.8,
            contrast: 0.8,
            saturation: 0.8,
            hue: 0.2,
            grayscale_p: 0.2,
            blur_p: 1.0,
            blur_sigma: (0.1, 2.0),
            solarize_p: 0.0,
            consistent: true,
        }
    }

    /// The reference's augmentation of the second clip: blur p = 0.1, solarization p = 0.2.
    /// (The reference shuffles which start comes first, so which clip gets which view is
    /// random in time.)
    pub fn second_view() -> Self {
        AugmentConfig { blur_p: 0.1, solarize_p: 0.2, ..AugmentConfig::first_view() }
    }

    /// The two views of a positive pair, in order.
    pub fn pair() -> [Self; 2] {
        [AugmentConfig::first_view(), AugmentConfig::second_view()]
    }

    /// Evaluation: centre crop of 7/8 of the short side (the reference's resize to 256 then
    /// centre 224) resized to `out_size`, nothing random. For the reference's test-time
    /// 256-pixel views set `crop` to `Center { fraction: 1.0 }` (and build the off-centre
    /// boxes as [`ClipParams`] directly).
    pub fn eval(out_size: u32) -> Self {
        AugmentConfig {
            out_size,
            crop: CropMode::Center { fraction: 0.875 },
            flip_p: 0.0,
            ..AugmentConfig::first_view().geometric_only()
        }
    }

    /// This config's crop, resize and flip without any pixel-value operation (colour
    /// jitter, grayscale, blur, solarization): what the peers' loaders do.
    pub fn geometric_only(self) -> Self {
        AugmentConfig { jitter_p: 0.0, grayscale_p: 0.0, blur_p: 0.0, solarize_p: 0.0, ..self }
    }
}

/// A box in stored pixels (defined by the format crate, whose RGB reads cut boxes too).
pub use cvrl_formats::pixel::Crop;

/// One of the four colour-jitter ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColorOp {
    Brightness,
    Contrast,
    Saturation,
    Hue,
}

/// The drawn colour jitter: factors, hue shift and the order the ops run in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Jitter {
    /// Multiplies every channel.
    pub brightness: f32,
    /// Scales each channel's distance from its mean.
    pub contrast: f32,
    /// Multiplies HSV saturation (clipped to 1).
    pub saturation: f32,
    /// Added to HSV hue, in turns.
    pub hue: f32,
    pub order: [ColorOp; 4],
}

/// Everything drawn for one clip (consistent mode) or one frame (inconsistent mode).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipParams {
    pub crop: Crop,
    pub flip: bool,
    pub jitter: Option<Jitter>,
    pub grayscale: bool,
    /// σ of the Gaussian blur in output pixels, when drawn.
    pub blur_sigma: Option<f32>,
    pub solarize: bool,
}

impl ClipParams {
    /// The whole `width x height` frame, resized, nothing else.
    pub fn whole_frame(width: u32, height: u32) -> Self {
        ClipParams {
            crop: Crop { x: 0, y: 0, w: width, h: height },
            flip: false,
            jitter: None,
            grayscale: false,
            blur_sigma: None,
            solarize: false,
        }
    }
}

/// Why a clip could not be augmented.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AugmentError {
    #[error(
        "a clip of {frames} frames of {width}x{height} {format} needs {expected} bytes, got {got}"
    )]
    ClipBytes {
        frames: usize,
        width: u32,
        height: u32,
        format: PixelFormat,
        expected: usize,
        got: usize,
    },
    #[error("{got} parameter sets for a clip of {frames} frames (expected 1 or {frames})")]
    ParamCount { frames: usize, got: usize },
    #[error("crop {crop:?} is empty or does not fit in a {width}x{height} frame")]
    CropOutside { crop: Crop, width: u32, height: u32 },
    #[error("the output size must be at least 1")]
    ZeroOutSize,
}

/// Samples parameters (once, or once per frame when `cfg.consistent` is false) and
/// applies them with [`augment_clip`]; returns the parameters used.
pub fn augment<R: Rng + ?Sized>(
    rng: &mut R,
    cfg: &AugmentConfig,
    layout: &FrameLayout,
    frames: &[u8],
    t: usize,
    out: &mut Vec<u8>,
) -> Result<Vec<ClipParams>, AugmentError> {
    let sets = if cfg.consistent { 1 } else { t.max(1) };
    let params: Vec<ClipParams> =
        (0..sets).map(|_| sample_params(rng, cfg, layout.width(), layout.height())).collect();
    augment_clip(layout, frames, t, &params, cfg, out)?;
    Ok(params)
}

/// Augments a clip of `t` frames stored back to back in `frames` into `out`, resized to
/// `3 * t * cfg.out_size²` bytes of RGB in layout `[C, T, H, W]`.
///
/// `params` holds one set for every frame (consistent mode; contrast's mean is taken over
/// the whole clip) or one per frame (inconsistent mode; each frame is its own image). Only
/// `cfg.out_size` is read from `cfg`: everything random is already in `params`.
pub fn augment_clip(
    layout: &FrameLayout,
    frames: &[u8],
    t: usize,
    params: &[ClipParams],
    cfg: &AugmentConfig,
    out: &mut Vec<u8>,
) -> Result<(), AugmentError> {
    let s = cfg.out_size as usize;
    if s == 0 {
        return Err(AugmentError::ZeroOutSize);
    }
    let frame_bytes = layout.frame_bytes();
    let expected = frame_bytes.checked_mul(t);
    if expected != Some(frames.len()) {
        return Err(AugmentError::ClipBytes {
            frames: t,
            width: layout.width(),
            height: layout.height(),
            format: layout.format(),
            expected: expected.unwrap_or(usize::MAX),
            got: frames.len(),
        });
    }
    if params.len() != 1 && params.len() != t {
        return Err(AugmentError::ParamCount { frames: t, got: params.len() });
    }
    let (width, height) = (layout.width(), layout.height());
    for p in params {
        let c = p.crop;
        let fits = c.w > 0
            && c.h > 0
            && u64::from(c.x) + u64::from(c.w) <= u64::from(width)
            && u64::from(c.y) + u64::from(c.h) <= u64::from(height);
        if !fits {
            return Err(AugmentError::CropOutside { crop: c, width, height });
        }
    }

    let plane = s * s;
    out.clear();
    out.resize(3 * t * plane, 0);
    if t == 0 {
        return Ok(());
    }
    let (r_all, rest) = out.split_at_mut(t * plane);
    let (g_all, b_all) = rest.split_at_mut(t * plane);
    SCRATCH.with(|scratch| {
        let sc = &mut *scratch.borrow_mut();
        let job = Job { layout, frames, params, s, planes: [r_all, g_all, b_all] };
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { run_avx2(job, sc) };
            return;
        }
        run(job, sc);
    });
    Ok(())
}

/// A validated clip and its output planes (`t * s²` bytes each).
struct Job<'a> {
    layout: &'a FrameLayout,
    frames: &'a [u8],
    params: &'a [ClipParams],
    s: usize,
    planes: [&'a mut [u8]; 3],
}

/// [`run`] compiled for AVX2: twice the lanes of the baseline SSE2 in every vectorised loop
/// (everything below `run` is `#[inline(always)]` to be compiled this way). Rust does not
/// contract `a * b + c` into FMA, and no loop reorders a float reduction, so the output is
/// bit-identical to the SSE2 build's.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2(job: Job<'_>, sc: &mut Scratch) {
    run(job, sc)
}

#[inline(always)]
fn run(job: Job<'_>, sc: &mut Scratch) {
    let Job { layout, frames, params, s, planes: [r_all, g_all, b_all] } = job;
    let plane = s * s;
    let consistent = params.len() == 1;
    if consistent {
        sc.tables.build(layout, &params[0], s);
    }
    for (ti, frame) in frames.chunks_exact(layout.frame_bytes()).enumerate() {
        let p = if consistent { &params[0] } else { &params[ti] };
        if !consistent {
            sc.tables.build(layout, p, s);
        }
        let range = ti * plane..(ti + 1) * plane;
        let mut rgb = [&mut r_all[range.clone()], &mut g_all[range.clone()], &mut b_all[range]];
        resample_frame(layout, frame, &sc.tables, &mut sc.rows, s, &mut rgb);
        if !consistent {
            finish(&mut rgb, p, s, &mut sc.blur);
        }
    }
    if consistent {
        finish(&mut [r_all, g_all, b_all], &params[0], s, &mut sc.blur);
    }
}

/// Colour, blur and solarization of one group of frames that share `p` (the whole clip or
/// one frame): `planes` are the R, G, B planes of those frames, `s²` bytes per frame.
#[inline(always)]
fn finish(planes: &mut [&mut [u8]; 3], p: &ClipParams, s: usize, blur: &mut BlurScratch) {
    colour(planes, p);
    if let Some(sigma) = p.blur_sigma {
        if blur.set_kernel(sigma, s) {
            for plane in planes.iter_mut() {
                for frame in plane.chunks_exact_mut(s * s) {
                    blur.apply(frame, s);
                }
            }
        }
    }
    if p.solarize {
        // TF: x < 0.5 stays, else 1 - x; for x = v / 255 that is v >= 128.
        for plane in planes.iter_mut() {
            for v in plane.iter_mut() {
                *v = if *v >= 128 { 255 - *v } else { *v };
            }
        }
    }
}

thread_local! {
    /// Tables and row buffers reused across clips, so augmenting allocates only when a
    /// clip is larger than any before it on this thread.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[derive(Default)]
struct Scratch {
    tables: Tables,
    rows: Rows,
    blur: BlurScratch,
}

#[cfg(test)]
mod tests;
