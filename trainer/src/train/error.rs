//! Why training fails: [`TrainError`], one variant per cause, each saying what to do
//! (lower `--batch-size`, resume from the named checkpoint, pass `--resume`), and the
//! recognition of out-of-memory failures in libtorch's messages.

use std::path::{Path, PathBuf};

use cvrl_formats::FormatError;
use tch::TchError;

use crate::checkpoint::CheckpointError;
use crate::device::NoCuda;
use crate::dist::{DistError, Lost};
use crate::model::ModelError;
use crate::tensorboard::TensorBoardError;

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("--eval-every: {0}")]
    Eval(String),
    #[error("cannot open the shard set {}: {error}", show_dirs(dirs))]
    Shards { dirs: Vec<PathBuf>, error: FormatError },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    NoCuda(#[from] NoCuda),
    #[error("{dir} already holds a run ({what}): pass --resume {dir} to continue it, or choose another --out", dir = dir.display())]
    RunExists { dir: PathBuf, what: String },
    #[error("cannot start the loader: {0}")]
    Loader(String),
    #[error("the loader stopped before step {step}: no readable video left")]
    LoaderStopped { step: u64 },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Dist(#[from] DistError),
    #[error("cannot resume from {}: {error}. {}", dir.display(), match previous {
        Some(p) => format!("The checkpoint before it is {}: pass --resume {} to continue from there.", p.display(), p.display()),
        None => "No earlier checkpoint is left: start the run again.".to_owned(),
    })]
    Resume { dir: PathBuf, error: Box<CheckpointError>, previous: Option<PathBuf> },
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Torch(#[from] TchError),
    #[error("the loss is {loss} at step {step}: training stopped. {}", match last_checkpoint {
        Some(p) => format!("The last good checkpoint is {} (continue with --resume, perhaps at a lower --lr).", p.display()),
        None => "No checkpoint had been written yet.".to_owned(),
    })]
    NonFiniteLoss { step: u64, loss: f64, last_checkpoint: Option<PathBuf> },
    #[error("variable {name} holds NaN or infinite values after step {step}: training stopped. {}", match last_checkpoint {
        Some(p) => format!("The last good checkpoint is {} (continue with --resume, perhaps at a lower --lr).", p.display()),
        None => "No checkpoint had been written yet.".to_owned(),
    })]
    NonFiniteWeights { step: u64, name: String, last_checkpoint: Option<PathBuf> },
    #[error("out of {device} memory at step {step}, with micro-batches of {micro_batch} videos \
             ({clips} clips) and --accumulate {accumulate}: lower --batch-size or raise \
             --accumulate (the same batch in more, smaller passes). libtorch said: {detail}",
             clips = 2 * micro_batch)]
    OutOfMemory { step: u64, device: String, micro_batch: usize, accumulate: usize, detail: String },
    #[error(
        "at step {step}, {lost}; rank {rank} of {ranks} stops too. Look at the output of the \
         rank named for why (it died, was killed, or hung past --dist-timeout), then --resume \
         from the last checkpoint. The collective said: {detail}"
    )]
    LostRank { step: u64, rank: usize, ranks: usize, lost: Lost, detail: String },
    #[error("libtorch failed at step {step}: {message}")]
    TorchFailure { step: u64, message: String },
    #[error("--supervised needs labelled videos, but the shard set {} {reason}", show_dirs(dirs))]
    NoLabels { dirs: Vec<PathBuf>, reason: String },
    #[error(transparent)]
    TensorBoard(#[from] TensorBoardError),
}

/// Whether a libtorch error message (or a panic carrying one) reports an allocation that
/// failed: CUDA's caching allocator (`CUDA out of memory. Tried to allocate ...`), a CUDA
/// call (`CUDA error: out of memory`), cuDNN or cuBLAS workspace allocations, or the CPU
/// allocator.
pub fn is_out_of_memory(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "cuda out of memory",
        "cuda error: out of memory",
        "outofmemoryerror",
        "cudnn_status_alloc_failed",
        "cublas_status_alloc_failed",
        "can't allocate memory",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// The first line of libtorch's message that says what happened (tch wraps it in
/// `Torch("...")` and libtorch appends a C++ backtrace).
pub(super) fn torch_detail(message: &str) -> String {
    let m = message.split("Torch(\"").nth(1).unwrap_or(message);
    let line = m.lines().find(|l| !l.trim().is_empty()).unwrap_or(m).trim();
    // tch's Debug formatting escapes the message: keep the first escaped line too.
    let line = line.split("\\n").next().unwrap_or(line);
    line.trim_end_matches(['"', ')']).to_owned()
}

fn show_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |error| TrainError::Io { path: path.to_path_buf(), error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{Preset, TrainConfig};

    #[test]
    fn an_out_of_memory_message_names_the_flags_that_help() {
        // What tch's panic carries when the CUDA caching allocator gives up (abridged).
        let cuda = "called `Result::unwrap()` on an `Err` value: Torch(\"CUDA out of memory. \
                    Tried to allocate 3.06 GiB. GPU 0 has a total capacity of 79.19 GiB of which \
                    1.2 GiB is free.\\nException raised from malloc at \
                    /pytorch/c10/cuda/CUDACachingAllocator.cpp:1400 (most recent call first):\
                    \\nframe #0: ...\")";
        assert!(is_out_of_memory(cuda));
        for other in [
            "CUDA error: out of memory",
            "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
            "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory",
        ] {
            assert!(is_out_of_memory(other), "{other}");
        }
        for not in ["CUDA error: device-side assert triggered", "shape mismatch", ""] {
            assert!(!is_out_of_memory(not), "{not}");
        }
        let cfg = TrainConfig {
            batch_size: 1024,
            accumulate: 8,
            ..TrainConfig::preset(Preset::Demo, vec![], "o".into())
        };
        let stepper_like = TrainError::OutOfMemory {
            step: 3,
            device: "GPU".into(),
            micro_batch: cfg.micro_batch(),
            accumulate: cfg.accumulate,
            detail: torch_detail(cuda),
        };
        let msg = stepper_like.to_string();
        assert!(msg.contains("lower --batch-size or raise --accumulate"), "{msg}");
        assert!(msg.contains("micro-batches of 128 videos (256 clips)"), "{msg}");
        assert!(
            msg.ends_with("GPU 0 has a total capacity of 79.19 GiB of which 1.2 GiB is free."),
            "{msg}"
        );
        assert!(!msg.contains("frame #0"), "{msg}");
    }
}
