//! Colour jitter and grayscale on the device: the host's `apply_op`, `hue_shift` and
//! grayscale written as tensor ops on `[3, n, S, S]` frames with per-frame factors.
//!
//! Each clip runs the four jitter ops in its own drawn order, so the steps go position by
//! position: at each position, every op acts on the frames whose order puts it there (a
//! frame list per step, from the host). Contrast takes its mean when it runs, over the
//! frames of each group (the clip in consistent mode, the frame in the ablation), so the
//! ops drawn before it are in the mean as in the host's `contrast_means`.

use super::pack::{BatchPlan, Groups, BRIGHTNESS, CONTRAST, HUE, SATURATION};
use super::{doubles, levels, longs, on_frames, per_frame};
use crate::augment::colour::GRAY;
use crate::augment::ColorOp;
use tch::{Kind, Tensor};

/// The jitter steps, then grayscale, then rounding to whole levels, in place on
/// `x` (`f32 [3, N, S, S]`).
pub(super) fn jitter(x: &mut Tensor, data: &Tensor, plan: &BatchPlan) {
    for step in &plan.colour {
        on_frames(x, data, &step.frames, |frames, index| {
            let factor = |row| per_frame(data, plan.factors, 4, row, index);
            match (step.op, step.groups) {
                (ColorOp::Brightness, _) => (frames * factor(BRIGHTNESS)).clamp(0.0, 255.0),
                (ColorOp::Contrast, Some(groups)) => {
                    let mean = group_means(frames, data, &groups);
                    ((frames - &mean) * factor(CONTRAST) + &mean).clamp(0.0, 255.0)
                }
                (ColorOp::Contrast, None) => unreachable!("contrast steps carry their groups"),
                (ColorOp::Saturation, _) => saturate(frames, &factor(SATURATION)),
                (ColorOp::Hue, _) => hue_shift(frames, &factor(HUE)),
            }
        });
    }
    on_frames(x, data, &plan.grayscale, |frames, _| {
        let (r, g, b) = (frames.get(0), frames.get(1), frames.get(2));
        let luma = r * f64::from(GRAY[0]) + g * f64::from(GRAY[1]) + b * f64::from(GRAY[2]);
        luma.unsqueeze(0).repeat([3, 1, 1, 1])
    });
    if !plan.colour.is_empty() || !plan.grayscale.is_empty() {
        *x = levels(x);
    }
}

/// Per-channel means of each group's frames, `[3, n, 1, 1]` for the frames `frames`
/// (`[3, n, S, S]`): sums in `f64` per frame, then per group by a product with the 0/1
/// membership matrix (a fixed order of additions on every device, where a scatter-add on
/// CUDA adds in whatever order its atomics land).
fn group_means(frames: &Tensor, data: &Tensor, groups: &Groups) -> Tensor {
    let of_frame = longs(data, groups.of_frame);
    let pixels = doubles(data, groups.pixels);
    let sums = frames.sum_dim_intlist([2i64, 3].as_slice(), false, Kind::Double);
    let members = of_frame.one_hot(pixels.size()[0]).to_kind(Kind::Double);
    let per_group = sums.matmul(&members);
    (per_group / pixels).to_kind(Kind::Float).index_select(1, &of_frame).view([3, -1, 1, 1])
}

/// `tf.image.adjust_saturation` as the host computes it: `c' = V - k (V - c)` with
/// `k = min(f, V / (V - min))`, 1 for grey pixels.
fn saturate(frames: &Tensor, f: &Tensor) -> Tensor {
    let (r, g, b) = (frames.get(0), frames.get(1), frames.get(2));
    let v = r.maximum(&g).maximum(&b);
    let chroma = &v - r.minimum(&g).minimum(&b);
    let one = Tensor::ones([], (Kind::Float, frames.device()));
    let k = f.minimum(&(&v / &chroma)).where_self(&chroma.gt(0.0), &one);
    let channel = |c: &Tensor| (&v - &k * (&v - c)).clamp(0.0, 255.0);
    Tensor::stack(&[channel(&r), channel(&g), channel(&b)], 0)
}

/// `tf.image.adjust_hue` as the host's `hue_shift` computes it, with the shift in sixths of
/// a turn in `[0, 6)`.
fn hue_shift(frames: &Tensor, shift: &Tensor) -> Tensor {
    let (r, g, b) = (frames.get(0), frames.get(1), frames.get(2));
    let v = r.maximum(&g).maximum(&b);
    let chroma = &v - r.minimum(&g).minimum(&b);
    let zero = Tensor::zeros([], (Kind::Float, frames.device()));
    let inv = chroma.reciprocal().where_self(&chroma.gt(0.0), &zero);
    // Hue in [-1, 5), by the sector of the largest channel, red first.
    let from_b = (&r - &g) * &inv + 4.0;
    let from_g = ((&b - &r) * &inv + 2.0).where_self(&g.eq_tensor(&v), &from_b);
    let h = ((&g - &b) * &inv).where_self(&r.eq_tensor(&v), &from_g) + shift;
    let h = (&h - 6.0).where_self(&h.ge(6.0), &h);
    let h = (&h + 6.0).where_self(&h.lt(0.0), &h);
    let channel = |n: f64| {
        let k = &h + n;
        let k = (&k - 6.0).where_self(&k.ge(6.0), &k);
        let ramp = k.minimum(&(4f64 - &k)).clamp(0.0, 1.0);
        (&v - &chroma * ramp).clamp(0.0, 255.0)
    };
    Tensor::stack(&[channel(5.0), channel(3.0), channel(1.0)], 0)
}
