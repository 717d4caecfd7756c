//! The terminal progress bar of `cvrl-shard build`: videos done, ETA, videos/s, frames/s.
//! Hidden when stderr is not a terminal or with `--quiet`.

use crate::build::Reporter;
use crate::decode::ffmpeg_log::LiveSink;
use cvrl_formats::FailureRow;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// An indicatif bar implementing [`Reporter`].
pub struct Bar {
    bar: ProgressBar,
    frames: AtomicU64,
    started: Instant,
}

impl Bar {
    pub fn new(quiet: bool) -> Bar {
        let bar = ProgressBar::with_draw_target(
            None,
            if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() },
        );
        let style = ProgressStyle::with_template(
            "{elapsed_precise} {wide_bar} {pos}/{len} videos, {per_sec}, ETA {eta} {msg}",
        )
        .expect("valid template");
        bar.set_style(style);
        Bar { bar, frames: AtomicU64::new(0), started: Instant::now() }
    }
}

impl Bar {
    /// Prints whole lines above the bar (`--verbose` output); on plain stderr when the bar
    /// is hidden (`--quiet`, or stderr is not a terminal), where the bar would drop them.
    pub fn line_printer(&self) -> LiveSink {
        let bar = self.bar.clone();
        Arc::new(move |line: &str| {
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        })
    }
}

impl Reporter for Bar {
    fn start(&self, total: usize, already_done: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(already_done as u64);
        self.bar.reset_eta();
        if already_done > 0 {
            self.bar.println(format!(
                "resuming: {already_done} of {total} videos already in committed shards"
            ));
        }
    }

    fn video_done(&self, frames: u64, failed: Option<&FailureRow>) {
        let total = self.frames.fetch_add(frames, Ordering::Relaxed) + frames;
        let fps = total as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_message(format!("{fps:.0} frames/s"));
        if let Some(f) = failed {
            self.bar.println(format!("failed: {}", crate::build::describe_failure(f)));
        }
        self.bar.inc(1);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
