//! Crop-resize and `yuv420p` to RGB on the device, from the packed crops: the host's
//! `resample_frame` with its own tap tables (the flip is in them), as two gathers for the
//! whole batch, whatever the crop sizes.
//!
//! Horizontal pass: every packed row (each channel's rows of every frame of every clip) is
//! resampled to `S` columns by one gather of its two taps per column from the byte buffer
//! (`int32` indices: the row's offset plus its table's tap offsets). Vertical pass: every
//! output row is the interpolation of two of those rows, one row gather each. Both
//! interpolate as the host does, `a + (b - a) * f` on `f32` samples, horizontal first.

use super::pack::BatchPlan;
use super::{floats, lerp, levels, longs, on_frames};
use crate::augment::resize::{K_BU, K_GU, K_GV, K_RV, K_Y};
use tch::{Kind, Tensor};

/// The batch's frames resized, in RGB and rounded to whole levels: `f32 [3, N, S, S]`,
/// frames clip-major.
pub(super) fn resample(data: &Tensor, plan: &BatchPlan) -> Tensor {
    let s = plan.out_size as i64;
    let frames = (plan.clips * plan.frames) as i64;
    let pixels = data.narrow(0, 0, plan.pixels as i64);
    let row_start = longs(data, plan.row_start).to_kind(Kind::Int).unsqueeze(1);
    let row_table = longs(data, plan.row_table);
    // Per row and output column: the two taps' byte offsets and the second's weight.
    let taps = |table| {
        let offsets = longs(data, table).to_kind(Kind::Int).view([-1, s]);
        (&row_start + offsets.index_select(0, &row_table)).view([-1])
    };
    let fx = floats(data, plan.fx).view([-1, s]).index_select(0, &row_table);
    let sample = |index: &Tensor| pixels.index_select(0, index).to_kind(Kind::Float).view([-1, s]);
    let rows = lerp(&sample(&taps(plan.x0)), &sample(&taps(plan.x1)), &fx);
    let fy = floats(data, plan.fy).unsqueeze(1);
    let pick = |table| rows.index_select(0, &longs(data, table));
    let mut x = lerp(&pick(plan.y0), &pick(plan.y1), &fy).view([3, frames, s, s]);
    on_frames(&mut x, data, &plan.yuv, |yuv, _| yuv_to_rgb(yuv));
    levels(&x)
}

/// BT.601 limited range, the host's constants and order of operations, on `[3, n, S, S]`
/// resampled Y, U, V; not rounded.
fn yuv_to_rgb(yuv: &Tensor) -> Tensor {
    let (y, u, v) = (yuv.get(0), yuv.get(1), yuv.get(2));
    let c = (y - 16.0) * f64::from(K_Y);
    let (d, e) = (u - 128.0, v - 128.0);
    let r = &c + &e * f64::from(K_RV);
    let g = (&c - &d * f64::from(K_GU)) - &e * f64::from(K_GV);
    let b = &c + &d * f64::from(K_BU);
    Tensor::stack(&[r, g, b], 0)
}
