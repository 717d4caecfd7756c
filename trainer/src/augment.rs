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

use cvrl_formats::{FrameLayout, PixelFormat};
use rand::{Rng, RngExt as _};
use std::cell::RefCell;

/// Boxes `sample_distorted_bounding_box` tries before it falls back to the whole frame.
pub const MAX_ATTEMPTS: u32 = 100;

/// The reference's `min_object_covered`: the box must cover this fraction of the (only)
/// bounding box, the whole frame. Any area range starting above it always satisfies it.
const MIN_OBJECT_COVERED: f32 = 0.1;

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
            jitter_p: 0.0,
            grayscale_p: 0.0,
            blur_p: 0.0,
            solarize_p: 0.0,
            ..AugmentConfig::first_view()
        }
    }
}

/// A box in stored pixels: columns `x..x + w`, rows `y..y + h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

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

fn chance<R: Rng + ?Sized>(rng: &mut R, p: f64) -> bool {
    // No draw for p = 0, so evaluation consumes no randomness.
    p > 0.0 && rng.random::<f64>() < p
}

fn uniform<R: Rng + ?Sized>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// Draws the parameters of one clip (or frame) of a `src_w x src_h` video.
pub fn sample_params<R: Rng + ?Sized>(
    rng: &mut R,
    cfg: &AugmentConfig,
    src_w: u32,
    src_h: u32,
) -> ClipParams {
    let crop = match cfg.crop {
        CropMode::Random => sample_crop(rng, src_w, src_h, cfg.area, cfg.aspect),
        CropMode::Center { fraction } => center_crop(src_w, src_h, fraction),
    };
    let flip = chance(rng, cfg.flip_p);
    let jitter = if chance(rng, cfg.jitter_p) {
        // TF skips an op whose strength is 0; a factor of 1 (shift of 0) is the same.
        let brightness = uniform(rng, (1.0 - cfg.brightness).max(0.0), 1.0 + cfg.brightness);
        let contrast = uniform(rng, 1.0 - cfg.contrast, 1.0 + cfg.contrast);
        let saturation = uniform(rng, 1.0 - cfg.saturation, 1.0 + cfg.saturation);
        let hue = uniform(rng, -cfg.hue, cfg.hue);
        let mut order = [ColorOp::Brightness, ColorOp::Contrast, ColorOp::Saturation, ColorOp::Hue];
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        Some(Jitter {
            brightness: brightness as f32,
            contrast: contrast as f32,
            saturation: saturation as f32,
            hue: hue as f32,
            order,
        })
    } else {
        None
    };
    let grayscale = chance(rng, cfg.grayscale_p);
    let blur_sigma =
        chance(rng, cfg.blur_p).then(|| uniform(rng, cfg.blur_sigma.0, cfg.blur_sigma.1) as f32);
    let solarize = chance(rng, cfg.solarize_p);
    ClipParams { crop, flip, jitter, grayscale, blur_sigma, solarize }
}

/// The centred square of side `fraction` of the short side (at least one pixel).
pub fn center_crop(width: u32, height: u32, fraction: f64) -> Crop {
    let short = width.min(height);
    let side =
        ((fraction.clamp(0.0, 1.0) * f64::from(short)).round() as u32).clamp(1, short.max(1));
    Crop { x: (width - side.min(width)) / 2, y: (height - side.min(height)) / 2, w: side, h: side }
}

/// A crop box drawn as TF's `sample_distorted_bounding_box` draws it with the whole frame
/// as the only bounding box, `min_object_covered` 0.1 and 100 attempts
/// (`tensorflow/core/kernels/image/sample_distorted_bounding_box_op.cc`).
///
/// Each attempt draws an aspect ratio `r = w / h` uniformly from `aspect` (uniform, not
/// log-uniform as torchvision does), then a height uniformly among the integers from
/// `round(sqrt(min_area / r))` to `round(sqrt(max_area / r))` (shrunk so that
/// `round(h · r)` fits the width and `h` fits the height), sets `w = round(h · r)`, nudges
/// `h` by one if rounding left the area outside the range, and rejects the box if it still
/// does not fit. The offsets are uniform in `[0, W - w)` and `[0, H - h)`: TF's
/// `Uniform(n)` excludes `n`, so a box narrower than the frame never touches its right (or
/// bottom) edge; we keep that quirk. Rounding is TF's `lrintf` (ties to even) on `f32`.
/// After 100 failed attempts the box is the whole frame.
pub fn sample_crop<R: Rng + ?Sized>(
    rng: &mut R,
    width: u32,
    height: u32,
    area: (f64, f64),
    aspect: (f64, f64),
) -> Crop {
    let whole = Crop { x: 0, y: 0, w: width, h: height };
    let (w, h) = (width as i32, height as i32);
    if w <= 0 || h <= 0 {
        return whole;
    }
    let (rmin, rmax) = (aspect.0 as f32, aspect.1 as f32);
    for _ in 0..MAX_ATTEMPTS {
        let ratio = rng.random::<f32>() * (rmax - rmin) + rmin;
        if let Some(c) = random_crop(rng, w, h, area.0 as f32, area.1 as f32, ratio) {
            // The overlap constraint against the whole-frame bounding box.
            let covered = (c.w as f32 * c.h as f32) / (w as f32 * h as f32);
            if c.w * c.h >= 1 && covered >= MIN_OBJECT_COVERED {
                return c;
            }
        }
    }
    whole
}

/// TF's `GenerateRandomCrop`, one attempt.
fn random_crop<R: Rng + ?Sized>(
    rng: &mut R,
    w: i32,
    h: i32,
    min_rel: f32,
    max_rel: f32,
    ratio: f32,
) -> Option<Crop> {
    if !(max_rel > 0.0 && ratio > 0.0 && min_rel <= max_rel) {
        return None;
    }
    let lrint = |v: f32| v.round_ties_even() as i32;
    let min_area = min_rel * w as f32 * h as f32;
    let max_area = max_rel * w as f32 * h as f32;
    let mut height = lrint((min_area / ratio).sqrt());
    let mut max_height = lrint((max_area / ratio).sqrt());
    if lrint(max_height as f32 * ratio) > w {
        // The largest height whose rounded width still fits.
        max_height = ((f64::from(w) + 0.5 - 1e-7) / f64::from(ratio)) as i32;
        if lrint(max_height as f32 * ratio) > w {
            max_height -= 1;
        }
    }
    max_height = max_height.min(h);
    height = height.min(max_height);
    if height < max_height {
        height += rng.random_range(0..=max_height - height);
    }
    let mut width = lrint(height as f32 * ratio);
    let mut area = (width * height) as f32;
    if area < min_area {
        height += 1;
        width = lrint(height as f32 * ratio);
        area = (width * height) as f32;
    }
    if area > max_area {
        height -= 1;
        width = lrint(height as f32 * ratio);
        area = (width * height) as f32;
    }
    if area < min_area || area > max_area || width > w || height > h || width <= 0 || height <= 0 {
        return None;
    }
    let y = if height < h { rng.random_range(0..h - height) } else { 0 };
    let x = if width < w { rng.random_range(0..w - width) } else { 0 };
    Some(Crop { x: x as u32, y: y as u32, w: width as u32, h: height as u32 })
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

// ---------------------------------------------------------------------------------------
// Crop and resize

/// Bilinear taps along one axis, one entry per output coordinate: element offsets of the
/// two source samples relative to `lo` (offsets are sample index times the sample step)
/// and the weight of the second. Vertical axes use both offsets ([`Axis::tap`]); the
/// horizontal resampling reads the second sample at `i0 + step` (see `RowPair::fill`).
#[derive(Default)]
struct Axis {
    i0: Vec<usize>,
    i1: Vec<usize>,
    f: Vec<f32>,
    /// Element offset of the leftmost sample any tap reads.
    lo: usize,
    /// Elements from `lo` to the rightmost sample any tap reads, inclusive.
    span: usize,
    /// Elements between consecutive samples.
    step: usize,
}

impl Axis {
    /// Taps at continuous source `positions` (pixel centres at integers) in a plane of `n`
    /// samples `step` elements apart; positions are clamped to the plane (edge replicate).
    fn build(&mut self, positions: impl Iterator<Item = f64>, n: usize, step: usize) {
        self.i0.clear();
        self.i1.clear();
        self.f.clear();
        let last = (n - 1) as f64;
        for p in positions {
            let p = p.clamp(0.0, last);
            let base = p.floor();
            let i0 = base as usize;
            self.i0.push(i0 * step);
            self.i1.push((i0 + 1).min(n - 1) * step);
            self.f.push((p - base) as f32);
        }
        self.lo = self.i0.iter().copied().min().unwrap_or(0);
        let hi = self.i1.iter().copied().max().unwrap_or(0);
        self.span = hi - self.lo + 1;
        self.step = step;
        for i in self.i0.iter_mut().chain(self.i1.iter_mut()) {
            *i -= self.lo;
        }
    }

    /// Tap `o` as absolute sample offsets (row numbers for a vertical axis).
    #[inline(always)]
    fn tap(&self, o: usize) -> (usize, usize, f32) {
        (self.lo + self.i0[o], self.lo + self.i1[o], self.f[o])
    }

    fn reverse(&mut self) {
        self.i0.reverse();
        self.i1.reverse();
        self.f.reverse();
    }
}

/// Source coordinate of output sample `o` of `out` when `len` samples starting at `start`
/// are resized to `out`: TF's half-pixel-centre mapping, clamped to the box as TF's resize
/// of the sliced box clamps to its edges.
fn box_pos(start: u32, len: u32, out: usize, o: usize) -> f64 {
    let src = (o as f64 + 0.5) * f64::from(len) / out as f64 - 0.5;
    f64::from(start) + src.clamp(0.0, f64::from(len - 1))
}

/// Chroma plane coordinate of luma coordinate `p` for 2x subsampling with chroma sited at
/// the centre of each 2x2 block (the JPEG/MPEG-1 convention, and what nearest-neighbour
/// upsampling as in `yuv420p_to_rgb24` assumes).
fn chroma_pos(p: f64) -> f64 {
    (p + 0.5) / 2.0 - 0.5
}

/// The sample tables of one parameter set: luma (or RGB) axes and chroma axes.
#[derive(Default)]
struct Tables {
    x: Axis,
    y: Axis,
    cx: Axis,
    cy: Axis,
}

impl Tables {
    fn build(&mut self, layout: &FrameLayout, p: &ClipParams, s: usize) {
        let (w, h) = (layout.width() as usize, layout.height() as usize);
        let c = p.crop;
        let xs = (0..s).map(|o| box_pos(c.x, c.w, s, o));
        let ys = (0..s).map(|o| box_pos(c.y, c.h, s, o));
        match layout.format() {
            PixelFormat::Rgb24 => {
                self.x.build(xs, w, 3);
                self.y.build(ys, h, 1);
            }
            PixelFormat::Yuv420p => {
                self.x.build(xs.clone(), w, 1);
                self.y.build(ys.clone(), h, 1);
                self.cx.build(xs.map(chroma_pos), w / 2, 1);
                self.cy.build(ys.map(chroma_pos), h / 2, 1);
            }
        }
        if p.flip {
            // The reference flips the resized frame: output column o is resized column s-1-o.
            self.x.reverse();
            self.cx.reverse();
        }
    }
}

/// Two horizontally resampled source rows, so consecutive output rows that share a source
/// row (every row when upscaling) resample it once.
#[derive(Default)]
struct RowPair {
    rows: [Vec<f32>; 2],
    ids: [usize; 2],
    /// The source row's samples as f32.
    span: Vec<f32>,
}

impl RowPair {
    fn reset(&mut self, s: usize) {
        for r in &mut self.rows {
            r.clear();
            r.resize(s, 0.0);
        }
        self.ids = [usize::MAX; 2];
    }

    /// Rows `r0` and `r1` of `plane` (`stride` elements a row) resampled along `x`.
    #[inline(always)]
    fn get(
        &mut self,
        plane: &[u8],
        stride: usize,
        x: &Axis,
        r0: usize,
        r1: usize,
    ) -> (&[f32], &[f32]) {
        let s0 = match self.ids.iter().position(|&id| id == r0) {
            Some(i) => i,
            None => {
                let i = if self.ids[0] == r1 { 1 } else { 0 };
                self.fill(i, plane, stride, x, r0);
                i
            }
        };
        let s1 = match self.ids.iter().position(|&id| id == r1) {
            Some(i) => i,
            None => {
                let i = 1 - s0;
                self.fill(i, plane, stride, x, r1);
                i
            }
        };
        (&self.rows[s0], &self.rows[s1])
    }

    #[inline(always)]
    fn fill(&mut self, slot: usize, plane: &[u8], stride: usize, x: &Axis, r: usize) {
        // Convert the span the taps read to f32 first (vectorised), then gather floats:
        // gathering bytes and converting each one is scalar and was the hot spot.
        // The second sample is always `step` after the first: where the table clamps it
        // (the last sample) the weight is 0, so the `step` elements past the span only need
        // to be finite. One index table instead of two.
        let start = r * stride + x.lo;
        let src = &plane[start..start + x.span];
        self.span.resize(x.span + x.step, 0.0);
        for (d, &v) in self.span.iter_mut().zip(src) {
            *d = f32::from(v);
        }
        let (span, out, step) = (&self.span, &mut self.rows[slot], x.step);
        for ((o, &i), &f) in out.iter_mut().zip(&x.i0).zip(&x.f) {
            let (a, b) = (span[i], span[i + step]);
            *o = a + (b - a) * f;
        }
        self.ids[slot] = r;
    }
}

/// Per-plane row caches and one vertically interpolated row per plane.
#[derive(Default)]
struct Rows {
    pairs: [RowPair; 3],
    lerped: [Vec<f32>; 3],
}

#[inline(always)]
fn lerp_rows(a: &[f32], b: &[f32], f: f32, out: &mut [f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a + (b - a) * f;
    }
}

#[inline(always)]
fn to_u8(v: f32) -> u8 {
    // Round to nearest (ties to even) by adding 1.5 * 2^23: the integer lands in the low
    // mantissa bits. Unlike an `as` cast (scalar code with saturation fix-ups) this is
    // plain vector arithmetic; the clamp keeps the integer in 0..=255.
    const MAGIC: f32 = 12_582_912.0;
    ((v.clamp(0.0, 255.0) + MAGIC).to_bits() & 0xFF) as u8
}

// `f32::max`/`min` honour NaN, which costs extra instructions per lane; pixel values are
// never NaN, so plain selects do (they compile to maxps/minps).
#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

#[inline(always)]
fn min(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}

// BT.601 limited range, the constants of `cvrl_formats::pixel::yuv420p_to_rgb24`.
const K_Y: f32 = 76309.0 / 65536.0;
const K_RV: f32 = 104597.0 / 65536.0;
const K_GU: f32 = 25675.0 / 65536.0;
const K_GV: f32 = 53279.0 / 65536.0;
const K_BU: f32 = 132201.0 / 65536.0;

/// Crops, resizes and flips one stored frame into three `s x s` RGB planes.
#[inline(always)]
fn resample_frame(
    layout: &FrameLayout,
    frame: &[u8],
    tb: &Tables,
    rows: &mut Rows,
    s: usize,
    out: &mut [&mut [u8]; 3],
) {
    let Rows { pairs, lerped } = rows;
    for p in pairs.iter_mut() {
        p.reset(s);
    }
    for l in lerped.iter_mut() {
        l.clear();
        l.resize(s, 0.0);
    }
    let (w, h) = (layout.width() as usize, layout.height() as usize);
    let [lr, lg, lb] = lerped;
    let [pr, pg, pb] = pairs;
    let [or, og, ob] = out;
    match layout.format() {
        PixelFormat::Yuv420p => {
            let (yp, rest) = frame.split_at(w * h);
            let (up, vp) = rest.split_at(w * h / 4);
            let cw = w / 2;
            for oy in 0..s {
                let (r0, r1, f) = tb.y.tap(oy);
                let (a, b) = pr.get(yp, w, &tb.x, r0, r1);
                lerp_rows(a, b, f, lr);
                let (c0, c1, cf) = tb.cy.tap(oy);
                let (a, b) = pg.get(up, cw, &tb.cx, c0, c1);
                lerp_rows(a, b, cf, lg);
                let (a, b) = pb.get(vp, cw, &tb.cx, c0, c1);
                lerp_rows(a, b, cf, lb);
                let row = oy * s..(oy + 1) * s;
                let (ro, go, bo) = (&mut or[row.clone()], &mut og[row.clone()], &mut ob[row]);
                let yuv = lr.iter().zip(lg.iter()).zip(lb.iter());
                for ((((&y, &u), &v), ro), (go, bo)) in
                    yuv.zip(ro.iter_mut()).zip(go.iter_mut().zip(bo.iter_mut()))
                {
                    let c = (y - 16.0) * K_Y;
                    let (d, e) = (u - 128.0, v - 128.0);
                    *ro = to_u8(c + K_RV * e);
                    *go = to_u8(c - K_GU * d - K_GV * e);
                    *bo = to_u8(c + K_BU * d);
                }
            }
        }
        PixelFormat::Rgb24 => {
            let stride = 3 * w;
            for oy in 0..s {
                let (r0, r1, f) = tb.y.tap(oy);
                let row = oy * s..(oy + 1) * s;
                for (c, (pair, dst)) in [
                    (&mut *pr, &mut or[row.clone()]),
                    (&mut *pg, &mut og[row.clone()]),
                    (&mut *pb, &mut ob[row]),
                ]
                .into_iter()
                .enumerate()
                {
                    let (a, b) = pair.get(&frame[c..], stride, &tb.x, r0, r1);
                    for ((o, &a), &b) in dst.iter_mut().zip(a).zip(b) {
                        *o = to_u8(a + (b - a) * f);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Colour

/// Pixels per colour block: three `f32` blocks stay in L1 and each op's loop is long
/// enough to vectorise.
const BLOCK: usize = 512;

/// TF's `rgb_to_grayscale` weights (ITU-R 601 luma, as TF rounds them).
const GRAY: [f32; 3] = [0.2989, 0.5870, 0.1140];

/// Colour jitter then grayscale, as drawn in `p`, over three planes of equal length.
#[inline(always)]
fn colour(planes: &mut [&mut [u8]; 3], p: &ClipParams) {
    if p.jitter.is_none() && !p.grayscale {
        return;
    }
    // Not `map_or` with a closure: the closure would be compiled without AVX2.
    let means = match &p.jitter {
        Some(j) => contrast_means(planes, j),
        None => [0.0; 3],
    };
    let n = planes[0].len();
    let mut blk = [[0f32; BLOCK]; 3];
    for start in (0..n).step_by(BLOCK) {
        let m = BLOCK.min(n - start);
        for (b, plane) in blk.iter_mut().zip(planes.iter()) {
            for (d, &v) in b[..m].iter_mut().zip(&plane[start..start + m]) {
                *d = f32::from(v);
            }
        }
        let [r, g, b] = &mut blk;
        let (r, g, b) = (&mut r[..m], &mut g[..m], &mut b[..m]);
        if let Some(j) = &p.jitter {
            for op in j.order {
                apply_op(op, j, &means, r, g, b);
            }
        }
        if p.grayscale {
            for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
                let y = GRAY[0] * *r + GRAY[1] * *g + GRAY[2] * *b;
                (*r, *g, *b) = (y, y, y);
            }
        }
        for (b, plane) in blk.iter().zip(planes.iter_mut()) {
            for (d, &v) in plane[start..start + m].iter_mut().zip(&b[..m]) {
                *d = to_u8(v);
            }
        }
    }
}

/// Per-channel means of the planes at the point where contrast runs: after the ops that
/// precede it in `j.order`. With contrast first they are plain means of the bytes.
#[inline(always)]
fn contrast_means(planes: &[&mut [u8]; 3], j: &Jitter) -> [f32; 3] {
    let n = planes[0].len().max(1);
    let before = j.order.iter().position(|&op| op == ColorOp::Contrast).unwrap_or(0);
    let prefix = &j.order[..before];
    if prefix.is_empty() {
        let mut means = [0f32; 3];
        for (m, plane) in means.iter_mut().zip(planes.iter()) {
            // Integer sums in u32 lanes, flushed to u64 before they could overflow.
            let mut sum = 0u64;
            for chunk in plane.chunks(1 << 16) {
                sum += u64::from(chunk.iter().map(|&v| u32::from(v)).sum::<u32>());
            }
            *m = (sum as f64 / n as f64) as f32;
        }
        return means;
    }
    let mut colsums = [[0f32; BLOCK]; 3];
    let mut blk = [[0f32; BLOCK]; 3];
    let len = planes[0].len();
    for start in (0..len).step_by(BLOCK) {
        let m = BLOCK.min(len - start);
        for (b, plane) in blk.iter_mut().zip(planes.iter()) {
            for (d, &v) in b[..m].iter_mut().zip(&plane[start..start + m]) {
                *d = f32::from(v);
            }
        }
        let [r, g, b] = &mut blk;
        let (r, g, b) = (&mut r[..m], &mut g[..m], &mut b[..m]);
        for &op in prefix {
            apply_op(op, j, &[0.0; 3], r, g, b);
        }
        // One running sum per block position: element-wise adds vectorise, where a single
        // f32 chain cannot (float addition is not reassociated) and is latency-bound.
        for (sum, ch) in colsums.iter_mut().zip([&*r, &*g, &*b]) {
            for (s, &v) in sum.iter_mut().zip(ch) {
                *s += v;
            }
        }
    }
    colsums.map(|c| (c.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64) as f32)
}

#[inline(always)]
fn clip(v: f32) -> f32 {
    v.clamp(0.0, 255.0)
}

/// One jitter op on a block of pixels in `[0, 255]`, clipped after, as TF clips to `[0, 1]`.
#[inline(always)]
fn apply_op(
    op: ColorOp,
    j: &Jitter,
    means: &[f32; 3],
    r: &mut [f32],
    g: &mut [f32],
    b: &mut [f32],
) {
    match op {
        ColorOp::Brightness => {
            let f = j.brightness;
            for ch in [r, g, b] {
                for v in ch.iter_mut() {
                    *v = clip(*v * f);
                }
            }
        }
        ColorOp::Contrast => {
            // tf.image.adjust_contrast: (x - mean) * f + mean, per channel.
            let f = j.contrast;
            for (ch, &m) in [r, g, b].into_iter().zip(means) {
                for v in ch.iter_mut() {
                    *v = clip((*v - m) * f + m);
                }
            }
        }
        ColorOp::Saturation => {
            // tf.image.adjust_saturation: HSV with S scaled and clipped to 1. With H and V
            // fixed every channel keeps its place between V (the max) and V(1 - S), so
            // c' = V - k(V - c) with k = S'/S = min(f, 1/S) = min(f, V / (V - min)).
            let f = j.saturation.max(0.0);
            for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
                let v = max(max(*r, *g), *b);
                let chroma = v - min(min(*r, *g), *b);
                let k = if chroma > 0.0 { min(f, v / chroma) } else { 1.0 };
                *r = clip(v - k * (v - *r));
                *g = clip(v - k * (v - *g));
                *b = clip(v - k * (v - *b));
            }
        }
        ColorOp::Hue => hue_shift(j.hue, r, g, b),
    }
}

/// tf.image.adjust_hue: rotate the HSV hue by `turns`, keeping S and V. The HSV to RGB step
/// is the branch-free form `c = V - C·clamp(min(k, 4 - k), 0, 1)` with
/// `k = (n + H) mod 6`, `n` = 5, 3, 1 for R, G, B, `C = V - min` and `H` in sixths of a
/// turn, which is TF's six-sector switch written without branches.
#[inline(always)]
fn hue_shift(turns: f32, r: &mut [f32], g: &mut [f32], b: &mut [f32]) {
    let shift = (turns * 6.0).rem_euclid(6.0);
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let (rv, gv, bv) = (*r, *g, *b);
        let v = max(max(rv, gv), bv);
        let chroma = v - min(min(rv, gv), bv);
        let inv = if chroma > 0.0 { 1.0 / chroma } else { 0.0 };
        // Hue in [-1, 5): the same sector rules as TF's rgb_to_hsv.
        let h = if rv == v {
            (gv - bv) * inv
        } else if gv == v {
            (bv - rv) * inv + 2.0
        } else {
            (rv - gv) * inv + 4.0
        };
        let mut h = h + shift;
        h = if h >= 6.0 { h - 6.0 } else { h };
        h = if h < 0.0 { h + 6.0 } else { h };
        let channel = |n: f32| {
            let k = n + h;
            let k = if k >= 6.0 { k - 6.0 } else { k };
            clip(v - chroma * min(k, 4.0 - k).clamp(0.0, 1.0))
        };
        *r = channel(5.0);
        *g = channel(3.0);
        *b = channel(1.0);
    }
}

// ---------------------------------------------------------------------------------------
// Blur

/// The reference's Gaussian blur kernel for `sigma` at output size `out_size`
/// (`random_blur` in `video_ssl_preprocess_ops.py`): `kernel_size = out_size / 10`, radius
/// `kernel_size / 2` (11 at 224, so 23 taps), weights `exp(-k² / 2σ²)` normalised to sum
/// to 1, applied separably with zero padding. Public so that a device-side blur can use
/// the same kernel (see the module doc).
pub fn blur_kernel(sigma: f32, out_size: u32) -> Vec<f32> {
    let radius = (out_size as usize / 10) / 2;
    let weights: Vec<f32> = (0..=2 * radius)
        .map(|i| {
            let k = i.abs_diff(radius) as f32;
            (-(k * k) / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let total: f32 = weights.iter().sum();
    weights.into_iter().map(|w| w / total).collect()
}

/// The blur kernel and its buffers.
#[derive(Default)]
struct BlurScratch {
    taps: Vec<f32>,
    radius: usize,
    /// Horizontally blurred plane.
    tmp: Vec<f32>,
    /// One source row with `radius` zeros on either side.
    padded: Vec<f32>,
    /// One output row being accumulated.
    acc: Vec<f32>,
}

/// Taps below this weight are dropped: the reference's 23 taps at σ ≤ 2 carry under 2e-4 of
/// the total beyond the kept ones, far below half a level.
const MIN_TAP: f32 = 1e-5;

// The blur's row kernels, eight lanes at a time, copied into local arrays and stored back
// whole. Written as in-place slice loops (`acc[i] += ...`) the compiler kept them scalar,
// unable to rule out that the store overlaps the next loads, and the blur ran several
// times slower.

const L8: usize = 8;

#[inline(always)]
fn lanes(v: &[f32]) -> [f32; L8] {
    v.try_into().expect("8 lanes")
}

#[inline(always)]
fn scale(out: &mut [f32], src: &[f32], w: f32) {
    for (o, &v) in out.iter_mut().zip(src) {
        *o = w * v;
    }
}

#[inline(always)]
fn add_one(acc: &mut [f32], src: &[f32], w: f32) {
    let n = acc.len().min(src.len()) / L8 * L8;
    for (o, x) in acc[..n].chunks_exact_mut(L8).zip(src[..n].chunks_exact(L8)) {
        // Copies in, one store out: with no store between the loads the eight lanes
        // become one vector operation.
        let (mut v, x): ([f32; L8], [f32; L8]) = (lanes(o), lanes(x));
        for i in 0..L8 {
            v[i] += w * x[i];
        }
        o.copy_from_slice(&v);
    }
    for (o, &x) in acc[n..].iter_mut().zip(&src[n..]) {
        *o += w * x;
    }
}

#[inline(always)]
fn add_pair(acc: &mut [f32], a: &[f32], b: &[f32], w: f32) {
    let n = acc.len().min(a.len()).min(b.len()) / L8 * L8;
    let rows =
        acc[..n].chunks_exact_mut(L8).zip(a[..n].chunks_exact(L8)).zip(b[..n].chunks_exact(L8));
    for ((o, x), y) in rows {
        let (mut v, x, y): ([f32; L8], [f32; L8], [f32; L8]) = (lanes(o), lanes(x), lanes(y));
        for i in 0..L8 {
            v[i] += w * (x[i] + y[i]);
        }
        o.copy_from_slice(&v);
    }
    for ((o, &x), &y) in acc[n..].iter_mut().zip(&a[n..]).zip(&b[n..]) {
        *o += w * (x + y);
    }
}

impl BlurScratch {
    /// Loads the reference's kernel ([`blur_kernel`]) less the taps that carry nothing.
    /// Returns false when there is nothing to blur (radius 0).
    fn set_kernel(&mut self, sigma: f32, s: usize) -> bool {
        let kernel = blur_kernel(sigma, s as u32);
        let radius = kernel.len() / 2;
        if radius == 0 || sigma.is_nan() || sigma <= 0.0 {
            return false;
        }
        let kept = kernel[radius + 1..].iter().take_while(|&&w| w >= MIN_TAP).count();
        self.radius = kept;
        self.taps.clear();
        self.taps.extend_from_slice(&kernel[radius - kept..=radius + kept]);
        self.tmp.clear();
        self.tmp.resize(s * s, 0.0);
        self.padded.clear();
        self.padded.resize(s + 2 * kept, 0.0);
        self.acc.clear();
        self.acc.resize(s, 0.0);
        true
    }

    /// Separable blur of one `s x s` plane in place, zero padding (TF's `padding='SAME'`
    /// depthwise convolution), so edges darken as in the reference. Each pass adds one tap
    /// pair at a time over a whole row (`acc += w * (left + right)`, the kernel being
    /// symmetric): plain slice loops, which the compiler vectorises. (Accumulating a few
    /// registers' worth of columns over all taps at once came out as scalar code.)
    #[inline(always)]
    fn apply(&mut self, plane: &mut [u8], s: usize) {
        let r = self.radius;
        let BlurScratch { taps, tmp, padded, acc, .. } = self;
        let (centre, pairs) = (taps[r], &taps[r + 1..]);
        // Horizontal, from a zero-padded copy of each row.
        for (src, out) in plane.chunks_exact(s).zip(tmp.chunks_exact_mut(s)) {
            for (d, &v) in padded[r..r + s].iter_mut().zip(src) {
                *d = f32::from(v);
            }
            scale(out, &padded[r..r + s], centre);
            for (k, &w) in (1..).zip(pairs) {
                add_pair(out, &padded[r + k..r + k + s], &padded[r - k..r - k + s], w);
            }
        }
        // Vertical; rows outside the plane are zeros, so their taps are skipped.
        let row = |y: usize| &tmp[y * s..(y + 1) * s];
        for (y, dst) in plane.chunks_exact_mut(s).enumerate() {
            scale(acc, row(y), centre);
            for (k, &w) in (1..).zip(pairs) {
                let (up, down) = (y.checked_sub(k), Some(y + k).filter(|&d| d < s));
                match (up, down) {
                    (Some(u), Some(d)) => add_pair(acc, row(u), row(d), w),
                    (Some(one), None) | (None, Some(one)) => add_one(acc, row(one), w),
                    (None, None) => {}
                }
            }
            for (d, &v) in dst.iter_mut().zip(acc.iter()) {
                *d = to_u8(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::Xoshiro256PlusPlus;
    use rand::SeedableRng;

    fn rng(seed: u64) -> Xoshiro256PlusPlus {
        Xoshiro256PlusPlus::seed_from_u64(seed)
    }

    fn rgb_layout(w: u32, h: u32) -> FrameLayout {
        FrameLayout::new(w, h, PixelFormat::Rgb24).unwrap()
    }

    fn yuv_layout(w: u32, h: u32) -> FrameLayout {
        FrameLayout::new(w, h, PixelFormat::Yuv420p).unwrap()
    }

    /// An rgb24 frame with pixel (x, y) = f(x, y).
    fn rgb_frame(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        (0..h).flat_map(|y| (0..w).map(move |x| (x, y))).flat_map(|(x, y)| f(x, y)).collect()
    }

    /// A yuv420p frame with luma f(x, y) and neutral chroma.
    fn yuv_gray_frame(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> Vec<u8> {
        let mut v: Vec<u8> =
            (0..h).flat_map(|y| (0..w).map(move |x| (x, y))).map(|(x, y)| f(x, y)).collect();
        v.resize(v.len() * 3 / 2, 128);
        v
    }

    /// A yuv420p frame with some texture and colour everywhere.
    fn yuv_textured_frame(w: u32, h: u32, seed: u32) -> Vec<u8> {
        let hash = |x: u32, y: u32, c: u32| {
            let mut v = x.wrapping_mul(0x9E37_79B9)
                ^ y.wrapping_mul(0x85EB_CA6B)
                ^ c.wrapping_mul(0xC2B2_AE35)
                ^ seed;
            v ^= v >> 15;
            v = v.wrapping_mul(0x2C1B_3C6D);
            v ^= v >> 12;
            v
        };
        let mut out = Vec::with_capacity((w * h * 3 / 2) as usize);
        out.extend(
            (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .map(|(x, y)| (16 + (x * 3 + y * 2) % 180 + hash(x, y, 0) % 40) as u8),
        );
        for c in 1..3 {
            out.extend(
                (0..h / 2)
                    .flat_map(|y| (0..w / 2).map(move |x| (x, y)))
                    .map(|(x, y)| (70 + (x + c * y) % 80 + hash(x, y, c) % 30) as u8),
            );
        }
        out
    }

    /// Pixel (x, y) of frame `t` of an output clip of `frames` frames of side `s`.
    fn px(out: &[u8], frames: usize, s: usize, t: usize, x: usize, y: usize) -> [u8; 3] {
        std::array::from_fn(|c| out[((c * frames + t) * s + y) * s + x])
    }

    fn frame_of(out: &[u8], frames: usize, s: usize, t: usize) -> Vec<u8> {
        (0..3).flat_map(|c| out[(c * frames + t) * s * s..][..s * s].to_vec()).collect()
    }

    fn cfg_size(s: u32) -> AugmentConfig {
        AugmentConfig { out_size: s, ..AugmentConfig::first_view() }
    }

    fn jitter(order: [ColorOp; 4]) -> Jitter {
        Jitter { brightness: 1.0, contrast: 1.0, saturation: 1.0, hue: 0.0, order }
    }

    const BCSH: [ColorOp; 4] =
        [ColorOp::Brightness, ColorOp::Contrast, ColorOp::Saturation, ColorOp::Hue];

    /// Runs `params` on an rgb24 clip of `t` frames of `w x w` at output size `w`: the
    /// crop-resize is then the identity, so only the colour ops act.
    fn run_rgb(w: u32, frames: &[u8], t: usize, params: &[ClipParams]) -> Vec<u8> {
        let mut out = Vec::new();
        augment_clip(&rgb_layout(w, w), frames, t, params, &cfg_size(w), &mut out).unwrap();
        out
    }

    fn with_jitter(w: u32, j: Jitter) -> ClipParams {
        ClipParams { jitter: Some(j), ..ClipParams::whole_frame(w, w) }
    }

    #[test]
    fn consistent_mode_gives_every_identical_frame_the_same_output() {
        let layout = yuv_layout(64, 48);
        let frame = yuv_textured_frame(64, 48, 7);
        let t = 6;
        let frames = frame.repeat(t);
        // Every op on: jitter, grayscale off so colour shows, blur, solarize.
        let cfg = AugmentConfig {
            out_size: 40,
            jitter_p: 1.0,
            grayscale_p: 0.0,
            solarize_p: 1.0,
            ..AugmentConfig::first_view()
        };
        let mut out = Vec::new();
        let params = augment(&mut rng(3), &cfg, &layout, &frames, t, &mut out).unwrap();
        assert_eq!(params.len(), 1);
        let first = frame_of(&out, t, 40, 0);
        for ti in 1..t {
            assert_eq!(frame_of(&out, t, 40, ti), first, "frame {ti} differs");
        }

        let cfg = AugmentConfig { consistent: false, ..cfg };
        let params = augment(&mut rng(3), &cfg, &layout, &frames, t, &mut out).unwrap();
        assert_eq!(params.len(), t);
        let first = frame_of(&out, t, 40, 0);
        let differing = (1..t).filter(|&ti| frame_of(&out, t, 40, ti) != first).count();
        assert!(differing >= t - 2, "only {differing} of {} frames differ from the first", t - 1);
        assert!(params.windows(2).all(|w| w[0] != w[1]), "per-frame parameters repeat");
    }

    #[test]
    fn flip_swaps_a_dark_left_half_with_a_bright_right_half() {
        for layout in [rgb_layout(32, 32), yuv_layout(32, 32)] {
            let frame = match layout.format() {
                PixelFormat::Rgb24 => {
                    rgb_frame(32, 32, |x, _| if x < 16 { [20; 3] } else { [220; 3] })
                }
                PixelFormat::Yuv420p => {
                    yuv_gray_frame(32, 32, |x, _| if x < 16 { 30 } else { 200 })
                }
            };
            let cfg = cfg_size(32);
            let mut out = Vec::new();
            let plain = ClipParams::whole_frame(32, 32);
            augment_clip(&layout, &frame, 1, &[plain], &cfg, &mut out).unwrap();
            let (left, right) = (px(&out, 1, 32, 0, 3, 10), px(&out, 1, 32, 0, 28, 10));
            assert!(
                left[0] < 40 && right[0] > 180,
                "{}: unflipped {left:?} {right:?}",
                layout.format()
            );
            augment_clip(&layout, &frame, 1, &[ClipParams { flip: true, ..plain }], &cfg, &mut out)
                .unwrap();
            let (l2, r2) = (px(&out, 1, 32, 0, 3, 10), px(&out, 1, 32, 0, 28, 10));
            assert_eq!((l2, r2), (right, left), "{}: flip must mirror", layout.format());
        }
    }

    #[test]
    fn the_crop_box_maps_to_the_expected_source_region() {
        // R encodes the column and G the row, so each output pixel says where it came from.
        let layout = rgb_layout(64, 48);
        let frame = rgb_frame(64, 48, |x, y| [x as u8, y as u8, 0]);
        let crop = Crop { x: 10, y: 5, w: 32, h: 16 };
        let p = ClipParams { crop, ..ClipParams::whole_frame(64, 48) };
        let mut out = Vec::new();
        augment_clip(&layout, &frame, 1, &[p], &cfg_size(16), &mut out).unwrap();
        for o in 0..16 {
            // Half-pixel centres: output o samples source 10 + (o + 0.5) * 2 - 0.5.
            let want_x = 10.0 + (o as f64 + 0.5) * 2.0 - 0.5;
            let got = px(&out, 1, 16, 0, o, 0)[0];
            assert!((f64::from(got) - want_x).abs() <= 0.5, "column {o}: {got} vs {want_x}");
            let want_y = 5.0 + o as f64; // scale 1 vertically
            assert_eq!(f64::from(px(&out, 1, 16, 0, 0, o)[1]), want_y, "row {o}");
        }
        // Flipped, column o shows what column 15 - o showed.
        let flipped = ClipParams { flip: true, ..p };
        let mut out2 = Vec::new();
        augment_clip(&layout, &frame, 1, &[flipped], &cfg_size(16), &mut out2).unwrap();
        for o in 0..16 {
            assert_eq!(px(&out2, 1, 16, 0, o, 3), px(&out, 1, 16, 0, 15 - o, 3));
        }

        // The same from yuv420p: luma encodes the column, chroma is neutral.
        let layout = yuv_layout(64, 48);
        let frame = yuv_gray_frame(64, 48, |x, _| 16 + 3 * x as u8);
        augment_clip(&layout, &frame, 1, &[p], &cfg_size(16), &mut out).unwrap();
        for o in 0..16 {
            let want = 3.0 * (10.0 + (o as f64 + 0.5) * 2.0 - 0.5) * 255.0 / 219.0;
            let got = px(&out, 1, 16, 0, o, 7);
            assert!(
                got.iter().all(|&c| (f64::from(c) - want).abs() <= 1.0),
                "column {o}: {got:?} vs {want:.1}"
            );
        }
    }

    #[test]
    fn brightness_multiplies_and_clips() {
        let frame = rgb_frame(2, 2, |_, _| [100, 50, 200]);
        let j = Jitter { brightness: 1.5, ..jitter(BCSH) };
        let out = run_rgb(2, &frame, 1, &[with_jitter(2, j)]);
        assert_eq!(px(&out, 1, 2, 0, 1, 1), [150, 75, 255]);
    }

    #[test]
    fn contrast_scales_around_the_mean_of_the_whole_clip_in_consistent_mode() {
        // Two uniform frames: per-frame means would leave both unchanged.
        let frames =
            [rgb_frame(2, 2, |_, _| [50, 100, 150]), rgb_frame(2, 2, |_, _| [150, 200, 250])]
                .concat();
        let j = Jitter { contrast: 0.5, ..jitter(BCSH) };
        let out = run_rgb(2, &frames, 2, &[with_jitter(2, j)]);
        // Clip means 100, 150, 200.
        assert_eq!(px(&out, 2, 2, 0, 0, 0), [75, 125, 175]);
        assert_eq!(px(&out, 2, 2, 1, 0, 0), [125, 175, 225]);
        // Inconsistent mode: each frame is its own image, so uniform frames stay put.
        let out = run_rgb(2, &frames, 2, &[with_jitter(2, j), with_jitter(2, j)]);
        assert_eq!(px(&out, 2, 2, 0, 0, 0), [50, 100, 150]);
        assert_eq!(px(&out, 2, 2, 1, 1, 1), [150, 200, 250]);
    }

    #[test]
    fn ops_run_in_the_drawn_order_and_clip_after_each() {
        let frame = rgb_frame(2, 1, |x, _| if x == 0 { [100; 3] } else { [200; 3] });
        let frame = [frame.clone(), frame].concat(); // 2x2: rows repeat
        let j = Jitter { brightness: 2.0, contrast: 0.5, ..jitter(BCSH) };
        // Brightness first: 200, 255 (400 clipped); mean 227.5; contrast: 213.75, 241.25.
        let out = run_rgb(2, &frame, 1, &[with_jitter(2, j)]);
        assert_eq!((px(&out, 1, 2, 0, 0, 0)[0], px(&out, 1, 2, 0, 1, 0)[0]), (214, 241));
        // Contrast first: mean 150 gives 125, 175; doubled: 250, 255 (350 clipped).
        let order = [ColorOp::Contrast, ColorOp::Brightness, ColorOp::Saturation, ColorOp::Hue];
        let out = run_rgb(2, &frame, 1, &[with_jitter(2, Jitter { order, ..j })]);
        assert_eq!((px(&out, 1, 2, 0, 0, 0)[0], px(&out, 1, 2, 0, 1, 0)[0]), (250, 255));
    }

    #[test]
    fn saturation_scales_hsv_saturation_as_tf_does() {
        // tf.image.adjust_saturation's documented example: [1, 2, 3] at 0.5 is [2, 2.5, 3].
        let cases = [
            ([40, 80, 120], 0.5, [80, 100, 120]),
            ([60, 90, 120], 2.0, [0, 60, 120]),
            ([60, 90, 120], 3.0, [0, 60, 120]),
            ([90, 90, 90], 1.8, [90, 90, 90]),
        ];
        for (rgb, f, want) in cases {
            let frame = rgb_frame(2, 2, |_, _| rgb);
            let j = Jitter { saturation: f, ..jitter(BCSH) };
            let out = run_rgb(2, &frame, 1, &[with_jitter(2, j)]);
            assert_eq!(px(&out, 1, 2, 0, 0, 1), want, "{rgb:?} x {f}");
        }
    }

    /// TF's rgb_to_hsv / adjust hue / hsv_to_rgb, written as TF writes them (six-sector
    /// switch), in f64, on [0, 1].
    fn tf_adjust_hue(rgb: [f64; 3], delta: f64) -> [f64; 3] {
        let [r, g, b] = rgb;
        let v = r.max(g).max(b);
        let range = v - r.min(g).min(b);
        let s = if v > 0.0 { range / v } else { 0.0 };
        let norm = 1.0 / (6.0 * range);
        let mut h = if r == v {
            norm * (g - b)
        } else if g == v {
            norm * (b - r) + 2.0 / 6.0
        } else {
            norm * (r - g) + 4.0 / 6.0
        };
        if range <= 0.0 {
            h = 0.0;
        }
        if h < 0.0 {
            h += 1.0;
        }
        h = (h + delta).rem_euclid(1.0);
        let c = s * v;
        let m = v - c;
        let dh = h * 6.0;
        let mut fmodu = dh;
        while fmodu <= 0.0 {
            fmodu += 2.0;
        }
        while fmodu >= 2.0 {
            fmodu -= 2.0;
        }
        let x = c * (1.0 - (fmodu - 1.0).abs());
        let (rr, gg, bb) = match dh as i32 {
            0 => (c, x, 0.0),
            1 => (x, c, 0.0),
            2 => (0.0, c, x),
            3 => (0.0, x, c),
            4 => (x, 0.0, c),
            5 => (c, 0.0, x),
            _ => (0.0, 0.0, 0.0),
        };
        [rr + m, gg + m, bb + m]
    }

    #[test]
    fn hue_shift_matches_tf_and_a_third_turn_takes_red_to_green() {
        let red = rgb_frame(2, 2, |_, _| [255, 0, 0]);
        let j = Jitter { hue: 1.0 / 3.0, ..jitter(BCSH) };
        assert_eq!(px(&run_rgb(2, &red, 1, &[with_jitter(2, j)]), 1, 2, 0, 0, 0), [0, 255, 0]);
        let j = Jitter { hue: -1.0 / 3.0, ..jitter(BCSH) };
        assert_eq!(px(&run_rgb(2, &red, 1, &[with_jitter(2, j)]), 1, 2, 0, 0, 0), [0, 0, 255]);

        // Against TF's formulas on a spread of colours and shifts.
        let colours: Vec<[u8; 3]> = (0..64u32)
            .map(|i| [(i * 37 % 256) as u8, (i * 91 % 256) as u8, (i * 53 % 256) as u8])
            .chain([[0, 0, 0], [255, 255, 255], [10, 10, 200], [200, 10, 10]])
            .collect();
        let w = colours.len() as u32;
        // One row per colour is not square; use a w x w frame whose rows repeat.
        let frame = rgb_frame(w, w, |x, _| colours[x as usize]);
        for delta in [-0.2f32, -0.07, 0.0, 0.05, 0.13, 0.2, 0.5] {
            let out =
                run_rgb(w, &frame, 1, &[with_jitter(w, Jitter { hue: delta, ..jitter(BCSH) })]);
            for (x, c) in colours.iter().enumerate() {
                let want = tf_adjust_hue(c.map(|v| f64::from(v) / 255.0), f64::from(delta));
                let got = px(&out, 1, w as usize, 0, x, 2);
                for k in 0..3 {
                    assert!(
                        (f64::from(got[k]) - want[k] * 255.0).abs() <= 0.51,
                        "{c:?} + {delta}: {got:?} vs {want:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn grayscale_uses_tf_weights_on_all_three_channels() {
        let frame = rgb_frame(2, 2, |_, _| [100, 150, 200]);
        let p = ClipParams { grayscale: true, ..ClipParams::whole_frame(2, 2) };
        let out = run_rgb(2, &frame, 1, &[p]);
        // 0.2989 * 100 + 0.587 * 150 + 0.114 * 200 = 140.74
        assert_eq!(px(&out, 1, 2, 0, 1, 0), [141, 141, 141]);
    }

    #[test]
    fn solarize_mirrors_the_upper_half() {
        let frame = rgb_frame(2, 2, |_, _| [100, 128, 200]);
        let p = ClipParams { solarize: true, ..ClipParams::whole_frame(2, 2) };
        assert_eq!(px(&run_rgb(2, &frame, 1, &[p]), 1, 2, 0, 0, 0), [100, 127, 55]);
    }

    #[test]
    fn blur_spreads_an_impulse_by_the_gaussian_and_darkens_edges_as_zero_padding_does() {
        let s = 60u32; // kernel_size 6, radius 3
        let sigma = 1.0f32;
        let w: Vec<f64> = (-3i32..=3).map(|k| (-f64::from(k * k) / 2.0).exp()).collect();
        let total: f64 = w.iter().sum();
        let w: Vec<f64> = w.iter().map(|v| v / total).collect();
        let p = ClipParams { blur_sigma: Some(sigma), ..ClipParams::whole_frame(s, s) };

        let impulse = rgb_frame(s, s, |x, y| if (x, y) == (30, 30) { [255; 3] } else { [0; 3] });
        let out = run_rgb(s, &impulse, 1, &[p]);
        for (dx, dy) in [(0, 0), (1, 0), (0, 2), (1, 1), (3, 3)] {
            let want = 255.0 * w[3 + dx] * w[3 + dy];
            let got = px(&out, 1, s as usize, 0, 30 + dx, 30 + dy)[0];
            assert!(
                (f64::from(got) - want).abs() <= 0.6,
                "offset ({dx}, {dy}): {got} vs {want:.2}"
            );
        }
        assert_eq!(px(&out, 1, s as usize, 0, 34, 30)[0], 0, "nothing beyond the radius");

        let flat = rgb_frame(s, s, |_, _| [200; 3]);
        let out = run_rgb(s, &flat, 1, &[p]);
        assert_eq!(px(&out, 1, s as usize, 0, 30, 30), [200; 3], "the interior keeps its level");
        let corner = 200.0 * (w[3] + w[4] + w[5] + w[6]).powi(2);
        let got = px(&out, 1, s as usize, 0, 0, 0)[0];
        assert!((f64::from(got) - corner).abs() <= 0.6, "corner {got} vs {corner:.2}");
    }

    #[test]
    fn the_blur_kernel_is_the_references() {
        let k = blur_kernel(1.5, 224);
        assert_eq!(k.len(), 23, "kernel_size 224 / 10 = 22, radius 11");
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((0..11).all(|i| k[i] == k[22 - i] && k[i] < k[i + 1]), "symmetric, peaked");
        let ratio = f64::from(k[12]) / f64::from(k[11]);
        assert!((ratio - (-1.0f64 / (2.0 * 1.5 * 1.5)).exp()).abs() < 1e-6);
        assert_eq!(blur_kernel(1.0, 112).len(), 11, "11 / 2 = 5");
    }

    /// The AVX2 build of the pipeline and the baseline one give the same bytes (no FMA
    /// contraction, no reassociated sums), so results do not depend on the machine.
    #[test]
    fn the_avx2_build_gives_the_same_bytes_as_the_baseline() {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            let layout = yuv_layout(96, 64);
            let t = 3;
            let frames: Vec<u8> =
                (0..t as u32).flat_map(|i| yuv_textured_frame(96, 64, i)).collect();
            let s = 48;
            let cfg = AugmentConfig {
                jitter_p: 1.0,
                solarize_p: 0.5,
                grayscale_p: 0.3,
                ..cfg_size(s as u32)
            };
            let mut r = rng(8);
            let per_frame: Vec<ClipParams> =
                (0..t).map(|_| sample_params(&mut r, &cfg, 96, 64)).collect();
            let hsbc = [ColorOp::Hue, ColorOp::Saturation, ColorOp::Brightness, ColorOp::Contrast];
            let all = ClipParams {
                jitter: Some(Jitter {
                    brightness: 1.3,
                    contrast: 0.6,
                    saturation: 1.7,
                    hue: -0.15,
                    order: hsbc,
                }),
                blur_sigma: Some(1.7),
                solarize: true,
                ..per_frame[0]
            };
            for params in [vec![all], per_frame] {
                let run_with = |avx2: bool| {
                    let mut out = vec![0u8; 3 * t * s * s];
                    let (r_all, rest) = out.split_at_mut(t * s * s);
                    let (g_all, b_all) = rest.split_at_mut(t * s * s);
                    let job = Job {
                        layout: &layout,
                        frames: &frames,
                        params: &params,
                        s,
                        planes: [r_all, g_all, b_all],
                    };
                    let mut sc = Scratch::default();
                    if avx2 {
                        // SAFETY: AVX2 support was checked above.
                        unsafe { run_avx2(job, &mut sc) }
                    } else {
                        run(job, &mut sc)
                    }
                    out
                };
                assert!(run_with(true) == run_with(false), "{} parameter sets", params.len());
            }
        }
    }

    #[test]
    fn yuv_limited_range_colours_come_out_right() {
        // BT.601 limited-range pure red is Y=81, U=90, V=240; white is Y=235.
        let layout = yuv_layout(4, 4);
        let mut frame = vec![81u8; 16];
        frame.extend([90u8; 4]);
        frame.extend([240u8; 4]);
        let mut out = Vec::new();
        augment_clip(&layout, &frame, 1, &[ClipParams::whole_frame(4, 4)], &cfg_size(8), &mut out)
            .unwrap();
        let p = px(&out, 1, 8, 0, 5, 2);
        assert!(p[0] >= 253 && p[1] <= 2 && p[2] <= 2, "{p:?}");
        let white = [vec![235u8; 16], vec![128u8; 8]].concat();
        augment_clip(&layout, &white, 1, &[ClipParams::whole_frame(4, 4)], &cfg_size(8), &mut out)
            .unwrap();
        assert!(out.iter().all(|&v| v == 255));
    }

    /// The alternative to resampling yuv420p directly: convert the frame to RGB first.
    fn via_rgb(
        layout: &FrameLayout,
        frames: &[u8],
        t: usize,
        p: &ClipParams,
        s: u32,
        out: &mut Vec<u8>,
        rgb: &mut Vec<u8>,
    ) {
        let (w, h) = (layout.width(), layout.height());
        let rgb_layout = rgb_layout(w, h);
        rgb.resize(t * rgb_layout.frame_bytes(), 0);
        for (src, dst) in frames
            .chunks_exact(layout.frame_bytes())
            .zip(rgb.chunks_exact_mut(rgb_layout.frame_bytes()))
        {
            cvrl_formats::pixel::yuv420p_to_rgb24(layout, src, dst);
        }
        augment_clip(&rgb_layout, rgb, t, std::slice::from_ref(p), &cfg_size(s), out).unwrap();
    }

    #[test]
    fn resampling_yuv_directly_agrees_with_converting_to_rgb_first() {
        let layout = yuv_layout(96, 64);
        // Smooth content: chroma siting and interpolation order barely matter there.
        let mut frame = yuv_gray_frame(96, 64, |x, y| (40 + x + y) as u8);
        let luma = 96 * 64;
        for (i, v) in frame[luma..].iter_mut().enumerate() {
            let (x, y) = (i % 48, (i / 48) % 32);
            *v = (100 + x + y) as u8;
        }
        let p = ClipParams {
            crop: Crop { x: 7, y: 3, w: 70, h: 50 },
            flip: true,
            ..ClipParams::whole_frame(96, 64)
        };
        let (mut direct, mut converted, mut rgb) = (Vec::new(), Vec::new(), Vec::new());
        augment_clip(&layout, &frame, 1, &[p], &cfg_size(48), &mut direct).unwrap();
        via_rgb(&layout, &frame, 1, &p, 48, &mut converted, &mut rgb);
        let diffs: Vec<i32> = direct
            .iter()
            .zip(&converted)
            .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
            .collect();
        let max = diffs.iter().max().unwrap();
        let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
        assert!(*max <= 4 && mean < 1.5, "max {max}, mean {mean:.2}");
    }

    #[test]
    fn crops_stay_within_the_area_and_aspect_ranges() {
        let mut r = rng(11);
        let (w, h) = (342u32, 256u32);
        let (mut min_area, mut max_area, mut min_ar, mut max_ar) = (1f64, 0f64, 10f64, 0f64);
        for _ in 0..5000 {
            let c = sample_crop(&mut r, w, h, (0.3, 1.0), (0.5, 2.0));
            assert!(c.w >= 1 && c.h >= 1 && c.x + c.w <= w && c.y + c.h <= h, "{c:?}");
            let area = f64::from(c.w * c.h) / f64::from(w * h);
            let ar = f64::from(c.w) / f64::from(c.h);
            // TF accepts a box only when its area is in range; width = round(h * ratio)
            // puts the ratio within half a pixel of the drawn one.
            assert!((0.3 - 1e-6..=1.0).contains(&area), "area {area} of {c:?}");
            let slack = 0.5 / f64::from(c.h);
            assert!(ar >= 0.5 - slack && ar <= 2.0 + slack, "aspect {ar} of {c:?}");
            min_area = min_area.min(area);
            max_area = max_area.max(area);
            min_ar = min_ar.min(ar);
            max_ar = max_ar.max(ar);
        }
        // And the draws cover the ranges (the test has power).
        assert!(min_area < 0.32 && max_area > 0.95, "areas {min_area}..{max_area}");
        assert!(min_ar < 0.55 && max_ar > 1.9, "aspects {min_ar}..{max_ar}");
    }

    #[test]
    fn impossible_ranges_fall_back_to_the_whole_frame() {
        let mut r = rng(5);
        // w = 3h to 4h with 90% of a square frame cannot fit.
        for _ in 0..20 {
            assert_eq!(
                sample_crop(&mut r, 100, 100, (0.9, 1.0), (3.0, 4.0)),
                Crop { x: 0, y: 0, w: 100, h: 100 }
            );
        }
        // Area exactly 1 with aspect exactly the frame's is the whole frame too.
        assert_eq!(
            sample_crop(&mut r, 200, 100, (1.0, 1.0), (2.0, 2.0)),
            Crop { x: 0, y: 0, w: 200, h: 100 }
        );
    }

    #[test]
    fn eval_is_a_deterministic_centre_crop() {
        let cfg = AugmentConfig::eval(224);
        let a = sample_params(&mut rng(1), &cfg, 342, 256);
        let b = sample_params(&mut rng(2), &cfg, 342, 256);
        assert_eq!(a, b);
        assert_eq!(a.crop, Crop { x: 59, y: 16, w: 224, h: 224 });
        assert!(
            !a.flip && a.jitter.is_none() && !a.grayscale && a.blur_sigma.is_none() && !a.solarize
        );
    }

    #[test]
    fn output_has_the_right_length_and_is_deterministic_for_a_seed() {
        let layout = yuv_layout(48, 32);
        let t = 3;
        let frames: Vec<u8> = (0..t as u32).flat_map(|i| yuv_textured_frame(48, 32, i)).collect();
        for cfg in [
            AugmentConfig { out_size: 24, ..AugmentConfig::second_view() },
            AugmentConfig { out_size: 24, consistent: false, ..AugmentConfig::first_view() },
        ] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let pa = augment(&mut rng(9), &cfg, &layout, &frames, t, &mut a).unwrap();
            let pb = augment(&mut rng(9), &cfg, &layout, &frames, t, &mut b).unwrap();
            assert_eq!(a.len(), 3 * t * 24 * 24);
            assert_eq!((pa, &a), (pb, &b));
            let pc = augment(&mut rng(10), &cfg, &layout, &frames, t, &mut b).unwrap();
            assert_ne!(pc, augment(&mut rng(9), &cfg, &layout, &frames, t, &mut a).unwrap());
        }
    }

    #[test]
    fn sampled_factors_stay_in_their_ranges() {
        let cfg = AugmentConfig { jitter_p: 1.0, ..AugmentConfig::first_view() };
        let mut r = rng(4);
        let mut orders = std::collections::HashSet::new();
        for _ in 0..2000 {
            let j = sample_params(&mut r, &cfg, 342, 256).jitter.unwrap();
            assert!(
                (0.2..=1.8).contains(&j.brightness)
                    && (0.2..=1.8).contains(&j.contrast)
                    && (0.2..=1.8).contains(&j.saturation)
            );
            assert!((-0.2..=0.2).contains(&j.hue));
            let mut sorted = j.order;
            sorted.sort_by_key(|op| *op as u8);
            assert_eq!(sorted, BCSH, "the order is a permutation");
            orders.insert(j.order);
        }
        assert_eq!(orders.len(), 24, "every order is drawn");
    }

    #[test]
    fn malformed_input_is_an_error() {
        let layout = yuv_layout(8, 8);
        let frames = vec![0u8; 2 * layout.frame_bytes()];
        let cfg = cfg_size(4);
        let p = ClipParams::whole_frame(8, 8);
        let mut out = Vec::new();
        assert!(matches!(
            augment_clip(&layout, &frames[1..], 2, &[p], &cfg, &mut out),
            Err(AugmentError::ClipBytes { .. })
        ));
        assert_eq!(
            augment_clip(&layout, &frames, 2, &[p, p, p], &cfg, &mut out),
            Err(AugmentError::ParamCount { frames: 2, got: 3 })
        );
        let outside = ClipParams { crop: Crop { x: 4, y: 0, w: 5, h: 8 }, ..p };
        assert!(matches!(
            augment_clip(&layout, &frames, 2, &[outside], &cfg, &mut out),
            Err(AugmentError::CropOutside { .. })
        ));
        let empty = ClipParams { crop: Crop { x: 0, y: 0, w: 0, h: 8 }, ..p };
        assert!(matches!(
            augment_clip(&layout, &frames, 2, &[empty], &cfg, &mut out),
            Err(AugmentError::CropOutside { .. })
        ));
        assert_eq!(
            augment_clip(&layout, &frames, 2, &[p], &cfg_size(0), &mut out),
            Err(AugmentError::ZeroOutSize)
        );
    }

    /// Timing, not a check: `cargo test -p cvrl-trainer --release --lib augment::tests::speed
    /// -- --ignored --nocapture`. Minimum per clip on one core of the H200 machine's Xeon
    /// (AVX2): crop+resize 2.3 ms (16 via an RGB frame), + jitter 5.5 to 7.8 ms (contrast
    /// first or last), + blur σ 2 4.7 ms; `augment()` over random draws averages 11 ms for
    /// the first view (always blurred) and 7.3 ms for the second.
    #[test]
    #[ignore]
    fn speed() {
        use std::time::Instant;
        let (w, h, t) = (342u32, 256u32, 16usize);
        let layout = yuv_layout(w, h);
        let frames: Vec<u8> = (0..t as u32).flat_map(|i| yuv_textured_frame(w, h, i)).collect();
        let mut out = Vec::new();
        // A typical box: 60% of the frame, aspect 1.3, upscaled to 224.
        let crop = Crop { x: 40, y: 20, w: 260, h: 200 };
        let base = ClipParams { crop, ..ClipParams::whole_frame(w, h) };
        let hsbc = [ColorOp::Hue, ColorOp::Saturation, ColorOp::Brightness, ColorOp::Contrast];
        let cbsh = [ColorOp::Contrast, ColorOp::Brightness, ColorOp::Saturation, ColorOp::Hue];
        let jit = |order| {
            Some(Jitter { brightness: 1.3, contrast: 0.7, saturation: 1.4, hue: 0.1, order })
        };
        let cases = [
            ("crop+resize", base),
            ("crop+resize+flip", ClipParams { flip: true, ..base }),
            ("+ jitter, contrast first", ClipParams { jitter: jit(cbsh), ..base }),
            ("+ jitter, contrast last", ClipParams { jitter: jit(hsbc), ..base }),
            ("+ grayscale only", ClipParams { grayscale: true, ..base }),
            ("+ blur sigma 1 only", ClipParams { blur_sigma: Some(1.0), ..base }),
            ("+ blur sigma 2 only", ClipParams { blur_sigma: Some(2.0), ..base }),
            (
                "+ jitter + blur sigma 2",
                ClipParams { jitter: jit(hsbc), blur_sigma: Some(2.0), ..base },
            ),
            ("+ solarize only", ClipParams { solarize: true, ..base }),
        ];
        let cfg = cfg_size(224);
        let iters = 40;
        // Minimum, median and mean of per-clip wall times: the minimum is what the code
        // costs when nothing else competes for the core.
        let time = |f: &mut dyn FnMut()| {
            for _ in 0..5 {
                f();
            }
            let mut ms: Vec<f64> = (0..iters)
                .map(|_| {
                    let start = Instant::now();
                    f();
                    start.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            let mean = ms.iter().sum::<f64>() / ms.len() as f64;
            ms.sort_by(f64::total_cmp);
            format!("{:6.2} min {:6.2} median {:6.2} mean ms", ms[0], ms[ms.len() / 2], mean)
        };
        let avx2 = cfg!(target_arch = "x86_64") && std::is_x86_feature_detected!("avx2");
        println!(
            "{t} x {w}x{h} yuv420p -> {t} x 224x224 RGB, box {crop:?}, one thread, AVX2 {avx2}:"
        );
        for (name, p) in cases {
            let ms = time(&mut || augment_clip(&layout, &frames, t, &[p], &cfg, &mut out).unwrap());
            println!("  {name:<30} {ms}");
        }
        let baseline = [
            ("crop+resize, baseline (SSE2)", base),
            (
                "+ jitter + blur 2, baseline",
                ClipParams { jitter: jit(hsbc), blur_sigma: Some(2.0), ..base },
            ),
        ];
        for (name, p) in baseline {
            let mut planes = vec![0u8; 3 * t * 224 * 224];
            let mut sc = Scratch::default();
            let ms = time(&mut || {
                let (r_all, rest) = planes.split_at_mut(t * 224 * 224);
                let (g_all, b_all) = rest.split_at_mut(t * 224 * 224);
                let params = [p];
                let job = Job {
                    layout: &layout,
                    frames: &frames,
                    params: &params,
                    s: 224,
                    planes: [r_all, g_all, b_all],
                };
                run(job, &mut sc);
            });
            println!("  {name:<30} {ms}");
        }
        let mut rgb = Vec::new();
        let ms = time(&mut || via_rgb(&layout, &frames, t, &base, 224, &mut out, &mut rgb));
        println!("  {:<30} {ms}", "crop+resize via RGB frame");
        for (name, cfg) in [
            ("augment(), first view", AugmentConfig::first_view()),
            ("augment(), second view", AugmentConfig::second_view()),
            (
                "augment(), inconsistent",
                AugmentConfig { consistent: false, ..AugmentConfig::second_view() },
            ),
        ] {
            let mut r = rng(1);
            let ms = time(&mut || {
                augment(&mut r, &cfg, &layout, &frames, t, &mut out).unwrap();
            });
            println!("  {name:<30} {ms} (random draws)");
        }
    }
}
