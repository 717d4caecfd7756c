//! The run directory of `cvrl-train`, and the one place that names its files.
//!
//! ```text
//! RUN_DIR/
//!   run.json             the configuration and derived plan, rewritten at every (re)start
//!   log.jsonl            one JSON object per step
//!   tb/                  TensorBoard event files, one per (re)start
//!   ckpt-00001000/       checkpoints (crate::checkpoint), zero-padded so names sort by step
//!   ckpt-00001000.tmp/   a checkpoint being written; never read
//!   encoder.safetensors  the backbone alone, refreshed with every checkpoint
//!   eval/                cvrl-eval's results and feature caches
//! ```
//!
//! Training, checkpoints and evaluation all reach these files through [`RunDir`], so a
//! file name is written down once. It depends on nothing else in the crate.

use std::path::{Path, PathBuf};

/// A run directory (it need not exist yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// The per-step log.
    pub const LOG: &'static str = "log.jsonl";
    /// The run's configuration and plan.
    pub const RUN: &'static str = "run.json";
    /// The TensorBoard event files' folder: `tensorboard --logdir RUN_DIR/tb`.
    pub const TENSORBOARD: &'static str = "tb";
    /// The exported backbone.
    pub const ENCODER: &'static str = "encoder.safetensors";
    /// Where `cvrl-eval` writes by default.
    pub const EVAL: &'static str = "eval";
    /// The prefix of checkpoint directories.
    const CHECKPOINT_PREFIX: &'static str = "ckpt-";
    /// The suffix of a checkpoint being written.
    const PARTIAL_SUFFIX: &'static str = ".tmp";

    pub fn new(path: impl Into<PathBuf>) -> RunDir {
        RunDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn log(&self) -> PathBuf {
        self.path.join(Self::LOG)
    }

    pub fn run_json(&self) -> PathBuf {
        self.path.join(Self::RUN)
    }

    pub fn tensorboard(&self) -> PathBuf {
        self.path.join(Self::TENSORBOARD)
    }

    pub fn encoder(&self) -> PathBuf {
        self.path.join(Self::ENCODER)
    }

    pub fn eval(&self) -> PathBuf {
        self.path.join(Self::EVAL)
    }

    /// The directory of the checkpoint after `step` updates: `ckpt-00001234` for 1234.
    pub fn checkpoint(&self, step: u64) -> PathBuf {
        self.path.join(checkpoint_name(step))
    }

    /// Where the checkpoint after `step` updates is written before it is renamed into place.
    pub fn partial_checkpoint(&self, step: u64) -> PathBuf {
        self.path.join(format!("{}{}", checkpoint_name(step), Self::PARTIAL_SUFFIX))
    }

    /// The step of a complete checkpoint's directory name (`ckpt-00001234` → 1234), `None`
    /// for any other name, a partial checkpoint's included.
    pub fn checkpoint_step(name: &str) -> Option<u64> {
        let digits = name.strip_prefix(Self::CHECKPOINT_PREFIX)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// Whether `name` is an encoder export that a killed process left half written
    /// (`encoder.safetensors.<pid>.tmp`).
    pub fn is_partial_encoder(name: &str) -> bool {
        name.strip_prefix(Self::ENCODER)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.strip_suffix(Self::PARTIAL_SUFFIX))
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
    }

    /// Whether `name` is a partial checkpoint's directory (`ckpt-*.tmp`).
    pub fn is_partial_checkpoint(name: &str) -> bool {
        name.starts_with(Self::CHECKPOINT_PREFIX) && name.ends_with(Self::PARTIAL_SUFFIX)
    }
}

/// `ckpt-00001234` for step 1234: zero-padded so that names sort by step.
fn checkpoint_name(step: u64) -> String {
    format!("{}{step:08}", RunDir::CHECKPOINT_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_names_sort_by_step_and_parse_back() {
        let run = RunDir::new("/runs/a");
        assert_eq!(run.checkpoint(1234), Path::new("/runs/a/ckpt-00001234"));
        assert_eq!(run.partial_checkpoint(7), Path::new("/runs/a/ckpt-00000007.tmp"));
        assert_eq!(RunDir::checkpoint_step("ckpt-00001234"), Some(1234));
        assert_eq!(RunDir::checkpoint_step("ckpt-123456789"), Some(123_456_789));
        for not in ["ckpt-00000007.tmp", "ckpt-", "ckpt-+12", "model", "ckpt-1e3"] {
            assert_eq!(RunDir::checkpoint_step(not), None, "{not}");
        }
        assert!(RunDir::is_partial_checkpoint("ckpt-00000007.tmp"));
        assert!(RunDir::is_partial_encoder("encoder.safetensors.2603.tmp"));
        for not in ["encoder.safetensors", "encoder.safetensors.tmp", "encoder.safetensors.x.tmp"] {
            assert!(!RunDir::is_partial_encoder(not), "{not}");
        }
        assert!(!RunDir::is_partial_checkpoint("ckpt-00000007"));
        let mut names: Vec<String> = [100, 9, 20_000]
            .map(|s| run.checkpoint(s).file_name().unwrap().to_string_lossy().into_owned())
            .into();
        names.sort();
        assert_eq!(names, ["ckpt-00000009", "ckpt-00000100", "ckpt-00020000"]);
    }

    #[test]
    fn every_file_lives_in_the_run_directory() {
        let run = RunDir::new("r");
        assert_eq!(run.log(), Path::new("r/log.jsonl"));
        assert_eq!(run.run_json(), Path::new("r/run.json"));
        assert_eq!(run.tensorboard(), Path::new("r/tb"));
        assert_eq!(run.encoder(), Path::new("r/encoder.safetensors"));
        assert_eq!(run.eval(), Path::new("r/eval"));
    }
}
