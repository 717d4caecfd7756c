//! The learning-rate schedule: linear warm-up from 0, then cosine decay to `final_lr`, as a
//! pure function of the step ([`LrSchedule::lr_at`]), and the conversions from the paper's
//! units (epochs, a learning rate per 1024 videos) to steps and a learning rate.
//!
//! The reference (cvrl.md §5) trains K600 for 200 epochs at batch 1024 with lr 0.32, warms up
//! linearly from 0 over 5 epochs and then decays with a cosine. Epochs become steps with
//! [`steps_per_epoch`] (`videos / batch`, the last partial batch dropped, as the loader
//! does). The cosine here starts where the warm-up ends, as SimCLR's schedule does, so the
//! rate is continuous and peaks at `base_lr` exactly at the end of the warm-up.
//!
//! ```
//! use cvrl_trainer::schedule::{scaled_lr, LrSchedule};
//! let s = LrSchedule::new(scaled_lr(0.32, 512), 10, 110);
//! assert_eq!(s.lr_at(0), 0.0);
//! assert!((s.lr_at(10) - 0.16).abs() < 1e-12);
//! assert!((s.lr_at(60) - 0.08).abs() < 1e-12);
//! assert_eq!(s.lr_at(110), 0.0);
//! ```

/// The batch size the reference's learning rate is given for.
pub const REFERENCE_BATCH: usize = 1024;

/// Linear warm-up from 0 to `base_lr` over `warmup_steps`, then cosine decay from `base_lr`
/// to `final_lr` at `total_steps`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    /// The peak rate, reached at the end of the warm-up.
    pub base_lr: f64,
    /// Steps of linear warm-up (0: start at `base_lr`).
    pub warmup_steps: u64,
    /// Steps of the whole run, warm-up included.
    pub total_steps: u64,
    /// The rate at `total_steps` and after (the reference: 0).
    pub final_lr: f64,
}

impl LrSchedule {
    /// The reference's shape: decay to 0. `warmup_steps` is capped at `total_steps`.
    pub fn new(base_lr: f64, warmup_steps: u64, total_steps: u64) -> Self {
        LrSchedule {
            base_lr,
            warmup_steps: warmup_steps.min(total_steps),
            total_steps,
            final_lr: 0.0,
        }
    }

    /// The rate of the update made at `step` (0-based: the first update uses `lr_at(0)`).
    ///
    /// The warm-up starts from 0, so step 0 makes no update at all; this is what the
    /// reference's `step / warmup_steps * lr` gives, and it costs one step out of thousands.
    pub fn lr_at(&self, step: u64) -> f64 {
        if step >= self.total_steps {
            return self.final_lr;
        }
        if step < self.warmup_steps {
            return self.base_lr * step as f64 / self.warmup_steps as f64;
        }
        let decay_steps = (self.total_steps - self.warmup_steps) as f64;
        let progress = (step - self.warmup_steps) as f64 / decay_steps;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.final_lr + (self.base_lr - self.final_lr) * cosine
    }
}

/// The linear scaling rule: `lr_per_1024 * batch / 1024` (the paper's 0.32 is for 1024
/// videos, i.e. 2048 clips, per step).
pub fn scaled_lr(lr_per_1024: f64, batch: usize) -> f64 {
    lr_per_1024 * batch as f64 / REFERENCE_BATCH as f64
}

/// Full batches in one pass over `videos` videos: `videos / batch`, the last partial batch
/// dropped (the loader never builds it). 0 when the set is smaller than one batch.
pub fn steps_per_epoch(videos: usize, batch: usize) -> u64 {
    if batch == 0 {
        return 0;
    }
    (videos / batch) as u64
}

/// `epochs` (may be fractional) of `steps_per_epoch` steps, rounded to the nearest step.
pub fn epochs_to_steps(epochs: f64, steps_per_epoch: u64) -> u64 {
    (epochs.max(0.0) * steps_per_epoch as f64).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn warm_up_is_linear_from_zero_and_the_cosine_ends_at_zero() {
        let s = LrSchedule::new(0.4, 100, 1100);
        assert_eq!(s.lr_at(0), 0.0);
        assert!(close(s.lr_at(50), 0.2), "mid warm-up: {}", s.lr_at(50));
        assert!(close(s.lr_at(99), 0.4 * 0.99));
        assert!(close(s.lr_at(100), 0.4), "end of warm-up: {}", s.lr_at(100));
        assert!(close(s.lr_at(600), 0.2), "halfway through the decay: {}", s.lr_at(600));
        // A quarter of the way: 0.5 (1 + cos(pi/4)) of the peak.
        assert!(close(s.lr_at(350), 0.4 * 0.5 * (1.0 + std::f64::consts::FRAC_1_SQRT_2)));
        assert!(s.lr_at(1099) > 0.0 && s.lr_at(1099) < 1e-5);
        assert_eq!(s.lr_at(1100), 0.0, "end");
        assert_eq!(s.lr_at(5000), 0.0, "past the end");
    }

    #[test]
    fn rises_then_falls_monotonically() {
        let s = LrSchedule::new(1.0, 37, 500);
        let lrs: Vec<f64> = (0..=500).map(|t| s.lr_at(t)).collect();
        assert!(lrs[..=37].windows(2).all(|w| w[1] > w[0]));
        assert!(lrs[37..].windows(2).all(|w| w[1] <= w[0]));
        assert!(lrs.iter().all(|&v| (0.0..=1.0).contains(&v)));
    }

    #[test]
    fn no_warm_up_starts_at_the_peak_and_a_final_rate_is_the_floor() {
        let s = LrSchedule { final_lr: 0.1, ..LrSchedule::new(1.0, 0, 10) };
        assert_eq!(s.lr_at(0), 1.0);
        assert!(close(s.lr_at(5), 0.55));
        assert_eq!(s.lr_at(10), 0.1);
        // A warm-up longer than the run is capped: the run is all warm-up.
        let s = LrSchedule::new(1.0, 50, 10);
        assert_eq!(s.warmup_steps, 10);
        assert!(close(s.lr_at(5), 0.5));
        assert_eq!(s.lr_at(10), 0.0);
    }

    #[test]
    fn the_reference_run_in_steps() {
        // K600: 366,016 videos at batch 1024 is 357 full steps per epoch (the reference's
        // 71,488 steps use the fractional 357.4); 5 warm-up epochs, 200 in all.
        let per_epoch = steps_per_epoch(366_016, 1024);
        assert_eq!(per_epoch, 357);
        assert_eq!(epochs_to_steps(5.0, per_epoch), 1785);
        assert_eq!(epochs_to_steps(200.0, per_epoch), 71_400);
        assert_eq!(epochs_to_steps(0.5, 3), 2, "fractional epochs round to the nearest step");
        assert!(close(scaled_lr(0.32, 1024), 0.32));
        assert!(close(scaled_lr(0.32, 256), 0.08));
        assert_eq!(steps_per_epoch(9, 4), 2, "the last partial batch is dropped");
        assert_eq!(steps_per_epoch(3, 4), 0);
        assert_eq!(steps_per_epoch(3, 0), 0);
    }
}
