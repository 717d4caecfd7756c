//! Drawing a clip's random parameters ([`ClipParams`]) as the reference draws them: TF's
//! `sample_distorted_bounding_box` crop ([`sample_crop`]), flip, colour jitter factors and
//! their order, grayscale, blur σ and solarization; and the evaluation's centre crop.

use rand::{Rng, RngExt as _};

use super::{
    AugmentConfig, ClipParams, ColorOp, Crop, CropMode, Jitter, MAX_ATTEMPTS, MIN_OBJECT_COVERED,
};

pub(super) fn chance<R: Rng + ?Sized>(rng: &mut R, p: f64) -> bool {
    // No draw for p = 0, so evaluation consumes no randomness.
    p > 0.0 && rng.random::<f64>() < p
}

pub(super) fn uniform<R: Rng + ?Sized>(rng: &mut R, lo: f64, hi: f64) -> f64 {
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
pub(super) fn random_crop<R: Rng + ?Sized>(
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
