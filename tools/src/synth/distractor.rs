//! Distractors: small bars and blobs that cross the frame in straight lines, never in a
//! class's shape, so that what moves is not always the class's object.

use std::f32::consts::TAU;

use super::raster::{coverage, hsv, sd_box, Canvas, Rgb};
use super::rng::Rng;

/// A small shape crossing the frame in a straight line: it enters at one edge and leaves
/// at another while the video runs.
#[derive(Clone, Debug)]
pub(super) struct Distractor {
    /// Half length and half width in pixels (an elongated blob or bar, never a class shape).
    half: (f32, f32),
    bar: bool,
    angle: f32,
    colour: Rgb,
    from: (f32, f32),
    velocity: (f32, f32),
    t0: f32,
    t1: f32,
}

impl Distractor {
    pub(super) fn new(w: f32, h: f32, seconds: f32, rng: &mut Rng) -> Distractor {
        let s = w.min(h);
        let len = s * rng.range(0.04, 0.08);
        let half = (len, len * rng.range(0.3, 0.5));
        let pad = len + 2.0;
        // Entry on one edge, exit on the opposite one.
        let (a, b) = (rng.unit(), rng.unit());
        let (from, to) = match rng.below(4) {
            0 => ((-pad, a * h), (w + pad, b * h)),
            1 => ((w + pad, a * h), (-pad, b * h)),
            2 => ((a * w, -pad), (b * w, h + pad)),
            _ => ((a * w, h + pad), (b * w, -pad)),
        };
        let dist = ((to.0 - from.0).powi(2) + (to.1 - from.1).powi(2)).sqrt();
        let duration = dist / (s * rng.range(0.25, 0.6));
        let t0 = rng.range(-0.5 * duration, seconds - 0.5 * duration);
        Distractor {
            half,
            bar: rng.below(2) == 0,
            angle: rng.range(0.0, TAU),
            colour: hsv(rng.unit(), rng.range(0.0, 0.6), rng.range(0.2, 1.0)),
            from,
            velocity: ((to.0 - from.0) / duration, (to.1 - from.1) / duration),
            t0,
            t1: t0 + duration,
        }
    }

    fn centre(&self, t: f32) -> Option<(f32, f32)> {
        (self.t0..self.t1).contains(&t).then(|| {
            let dt = t - self.t0;
            (self.from.0 + self.velocity.0 * dt, self.from.1 + self.velocity.1 * dt)
        })
    }

    pub(super) fn draw(&self, t: f32, canvas: &mut Canvas) {
        let Some((cx, cy)) = self.centre(t) else { return };
        let (sin, cos) = self.angle.sin_cos();
        let (hx, hy) = self.half;
        let (bar, colour) = (self.bar, self.colour);
        canvas.paint(cx, cy, hx + 1.0, |dx, dy| {
            let (u, v) = (dx * cos + dy * sin, dy * cos - dx * sin);
            let d = if bar {
                sd_box(u, v, hx - 1.0, hy - 1.0) - 1.0
            } else {
                // An ellipse's distance, scaled from the unit circle: close enough for edges.
                ((u / hx).powi(2) + (v / hy).powi(2)).sqrt().mul_add(hy, -hy)
            };
            Some((coverage(d), colour))
        });
    }
}
