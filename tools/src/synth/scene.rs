//! The random draw of one video ([`VideoPlan::new`]) and where its object is in each frame:
//! every choice (length, colour, size, motion parameters, background, distractors, when the
//! object is on screen) is made once here, so a frame is a pure function of its number.

use std::f32::consts::TAU;

use super::background::Layer;
use super::distractor::Distractor;
use super::raster::{hsv, luma, Rgb};
use super::rng::{mix, Rng};
use super::{ClassSpec, Motion, SynthConfig};

/// The object colours: a named hue each (jittered a little per video), so colour is a clean
/// categorical factor that is independent of the class.
const PALETTE: [(&str, f32); 8] = [
    ("red", 0.0),
    ("orange", 0.08),
    ("yellow", 0.15),
    ("green", 0.33),
    ("cyan", 0.5),
    ("blue", 0.62),
    ("purple", 0.76),
    ("magenta", 0.87),
];

/// Where the object is in a frame: centre in pixels, scale (1 = its drawn radius) and angle.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pose {
    pub x: f32,
    pub y: f32,
    pub scale: f32,
    pub angle: f32,
}

/// A pixel rectangle, `x0..x1` by `y0..y1`, clipped to the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

/// Every random choice of one video; rendering a frame is then a pure function of the
/// frame number.
#[derive(Clone, Debug)]
pub struct VideoPlan {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub frames: u32,
    pub class: ClassSpec,
    /// Index into the colour palette.
    colour_index: usize,
    pub(super) colour: Rgb,
    pub(super) outline: Rgb,
    /// Circumradius of the object in pixels at scale 1.
    pub(super) radius: f32,
    centre: (f32, f32),
    /// Oscillation or orbit amplitude in pixels, or bounce speed in pixels per second.
    amplitude: f32,
    /// Cycles (or turns) per second.
    frequency: f32,
    phase: f32,
    direction: f32,
    angle: f32,
    /// Unit direction of a bounce.
    heading: (f32, f32),
    pub(super) layers: [Layer; 2],
    /// Hue turn of the background, radians per second.
    pub(super) hue_rate: f32,
    pub(super) distractors: Vec<Distractor>,
    /// The object is drawn from `on_screen.0` up to (not including) `on_screen.1`, seconds.
    on_screen: (f32, f32),
}

impl VideoPlan {
    /// The plan of video `video` of class number `class_index`: a pure function of
    /// `cfg.seed`, the two indices and the sizes in `cfg`.
    pub fn new(cfg: &SynthConfig, class: ClassSpec, class_index: usize, video: usize) -> VideoPlan {
        let key = ((class_index as u64) << 32) | video as u64;
        let mut rng = Rng::new(mix(cfg.seed ^ mix(key.wrapping_add(0x5EED))));
        let (w, h) = (cfg.width as f32, cfg.height as f32);
        let s = w.min(h);
        let seconds = rng.range(cfg.min_seconds as f32, cfg.max_seconds as f32);
        let frames = ((seconds * cfg.fps as f32).round() as u32).max(1);
        let seconds = frames as f32 / cfg.fps as f32;

        let colour_index = rng.below(PALETTE.len());
        let hue = PALETTE[colour_index].1 + rng.range(-0.02, 0.02);
        let colour = hsv(hue, rng.range(0.65, 1.0), rng.range(0.7, 1.0));
        let outline = if luma(colour) > 0.45 { [0.05; 3] } else { [0.95; 3] };
        let radius = s * rng.range(0.1, 0.15) * cfg.object_scale;

        // The motion's extent decides where the centre may start so the object stays in view.
        let margin = |extra: f32| radius + extra + 2.0;
        let (mut amplitude, frequency) = match class.motion {
            Motion::Horizontal | Motion::Vertical => {
                (s * rng.range(0.16, 0.26), rng.range(0.4, 0.9))
            }
            Motion::Orbit => (s * rng.range(0.14, 0.22), rng.range(0.3, 0.6)),
            Motion::Zoom => (0.0, rng.range(0.4, 0.8)),
            Motion::Spin => (0.0, rng.range(0.25, 0.6)),
            Motion::Bounce => (s * rng.range(0.35, 0.7), 0.0),
        };
        let (ex, ey) = match class.motion {
            Motion::Horizontal => {
                amplitude = amplitude.min(w / 2.0 - margin(0.0));
                (margin(amplitude), margin(0.0))
            }
            Motion::Vertical => {
                amplitude = amplitude.min(h / 2.0 - margin(0.0));
                (margin(0.0), margin(amplitude))
            }
            Motion::Orbit => {
                amplitude = amplitude.min(s / 2.0 - margin(0.0));
                (margin(amplitude), margin(amplitude))
            }
            Motion::Zoom => (margin(radius * ZOOM), margin(radius * ZOOM)),
            Motion::Spin | Motion::Bounce => (margin(0.0), margin(0.0)),
        };
        let centre = (pick(&mut rng, ex, w - ex), pick(&mut rng, ey, h - ey));
        let phase = rng.range(0.0, TAU);
        let direction = rng.sign();
        let angle = rng.range(0.0, TAU);
        // Bounces run diagonally: 25 to 65 degrees off the axes, in any quadrant.
        let tilt = rng.range(25.0f32.to_radians(), 65.0f32.to_radians());
        let heading = (tilt.cos() * rng.sign(), tilt.sin() * rng.sign());

        let pan = |rng: &mut Rng| s * rng.range(0.02, 0.06);
        let layers = [
            Layer::new(cfg, seconds, pan(&mut rng), &mut rng),
            Layer::new(cfg, seconds, pan(&mut rng), &mut rng),
        ];
        let hue_rate = rng.sign() * rng.range(0.6, 1.4) / seconds;
        // Photographs keep their colours (footage does not turn its hue); drawn all the same,
        // so the rest of the video is as with procedural textures.
        let hue_rate = if cfg.textures.is_some() { 0.0 } else { hue_rate };
        let count = 1 + rng.below(2 + (seconds / 2.0) as usize);
        let mut distractors: Vec<_> =
            (0..count).map(|_| Distractor::new(w, h, seconds, &mut rng)).collect();
        // All are drawn, then some dropped, so clutter changes no other random choice.
        distractors.truncate((count as f32 * cfg.clutter).round() as usize);
        // Drawn last, so presence changes no other random choice.
        let shown = seconds * cfg.presence;
        let enter = rng.range(0.0, seconds - shown);
        VideoPlan {
            width: cfg.width,
            height: cfg.height,
            fps: cfg.fps,
            frames,
            class,
            colour_index,
            colour,
            outline,
            radius,
            centre,
            amplitude,
            frequency,
            phase,
            direction,
            angle,
            heading,
            layers,
            hue_rate,
            distractors,
            on_screen: (enter, enter + shown),
        }
    }

    /// Seconds from the start to frame `k`.
    pub fn time(&self, k: u32) -> f32 {
        k as f32 / self.fps as f32
    }

    /// Length of the video in seconds.
    pub fn seconds(&self) -> f32 {
        self.time(self.frames)
    }

    /// The factors of variation: `[("object", _), ("motion", _), ("colour", _)]`.
    pub fn factors(&self) -> [(&'static str, &'static str); 3] {
        [
            ("object", self.class.object.name()),
            ("motion", self.class.motion.name()),
            ("colour", PALETTE[self.colour_index].0),
        ]
    }

    /// The object's pose in frame `k`.
    pub fn pose(&self, k: u32) -> Pose {
        let t = self.time(k);
        let wave = (TAU * self.frequency * t + self.phase).sin();
        let (cx, cy) = self.centre;
        let still = Pose { x: cx, y: cy, scale: 1.0, angle: self.angle };
        match self.class.motion {
            Motion::Horizontal => Pose { x: cx + self.amplitude * wave, ..still },
            Motion::Vertical => Pose { y: cy + self.amplitude * wave, ..still },
            Motion::Orbit => {
                let a = self.direction * TAU * self.frequency * t + self.phase;
                Pose { x: cx + self.amplitude * a.cos(), y: cy + self.amplitude * a.sin(), ..still }
            }
            Motion::Zoom => Pose { scale: 1.0 + ZOOM * wave, ..still },
            Motion::Spin => {
                Pose { angle: self.angle + self.direction * TAU * self.frequency * t, ..still }
            }
            Motion::Bounce => {
                let lo = self.radius + 2.0;
                let (w, h) = (self.width as f32, self.height as f32);
                let d = self.amplitude * t;
                Pose {
                    x: reflect(cx + self.heading.0 * d, lo, w - lo),
                    y: reflect(cy + self.heading.1 * d, lo, h - lo),
                    ..still
                }
            }
        }
    }

    /// The pixels the object may touch in frame `k` (its outline included).
    pub fn object_box(&self, k: u32) -> Rect {
        let p = self.pose(k);
        let reach = self.radius * p.scale + OUTLINE + 1.0;
        let clip = |v: f32, max: u32| (v.max(0.0) as u32).min(max);
        Rect {
            x0: clip((p.x - reach).floor(), self.width),
            y0: clip((p.y - reach).floor(), self.height),
            x1: clip((p.x + reach).ceil() + 1.0, self.width),
            y1: clip((p.y + reach).ceil() + 1.0, self.height),
        }
    }

    /// Whether the class's object is on screen in frame `k` (always, at presence 1).
    pub fn shows_object(&self, k: u32) -> bool {
        let t = self.time(k);
        (self.on_screen.0..self.on_screen.1).contains(&t)
    }
}

/// Zoom amplitude: the object's scale swings between 1 - ZOOM and 1 + ZOOM.
const ZOOM: f32 = 0.4;
/// Width of the object's outline in pixels (keeps it visible on any background).
pub(super) const OUTLINE: f32 = 1.2;

/// A point in `[lo, hi]`, or the middle when the range is empty (a tiny frame).
fn pick(rng: &mut Rng, lo: f32, hi: f32) -> f32 {
    let u = rng.unit();
    if hi > lo {
        lo + (hi - lo) * u
    } else {
        (lo + hi) / 2.0
    }
}

/// `x` folded into `[lo, hi]` as a ball bouncing between two walls.
fn reflect(x: f32, lo: f32, hi: f32) -> f32 {
    let span = hi - lo;
    if span <= 0.0 {
        return (lo + hi) / 2.0;
    }
    let u = (x - lo).rem_euclid(2.0 * span);
    lo + if u > span { 2.0 * span - u } else { u }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{classes, Canvas};

    fn small() -> SynthConfig {
        SynthConfig {
            classes: 4,
            videos_per_class: 3,
            val_per_class: 1,
            width: 64,
            height: 64,
            min_seconds: 2.0,
            max_seconds: 2.0,
            ..SynthConfig::cpu()
        }
    }

    fn frame(plan: &VideoPlan, k: u32) -> Vec<f32> {
        let mut c = Canvas::new(plan.width, plan.height);
        plan.render(k, &mut c);
        c.rgb
    }

    fn mean_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
    }

    /// Summed |a - b| over the RGB of the pixels in `r`, per pixel, of two 64-wide frames.
    fn box_diff(a: &[f32], b: &[f32], r: Rect) -> f32 {
        let mut diff = 0.0f32;
        for y in r.y0..r.y1 {
            for x in r.x0..r.x1 {
                let i = ((y * 64 + x) * 3) as usize;
                diff += (0..3).map(|j| (a[i + j] - b[i + j]).abs()).sum::<f32>();
            }
        }
        diff / ((r.x1 - r.x0) * (r.y1 - r.y0)) as f32
    }

    #[test]
    fn a_seed_gives_the_same_pictures_and_another_seed_others() {
        let cfg = small();
        let class = classes(4).unwrap()[1];
        let a = VideoPlan::new(&cfg, class, 1, 2);
        let b = VideoPlan::new(&cfg, class, 1, 2);
        assert_eq!(frame(&a, 7), frame(&b, 7));
        let other = VideoPlan::new(&SynthConfig { seed: 1, ..cfg.clone() }, class, 1, 2);
        assert!(mean_abs_diff(&frame(&a, 7), &frame(&other, 7)) > 0.02);
        let sibling = VideoPlan::new(&cfg, class, 1, 1);
        assert!(mean_abs_diff(&frame(&a, 7), &frame(&sibling, 7)) > 0.02);
    }

    #[test]
    fn every_motion_keeps_the_object_in_the_frame_and_moves_it() {
        for object_scale in [1.0, 2.0] {
            let cfg = SynthConfig {
                classes: 36,
                min_seconds: 4.0,
                max_seconds: 4.0,
                object_scale,
                ..small()
            };
            object_stays_in_view_and_moves(&cfg);
        }
    }

    fn object_stays_in_view_and_moves(cfg: &SynthConfig) {
        for (c, class) in classes(36).unwrap().into_iter().enumerate() {
            for v in 0..4 {
                let plan = VideoPlan::new(cfg, class, c, v);
                let r = plan.radius;
                for k in 0..plan.frames {
                    let p = plan.pose(k);
                    let reach = r * p.scale;
                    assert!(
                        p.x - reach >= 0.0
                            && p.x + reach <= 64.0
                            && p.y - reach >= 0.0
                            && p.y + reach <= 64.0,
                        "{class} video {v} frame {k}: {p:?} radius {r} leaves the frame"
                    );
                }
                // Within one second its rim travels (moves, turns or grows) by a good part
                // of its radius, summed frame to frame; a still object scores 0.
                let path: f32 = (0..25)
                    .map(|k| {
                        let (a, b) = (plan.pose(k), plan.pose(k + 1));
                        (a.x - b.x).hypot(a.y - b.y)
                            + (a.scale - b.scale).abs() * r
                            + (a.angle - b.angle).abs() * r
                    })
                    .sum();
                assert!(path > 0.3 * r, "{class} video {v}: moves {path} px in 1 s, radius {r}");
            }
        }
    }

    #[test]
    fn clutter_flattens_the_background_and_drops_distractors_but_not_the_object() {
        let busy = SynthConfig { min_seconds: 6.0, max_seconds: 6.0, ..small() };
        let calm = SynthConfig { clutter: 0.0, ..busy.clone() };
        // Spread of the background around its mean, away from the object.
        let spread = |plan: &VideoPlan, k: u32| {
            let (f, r) = (frame(plan, k), plan.object_box(k));
            let outside: Vec<f32> = (0..64 * 64)
                .filter(|i| {
                    let (x, y) = (i % 64, i / 64);
                    !(r.x0..r.x1).contains(&x) || !(r.y0..r.y1).contains(&y)
                })
                .map(|i| f[i as usize * 3..i as usize * 3 + 3].iter().sum::<f32>() / 3.0)
                .collect();
            let mean = outside.iter().sum::<f32>() / outside.len() as f32;
            outside.iter().map(|v| (v - mean).abs()).sum::<f32>() / outside.len() as f32
        };
        for (c, class) in classes(4).unwrap().into_iter().enumerate() {
            let (b, q) = (VideoPlan::new(&busy, class, c, 0), VideoPlan::new(&calm, class, c, 0));
            assert!(!b.distractors.is_empty() && q.distractors.is_empty(), "{class}");
            for k in [0, 40, 80] {
                assert_eq!(b.pose(k), q.pose(k), "{class} frame {k}: clutter moved the object");
                let (sb, sq) = (spread(&b, k), spread(&q, k));
                assert!(sq < 0.5 * sb, "{class} frame {k}: spread {sq} calm, {sb} busy");
            }
        }
        let bad = |clutter, object_scale| {
            SynthConfig { clutter, object_scale, ..small() }.validate().is_err()
        };
        assert!(bad(1.5, 1.0) && bad(-0.1, 1.0) && bad(1.0, 0.0) && bad(1.0, 2.5));
    }

    #[test]
    fn presence_shows_the_object_for_one_stretch_of_that_fraction_and_changes_nothing_else() {
        let full = SynthConfig { min_seconds: 4.0, max_seconds: 4.0, ..small() };
        let half = SynthConfig { presence: 0.5, ..full.clone() };
        for (c, class) in classes(4).unwrap().into_iter().enumerate() {
            let (f, h) = (VideoPlan::new(&full, class, c, 0), VideoPlan::new(&half, class, c, 0));
            assert!((0..f.frames).all(|k| f.shows_object(k)), "{class}: presence 1 hides it");
            let shown: Vec<u32> = (0..h.frames).filter(|&k| h.shows_object(k)).collect();
            let (first, last) = (shown[0], shown[shown.len() - 1]);
            assert_eq!(shown.len() as u32, last - first + 1, "{class}: {shown:?} has gaps");
            assert!(shown.len().abs_diff(50) <= 1, "{class}: {} of 100 frames", shown.len());
            for k in [first, (first + last) / 2, last] {
                assert_eq!(frame(&h, k), frame(&f, k), "{class} frame {k}: the rest changed");
            }
            // Hidden: the object's pixels show the background instead.
            let k = if first > 0 { 0 } else { h.frames - 1 };
            let per_px = box_diff(&frame(&h, k), &frame(&f, k), f.object_box(k));
            assert!(per_px > 0.05, "{class} frame {k}: object region differs by {per_px}");
        }
        for bad in [0.0, -0.5, 1.5] {
            assert!(SynthConfig { presence: bad, ..small() }.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_object_region_changes_between_nearby_frames_for_every_motion() {
        let cfg = SynthConfig { classes: 36, ..small() };
        for (c, class) in classes(36).unwrap().into_iter().enumerate() {
            let plan = VideoPlan::new(&cfg, class, c, 0);
            // The largest change over three pairs 0.2 s apart (one pair can straddle the turn
            // of an oscillation and show the object where it was).
            let per_px = [10, 20, 30]
                .map(|k| box_diff(&frame(&plan, k), &frame(&plan, k + 5), plan.object_box(k)))
                .into_iter()
                .fold(0.0, f32::max);
            assert!(per_px > 0.05, "{class}: object region changes by {per_px} per pixel");
        }
    }

    #[test]
    fn the_ends_of_a_video_differ_more_than_neighbouring_frames() {
        let cfg = SynthConfig { min_seconds: 6.0, max_seconds: 6.0, ..small() };
        for (c, class) in classes(4).unwrap().into_iter().enumerate() {
            let plan = VideoPlan::new(&cfg, class, c, 0);
            let last = plan.frames - 1;
            let near = mean_abs_diff(&frame(&plan, 0), &frame(&plan, 1));
            let far = mean_abs_diff(&frame(&plan, 0), &frame(&plan, last));
            assert!(far > 4.0 * near && far > 0.05, "{class}: far {far}, near {near}");
        }
    }
}
