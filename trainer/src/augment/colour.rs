//! Colour: the four jitter ops in their drawn order (brightness, contrast around the
//! clip's mean, HSV saturation and hue as TF computes them), grayscale with TF's weights,
//! on blocks of `f32` pixels so each loop vectorises.

use super::resize::{max, min, to_u8};
use super::{ClipParams, ColorOp, Jitter};

/// Pixels per colour block: three `f32` blocks stay in L1 and each op's loop is long
/// enough to vectorise.
pub(super) const BLOCK: usize = 512;

/// TF's `rgb_to_grayscale` weights (ITU-R 601 luma, as TF rounds them).
pub(super) const GRAY: [f32; 3] = [0.2989, 0.5870, 0.1140];

/// Colour jitter then grayscale, as drawn in `p`, over three planes of equal length.
#[inline(always)]
pub(super) fn colour(planes: &mut [&mut [u8]; 3], p: &ClipParams) {
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
pub(super) fn contrast_means(planes: &[&mut [u8]; 3], j: &Jitter) -> [f32; 3] {
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
pub(super) fn clip(v: f32) -> f32 {
    v.clamp(0.0, 255.0)
}

/// One jitter op on a block of pixels in `[0, 255]`, clipped after, as TF clips to `[0, 1]`.
#[inline(always)]
pub(super) fn apply_op(
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
pub(super) fn hue_shift(turns: f32, r: &mut [f32], g: &mut [f32], b: &mut [f32]) {
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
