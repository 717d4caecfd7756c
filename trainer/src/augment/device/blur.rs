//! Gaussian blur and solarization on the device, as the host's `BlurScratch` and `finish` do
//! them.
//!
//! The blur is separable with zero padding, horizontal then vertical without rounding in
//! between, each pass `centre · x` plus, tap pair by tap pair, `w · (right + left)`: the
//! host's sums in the host's order. Each frame has its own taps (the host's kept taps of
//! `blur_kernel`); a frame with fewer taps than the widest has zero weights for the rest,
//! which add exactly nothing.

use super::pack::BatchPlan;
use super::{floats, levels, on_frames};
use tch::Tensor;

/// Blurs the frames that drew a blur, rounding to whole levels, in place on `x`.
pub(super) fn blur(x: &mut Tensor, data: &Tensor, plan: &BatchPlan) {
    let radius = plan.blur_radius as i64;
    let s = plan.out_size as i64;
    on_frames(x, data, &plan.blur, |frames, _| {
        let taps = floats(data, plan.blur_taps).view([-1, radius + 1]);
        let weight = |k: i64| taps.select(1, k).view([-1, 1, 1]);
        // One pass along `dim` (3: rows, 2: columns) of `[3, n, S, S]`.
        let pass = |img: &Tensor, dim: i64| {
            let pad = if dim == 3 { vec![radius, radius] } else { vec![0, 0, radius, radius] };
            let padded = img.constant_pad_nd(pad);
            let mut acc = img * weight(0);
            for k in 1..=radius {
                // In place, one temporary per tap; each op still rounds once, as the host's.
                let mut pair =
                    padded.narrow(dim, radius + k, s) + padded.narrow(dim, radius - k, s);
                pair *= weight(k);
                acc += pair;
            }
            acc
        };
        levels(&pass(&pass(frames, 3), 2))
    });
}

/// TF's solarization on whole levels: `v >= 128` becomes `255 - v`.
pub(super) fn solarize(x: &mut Tensor, data: &Tensor, plan: &BatchPlan) {
    on_frames(x, data, &plan.solarize, |frames: &Tensor, _| {
        (255f64 - frames).where_self(&frames.ge(128.0), frames)
    });
}
