//! The resampling rule of the module documentation as integer arithmetic: which output
//! slots (frame numbers at the output rate) each decoded frame fills, which slots the trim
//! window and frame cap keep, and how decoded timestamps are made monotonic. Nothing here
//! touches a picture; `ff::Rational` is only a pair of integers.

use std::ops::Range;

use ff::ffi;
use ffmpeg_next as ff;

use super::{DecodeError, DecodeOptions, Stage};

/// Per-stream bookkeeping of frame times.
pub(super) struct DecodeState {
    /// Stream start time; `None` until known (then the first frame's time).
    pub(super) origin: Option<i64>,
    /// Time of the previous frame, ticks after `origin`.
    last_rel: Option<i64>,
    /// One frame at the source rate, in ticks (for frames without a timestamp).
    nominal: i64,
    pub(super) vfr: IntervalStats,
}

impl DecodeState {
    /// A stream that starts at `origin` (if known) with frames `nominal` ticks long.
    pub(super) fn new(origin: Option<i64>, nominal: i64) -> Self {
        DecodeState { origin, last_rel: None, nominal, vfr: IntervalStats::default() }
    }

    /// The time of a decoded frame in ticks after the origin, made monotonic.
    pub(super) fn place(&mut self, ts: Option<i64>) -> i64 {
        let rel = match (ts, self.last_rel) {
            (Some(t), last) => {
                let origin = *self.origin.get_or_insert(t);
                let rel = t.saturating_sub(origin).max(0);
                last.map_or(rel, |l| rel.max(l))
            }
            (None, Some(l)) => l + self.nominal,
            (None, None) => 0,
        };
        if let Some(l) = self.last_rel {
            self.vfr.add(rel - l);
        }
        self.last_rel = Some(rel);
        rel
    }

    /// How long a frame lasts, in ticks: its packet's `duration`, else the last interval
    /// between frames, else one nominal frame.
    pub(super) fn frame_duration(&self, duration: i64) -> i64 {
        if duration > 0 {
            duration
        } else {
            self.vfr.last.filter(|&i| i > 0).unwrap_or(self.nominal)
        }
    }
}

/// Smallest and largest interval between consecutive frames, to tell VFR from CFR.
#[derive(Default)]
pub(super) struct IntervalStats {
    min: Option<i64>,
    max: Option<i64>,
    last: Option<i64>,
}

impl IntervalStats {
    fn add(&mut self, interval: i64) {
        // Equal timestamps (clamped, out-of-order frames) say nothing about the rate.
        if interval <= 0 {
            return;
        }
        self.min = Some(self.min.map_or(interval, |m| m.min(interval)));
        self.max = Some(self.max.map_or(interval, |m| m.max(interval)));
        self.last = Some(interval);
    }

    /// Constant-rate streams in a coarse time base still alternate between two tick counts
    /// (30000/1001 fps in milliseconds: 33, 33, 34), so one tick plus 5% is not a change.
    pub(super) fn is_variable(&self) -> bool {
        match (self.min, self.max) {
            (Some(min), Some(max)) => (max - min) as f64 > 1.0 + 0.05 * min as f64,
            _ => false,
        }
    }
}

/// Exact comparison of stream times with output times.
#[derive(Clone, Copy, Debug)]
pub(super) struct Clock {
    tb_num: i128,
    tb_den: i128,
    pub(super) fps_num: i128,
    pub(super) fps_den: i128,
}

impl Clock {
    pub(super) fn new(tb: ff::Rational, fps: ff::Rational) -> Result<Self, DecodeError> {
        let (fps_num, fps_den) = (fps.numerator(), fps.denominator());
        if fps_num <= 0 || fps_den <= 0 {
            return Err(DecodeError::new(
                Stage::Probe,
                format!("invalid frame rate {fps_num}/{fps_den}"),
            ));
        }
        Ok(Clock {
            tb_num: i128::from(tb.numerator()),
            tb_den: i128::from(tb.denominator()),
            fps_num: i128::from(fps_num),
            fps_den: i128::from(fps_den),
        })
    }

    /// Does output slot `k` come before a frame at stream time `ticks`, i.e. is
    /// `t_k + tolerance < ticks`? The tolerance, one tick but at most a quarter of an output
    /// frame, absorbs timestamps rounded to their time base: matroska stores milliseconds,
    /// so a 30000/1001 fps frame due at 66.73 ms is stamped 67 ms and must still fill slot 2.
    fn slot_before(&self, k: u64, ticks: i64) -> bool {
        // In units of 1 / (4 * fps_num * tb_den) seconds everything is an integer.
        let slot = 4 * i128::from(k) * self.fps_den * self.tb_den;
        let tick = 4 * self.tb_num * self.fps_num;
        let quarter_frame = self.fps_den * self.tb_den;
        slot + tick.min(quarter_frame) < i128::from(ticks) * tick
    }

    pub(super) fn fps(&self) -> f64 {
        self.fps_num as f64 / self.fps_den as f64
    }
}

/// The output slots `[first, end)` that `trim` and `max_frames` keep, in frame numbers.
#[derive(Clone, Copy, Debug)]
pub(super) struct OutputWindow {
    trim: Option<(f64, f64)>,
    max_frames: Option<u32>,
}

impl OutputWindow {
    pub(super) fn from_options(opts: &DecodeOptions) -> Result<Self, DecodeError> {
        if let Some((a, b)) = opts.trim {
            if !(a.is_finite() && b.is_finite() && a >= 0.0 && b > a) {
                return Err(DecodeError::new(
                    Stage::Probe,
                    format!("invalid trim window {a}..{b} s (need 0 <= start < end)"),
                ));
            }
        }
        if opts.short_side == Some(0) {
            return Err(DecodeError::new(
                Stage::Probe,
                "invalid short side 0 (use None to keep the size)",
            ));
        }
        Ok(OutputWindow { trim: opts.trim, max_frames: opts.max_frames })
    }

    /// Smallest `k` with `k / fps >= t`. The tolerance absorbs `t` itself having been
    /// computed as `k / fps` in floating point.
    fn first_slot_at(clock: &Clock, t: f64) -> u64 {
        let k = t * clock.fps() - 1e-6;
        if k <= 0.0 {
            0
        } else {
            k.ceil() as u64
        }
    }

    fn slots(&self, clock: &Clock) -> Range<u64> {
        let (first, end) = match self.trim {
            Some((a, b)) => (Self::first_slot_at(clock, a), Self::first_slot_at(clock, b)),
            None => (0, u64::MAX),
        };
        let end = match self.max_frames {
            Some(n) => end.min(first.saturating_add(u64::from(n))),
            None => end,
        };
        first..end.max(first)
    }

    pub(super) fn first_time(&self, clock: &Clock) -> Option<f64> {
        self.trim.map(|_| self.slots(clock).start as f64 / clock.fps())
    }

    pub(super) fn end_time(&self, clock: &Clock) -> Option<f64> {
        self.trim
            .map(|(_, b)| b)
            .or_else(|| self.max_frames.map(|_| self.slots(clock).end as f64 / clock.fps()))
    }
}

/// Which output slots each decoded frame fills (the resampling rule of the module doc).
#[derive(Debug)]
pub(super) struct Timeline {
    clock: Clock,
    next: u64,
    end: u64,
}

impl Timeline {
    pub(super) fn new(clock: Clock, window: &OutputWindow) -> Self {
        let slots = window.slots(&clock);
        Timeline { clock, next: slots.start, end: slots.end }
    }

    /// A frame at `ticks` arrived: the previous frame fills every open slot before it.
    pub(super) fn advance(&mut self, ticks: i64) -> Range<u64> {
        let start = self.next;
        while self.next < self.end && self.clock.slot_before(self.next, ticks) {
            self.next += 1;
        }
        start..self.next
    }

    /// The stream ended at `end_ticks`: the last frame fills every open slot before it.
    pub(super) fn finish(&mut self, end_ticks: i64) -> Range<u64> {
        self.advance(end_ticks)
    }

    pub(super) fn done(&self) -> bool {
        self.next >= self.end
    }
}

/// One frame at `rate`, in ticks of `tb` (at least 1).
pub(super) fn frame_ticks(tb: ff::Rational, rate: ff::Rational) -> i64 {
    let num = i128::from(rate.denominator()) * i128::from(tb.denominator());
    let den = i128::from(rate.numerator()) * i128::from(tb.numerator());
    i64::try_from(num / den.max(1)).unwrap_or(i64::MAX).max(1)
}

/// `fps` as a rational (29.97 becomes 2997/100, 30000.0/1001.0 becomes 30000/1001).
pub(super) fn fps_rational(fps: f64) -> Result<ff::Rational, DecodeError> {
    if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) {
        return Err(DecodeError::new(
            Stage::Probe,
            format!("invalid output frame rate {fps} (need 0 < fps <= 1000)"),
        ));
    }
    // SAFETY: a pure function of two numbers.
    let r = unsafe { ffi::av_d2q(fps, 1_000_000) };
    Ok(ff::Rational::new(r.num, r.den))
}

pub(super) fn rational_f64(r: ff::Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0)
        .then(|| f64::from(r.numerator()) / f64::from(r.denominator()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(tb: (i32, i32), fps: (i32, i32)) -> Clock {
        Clock::new(ff::Rational::new(tb.0, tb.1), ff::Rational::new(fps.0, fps.1)).unwrap()
    }

    fn window(trim: Option<(f64, f64)>, max_frames: Option<u32>) -> OutputWindow {
        OutputWindow { trim, max_frames }
    }

    /// Slots each frame fills, given frame times and the end time, in ticks.
    fn fill(clock: Clock, w: OutputWindow, times: &[i64], end: i64) -> Vec<Range<u64>> {
        let mut t = Timeline::new(clock, &w);
        let mut out: Vec<Range<u64>> = times.iter().skip(1).map(|&x| t.advance(x)).collect();
        out.push(t.finish(end));
        out
    }

    #[test]
    fn timeline_gives_each_frame_of_a_same_rate_stream_one_slot() {
        // 25 fps in 1/12800 (mp4), 30000/1001 in 1/1000 (webm rounding to whole ms).
        let times: Vec<i64> = (0..50).map(|i| i * 512).collect();
        let slots = fill(clock((1, 12800), (25, 1)), window(None, None), &times, 50 * 512);
        assert!(slots.iter().enumerate().all(|(i, r)| *r == (i as u64..i as u64 + 1)));
        let times: Vec<i64> = (0..300).map(|i| (i * 1001 + 15) / 30).collect();
        let slots = fill(clock((1, 1000), (30000, 1001)), window(None, None), &times, 10_010);
        assert!(slots.iter().enumerate().all(|(i, r)| *r == (i as u64..i as u64 + 1)), "{slots:?}");
    }

    #[test]
    fn timeline_repeats_and_drops_frames_and_shows_the_first_frame_early() {
        // 10 fps source (ticks of 1/10 s) into 20 fps: two slots each.
        let slots = fill(clock((1, 10), (20, 1)), window(None, None), &[0, 1, 2], 3);
        assert_eq!(slots, vec![0..2, 2..4, 4..6]);
        // Into 5 fps: every other frame is dropped (fills no slot).
        let slots = fill(clock((1, 10), (5, 1)), window(None, None), &[0, 1, 2, 3], 4);
        assert_eq!(slots, vec![0..1, 1..1, 1..2, 2..2]);
        // A first frame at 0.25 s still fills the slots before it.
        let slots = fill(clock((1, 100), (10, 1)), window(None, None), &[25, 50], 60);
        assert_eq!(slots, vec![0..5, 5..6]);
        // A frame exactly on a slot time belongs to that slot.
        let slots = fill(clock((1, 30), (10, 1)), window(None, None), &[0, 3], 6);
        assert_eq!(slots, vec![0..1, 1..2]);
    }

    #[test]
    fn timeline_window_keeps_trimmed_and_capped_slots() {
        let c = clock((1, 10), (10, 1));
        let times: Vec<i64> = (0..20).collect();
        let kept = |w| fill(c, w, &times, 20).into_iter().flatten().collect::<Vec<u64>>();
        assert_eq!(kept(window(Some((0.5, 0.8)), None)), vec![5, 6, 7]);
        assert_eq!(kept(window(Some((0.5, 10.0)), Some(2))), vec![5, 6]);
        assert_eq!(kept(window(None, Some(3))), vec![0, 1, 2]);
        // 0.3 as a float times 10 fps is not quite 3; slot 3 still starts at 0.3 s.
        assert_eq!(OutputWindow::first_slot_at(&c, 0.1 * 3.0), 3);
    }

    #[test]
    fn frame_rate_is_variable_only_beyond_timestamp_rounding() {
        let stats = |intervals: &[i64]| {
            let mut s = IntervalStats::default();
            intervals.iter().for_each(|&i| s.add(i));
            s.is_variable()
        };
        assert!(!stats(&[33, 33, 34, 33, 34]));
        assert!(!stats(&[512; 10]));
        assert!(stats(&[6000, 6000, 3000, 3000]));
        assert!(!stats(&[]));
    }
}
