//! Temporal interval sampling (CVRL step 1) and evaluation clip placement.
//!
//! Two clips are cut from each video. The gap `δ` between their start frames is drawn from
//! a distribution over `[0, M)` where `M = L - span` leaves room for both clips (`L` stored
//! frames, `span` frames covered by one clip); the first start is uniform in `[0, M - δ)`,
//! the second at `+δ`, and the two are returned in random order. This is the reference
//! implementation's `sample_ssl_sequence` (TF Model Garden, `video_ssl_preprocess_ops.py`),
//! which measures everything in stored frames. Its default density is linear decreasing,
//! `2(M - δ)/M²`, so the mean gap is `M/3`.
//!
//! Clips are defined in time: `stride` is counted in frames of a video at `base_fps`
//! (default 25); a video stored at another rate steps `stride * fps / base_fps` stored frames
//! per clip frame, rounded to the nearest frame, so videos of different frame rates cover
//! the same time span. With `base_fps` equal to the stored rate this is the reference's
//! integer stride.
//!
//! Short videos (`L <= span`, the reference's rule): there is no room for a gap, so both
//! starts are drawn independently and uniformly from `[0, L)` and frame indices wrap around
//! the end of the video (the clip loops). A video of exactly one clip (`L == span + 0`)
//! also loops; `L == span + 1` gives `M = 1` and `δ = 0`.
//!
//! Reproducibility: [`sample_rng`] gives each sample its own generator, seeded from
//! `(seed, epoch, position)`, so a sample's clips depend on nothing else (not on worker
//! count, timing or process).

use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, RngExt as _, SeedableRng};
use std::fmt;
use std::str::FromStr;

/// SplitMix64's output function: turns structured seeds (seed, epoch, position) into
/// independent-looking ones.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The generator of the sample at `position` of `epoch` for `seed`: the one the trainer's
/// loader gives each slot of a batch.
pub fn sample_rng(seed: u64, epoch: u64, position: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(mix(seed ^ mix(epoch ^ mix(position))))
}

/// The distribution of the gap between the two clips' starts, on `[0, 1)` as a fraction of `M`.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum IntervalDistribution {
    /// Density `2(1 - x)`: close clips are likelier (the paper's best, the default).
    #[default]
    Decreasing,
    /// Density 1.
    Uniform,
    /// Density `2x`: distant clips are likelier.
    Increasing,
    /// The reference's family: density `∝ 1 - x^p`, `p > 0` (`p = 1` is `Decreasing`;
    /// larger `p` flattens it towards uniform).
    Power(f64),
    /// Gap 0: both clips start at the same frame and differ only by their spatial
    /// augmentation (the paper's spatial-only ablation; not a CVRL setting).
    Same,
}

impl IntervalDistribution {
    /// The cumulative distribution function on `[0, 1]`.
    pub fn cdf(self, x: f64) -> f64 {
        let x = x.clamp(0.0, 1.0);
        match self {
            IntervalDistribution::Decreasing => 2.0 * x - x * x,
            IntervalDistribution::Uniform => x,
            IntervalDistribution::Increasing => x * x,
            IntervalDistribution::Power(p) => (x * (p + 1.0) - x.powf(p + 1.0)) / p,
            IntervalDistribution::Same => 1.0,
        }
    }

    /// Draws a fraction in `[0, 1)` by inverting the CDF at `u ~ U[0, 1)`.
    pub fn inverse_cdf(self, u: f64) -> f64 {
        let x = match self {
            IntervalDistribution::Decreasing => 1.0 - (1.0 - u).sqrt(),
            IntervalDistribution::Uniform => u,
            IntervalDistribution::Increasing => u.sqrt(),
            IntervalDistribution::Same => 0.0,
            IntervalDistribution::Power(_) => {
                // No closed form: bisection, as the reference does (50 steps: below f64 precision).
                let (mut lo, mut hi) = (0.0, 1.0);
                for _ in 0..50 {
                    let mid = 0.5 * (lo + hi);
                    if self.cdf(mid) < u {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                0.5 * (lo + hi)
            }
        };
        x.clamp(0.0, 1.0 - f64::EPSILON)
    }
}

impl FromStr for IntervalDistribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "decreasing" => Ok(IntervalDistribution::Decreasing),
            "uniform" => Ok(IntervalDistribution::Uniform),
            "increasing" => Ok(IntervalDistribution::Increasing),
            "same" => Ok(IntervalDistribution::Same),
            other => {
                let p = other.strip_prefix("power:").and_then(|p| p.parse::<f64>().ok());
                match p {
                    Some(p) if p > 0.0 && p.is_finite() => Ok(IntervalDistribution::Power(p)),
                    _ => Err(format!(
                        "{other:?}: expected decreasing, uniform, increasing, power:P with P > 0, or same"
                    )),
                }
            }
        }
    }
}

impl fmt::Display for IntervalDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntervalDistribution::Decreasing => f.write_str("decreasing"),
            IntervalDistribution::Uniform => f.write_str("uniform"),
            IntervalDistribution::Increasing => f.write_str("increasing"),
            IntervalDistribution::Power(p) => write!(f, "power:{p}"),
            IntervalDistribution::Same => f.write_str("same"),
        }
    }
}

/// The shape of one clip: `frames` frames, `stride` frames apart at `base_fps`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipSpec {
    pub frames: u32,
    pub stride: u32,
    pub base_fps: f64,
}

impl Default for ClipSpec {
    /// The reference: 16 frames at stride 2.
    fn default() -> Self {
        ClipSpec { frames: 16, stride: 2, base_fps: 25.0 }
    }
}

impl ClipSpec {
    /// Stored frames between consecutive clip frames for a video at `fps` (at least 1).
    pub fn step(&self, fps: f64) -> f64 {
        let fps = if fps.is_finite() && fps > 0.0 { fps } else { self.base_fps };
        (f64::from(self.stride) * fps / self.base_fps).max(1.0)
    }

    /// Stored frames one clip covers, first to last inclusive.
    pub fn span(&self, fps: f64) -> u32 {
        (f64::from(self.frames.saturating_sub(1)) * self.step(fps)).round() as u32 + 1
    }

    /// The stored frame indices of a clip starting at `start` in a video of `len` frames at
    /// `fps`; indices past the end wrap around (short videos loop).
    pub fn indices(&self, start: u32, len: u32, fps: f64, out: &mut Vec<u32>) {
        out.clear();
        let step = self.step(fps);
        let len = len.max(1);
        out.extend((0..self.frames).map(|k| (start + (f64::from(k) * step).round() as u32) % len));
    }
}

/// The start frames of a positive pair of clips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairStarts {
    pub first: u32,
    pub second: u32,
}

/// Draws the two clip starts of one video of `len` stored frames at `fps` (CVRL step 1).
pub fn sample_pair<R: Rng + ?Sized>(
    rng: &mut R,
    dist: IntervalDistribution,
    clip: &ClipSpec,
    len: u32,
    fps: f64,
) -> PairStarts {
    let len = len.max(1);
    let span = clip.span(fps);
    if len <= span {
        let first = rng.random_range(0..len);
        let second =
            if dist == IntervalDistribution::Same { first } else { rng.random_range(0..len) };
        return PairStarts { first, second };
    }
    let max_offset = len - span;
    let delta = ((dist.inverse_cdf(rng.random::<f64>()) * f64::from(max_offset)) as u32)
        .min(max_offset - 1);
    let first = rng.random_range(0..max_offset - delta);
    let (a, b) = (first, first + delta);
    if rng.random::<bool>() {
        PairStarts { first: a, second: b }
    } else {
        PairStarts { first: b, second: a }
    }
}

/// One clip start uniform over the video (training a linear classifier).
pub fn sample_single<R: Rng + ?Sized>(rng: &mut R, clip: &ClipSpec, len: u32, fps: f64) -> u32 {
    let room = len.max(1).saturating_sub(clip.span(fps)) + 1;
    rng.random_range(0..room)
}

/// `k` clip starts evenly spaced from the first to the last possible start (test-time
/// views; the reference uses 10 of them).
pub fn linspace_starts(clip: &ClipSpec, len: u32, fps: f64, k: u32) -> Vec<u32> {
    let last = len.max(1).saturating_sub(clip.span(fps));
    match k {
        0 => Vec::new(),
        1 => vec![last / 2],
        _ => (0..k)
            .map(|i| ((f64::from(i) * f64::from(last)) / f64::from(k - 1)).round() as u32)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> Xoshiro256PlusPlus {
        Xoshiro256PlusPlus::seed_from_u64(20210619)
    }

    /// Largest gap between the empirical CDF of `xs` (fractions in [0,1)) and `dist`'s CDF.
    fn ks_statistic(mut xs: Vec<f64>, dist: IntervalDistribution) -> f64 {
        xs.sort_by(f64::total_cmp);
        let n = xs.len() as f64;
        xs.iter()
            .enumerate()
            .map(|(i, &x)| {
                let f = dist.cdf(x);
                (f - i as f64 / n).abs().max((f - (i + 1) as f64 / n).abs())
            })
            .fold(0.0, f64::max)
    }

    fn gaps(dist: IntervalDistribution, len: u32, n: usize) -> Vec<u32> {
        let clip = ClipSpec { base_fps: 25.0, ..ClipSpec::default() };
        let mut r = rng();
        (0..n)
            .map(|_| {
                let p = sample_pair(&mut r, dist, &clip, len, 25.0);
                p.first.abs_diff(p.second)
            })
            .collect()
    }

    #[test]
    fn gaps_follow_each_distribution_by_kolmogorov_smirnov() {
        // M = 10031 - 31 = 10000: fine enough that flooring to frames is negligible.
        let n = 20_000;
        let critical = 1.95 / (n as f64).sqrt(); // alpha = 0.001
        let all = [
            IntervalDistribution::Decreasing,
            IntervalDistribution::Uniform,
            IntervalDistribution::Increasing,
            IntervalDistribution::Power(3.0),
        ];
        for dist in all {
            let xs: Vec<f64> = gaps(dist, 10_031, n)
                .into_iter()
                .map(|g| (f64::from(g) + 0.5) / 10_000.0)
                .collect();
            let d = ks_statistic(xs.clone(), dist);
            assert!(d < critical, "{dist}: KS statistic {d:.4} >= {critical:.4}");
            // And the test has power: the same draws are far from another distribution.
            let other = if dist == IntervalDistribution::Uniform {
                IntervalDistribution::Decreasing
            } else {
                IntervalDistribution::Uniform
            };
            assert!(ks_statistic(xs, other) > 5.0 * critical, "{dist} draws also fit {other}");
        }
    }

    #[test]
    fn the_default_gap_has_the_reference_mean_of_a_third_of_the_room() {
        // The reference's own check: L = 250 frames, M = 220, mean gap 73.
        let g = gaps(IntervalDistribution::Decreasing, 250, 20_000);
        let mean = g.iter().map(|&x| f64::from(x)).sum::<f64>() / g.len() as f64;
        assert!((mean - 220.0 / 3.0).abs() < 1.5, "mean gap {mean}");
        assert!(g.iter().all(|&x| x < 220));
    }

    #[test]
    fn power_one_is_the_decreasing_line() {
        for u in [0.0, 0.1, 0.5, 0.9, 0.999] {
            let (a, b) = (
                IntervalDistribution::Power(1.0).inverse_cdf(u),
                IntervalDistribution::Decreasing.inverse_cdf(u),
            );
            assert!((a - b).abs() < 1e-9, "u={u}: {a} vs {b}");
        }
    }

    #[test]
    fn both_clips_always_fit_and_their_frames_stay_in_the_video() {
        let clip = ClipSpec::default();
        let mut r = rng();
        let mut idx = Vec::new();
        for len in [1u32, 2, 15, 30, 31, 32, 33, 100, 1000] {
            for _ in 0..500 {
                let p = sample_pair(&mut r, IntervalDistribution::Decreasing, &clip, len, 25.0);
                for s in [p.first, p.second] {
                    assert!(s < len, "start {s} in a video of {len}");
                    clip.indices(s, len, 25.0, &mut idx);
                    assert_eq!(idx.len(), 16);
                    assert!(idx.iter().all(|&i| i < len));
                    if len > clip.span(25.0) {
                        assert!(
                            idx.windows(2).all(|w| w[1] == w[0] + 2),
                            "no wrap when the clip fits: {idx:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_video_of_one_clip_plus_one_frame_gives_identical_starts_and_shorter_ones_loop() {
        let clip = ClipSpec::default();
        let mut r = rng();
        let p = sample_pair(&mut r, IntervalDistribution::Decreasing, &clip, 32, 25.0);
        assert_eq!(p, PairStarts { first: 0, second: 0 });
        let mut idx = Vec::new();
        clip.indices(10, 20, 25.0, &mut idx);
        assert_eq!(&idx[..6], &[10, 12, 14, 16, 18, 0]);
    }

    #[test]
    fn clips_cover_the_same_time_at_any_frame_rate() {
        let clip = ClipSpec::default(); // 16 frames, stride 2 at 25 fps: 1.2 s
        for fps in [12.5, 25.0, 30.0, 50.0, 60.0] {
            let seconds = f64::from(clip.span(fps) - 1) / fps;
            assert!((seconds - 1.2).abs() <= 0.5 / fps, "{fps} fps: {seconds} s");
        }
        assert_eq!(clip.step(5.0), 1.0, "never less than one stored frame per clip frame");
    }

    #[test]
    fn linspace_views_reach_both_ends() {
        let clip = ClipSpec::default();
        assert_eq!(linspace_starts(&clip, 131, 25.0, 5), vec![0, 25, 50, 75, 100]);
        assert_eq!(linspace_starts(&clip, 10, 25.0, 3), vec![0, 0, 0]);
        let mut r = rng();
        assert!((0..100).all(|_| sample_single(&mut r, &clip, 40, 25.0) <= 9));
    }

    #[test]
    fn same_gives_one_start_for_both_clips_at_any_length() {
        let clip = ClipSpec::default();
        let mut r = rng();
        let starts: Vec<PairStarts> = [5u32, 40, 400]
            .iter()
            .flat_map(|&len| {
                (0..200)
                    .map(|_| sample_pair(&mut r, IntervalDistribution::Same, &clip, len, 25.0))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(starts.iter().all(|p| p.first == p.second));
        assert!(starts.iter().any(|p| p.first > 0), "the start itself is still random");
        assert_eq!("same".parse::<IntervalDistribution>(), Ok(IntervalDistribution::Same));
    }

    #[test]
    fn each_sample_has_its_own_generator_that_repeats_for_its_seed_epoch_and_position() {
        let draw = |s, e, p| sample_rng(s, e, p).random::<u64>();
        assert_eq!(draw(3, 1, 7), draw(3, 1, 7));
        let others = [draw(4, 1, 7), draw(3, 2, 7), draw(3, 1, 8), draw(1, 3, 7), draw(7, 1, 3)];
        assert!(others.iter().all(|&x| x != draw(3, 1, 7)), "{others:?}");
        // SplitMix64's published first output for state 0 (the increment added once).
        assert_eq!(mix(0), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn distributions_parse_from_the_command_line() {
        assert_eq!(
            "power:2.5".parse::<IntervalDistribution>(),
            Ok(IntervalDistribution::Power(2.5))
        );
        assert_eq!(
            "decreasing".parse::<IntervalDistribution>(),
            Ok(IntervalDistribution::Decreasing)
        );
        assert!("power:-1".parse::<IntervalDistribution>().is_err());
        assert!("sideways".parse::<IntervalDistribution>().is_err());
    }
}
