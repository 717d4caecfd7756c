//! Training checkpoints: model weights, optimiser velocities and the run's state, written
//! atomically, found again for `--resume`, and the backbone exported alone for evaluation.
//!
//! A checkpoint is a directory `RUN_DIR/ckpt-<step, 8 digits>/` holding
//!
//! - `model.safetensors`: every variable of the model's [`VarStore`] (backbone, head, and
//!   BatchNorm running statistics), named as [`crate::model`] names them;
//! - `optimizer.safetensors`: the velocity of each trainable variable, under its name;
//! - `state.json`: [`CheckpointState`]: the step (number of updates done), seed, a model
//!   description and the run's whole configuration.
//!
//! It is written into `ckpt-<step>.tmp/` and renamed into place only when every file is on
//! disk (files and directory fsynced), so a crash at any moment leaves either the previous
//! checkpoints or a complete new one; a leftover `.tmp` directory is never read.
//!
//! [`export_encoder`] writes the backbone alone (`stem.*`, `res2.*` .. `res5.*`, the
//! projection head dropped) as one safetensors file, the format PyTorch reads with
//! `safetensors.torch.load_file` (or by hand: an 8-byte little-endian header length, a JSON
//! header of names, dtypes, shapes and offsets, then raw little-endian data).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, TchError, Tensor};

use crate::mismatch::TensorMismatch;
use crate::optim::Optimizer;
use crate::run_dir::RunDir;

/// `state.json`'s `format` field.
pub const FORMAT: &str = "cvrl-checkpoint";
/// `state.json`'s `version` field; bumped when the layout changes.
pub const VERSION: u32 = 1;
pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "state.json";
/// The variables of the projection head start with this; everything else is the backbone.
pub const HEAD_PREFIX: &str = "head.";

/// What `state.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub format: String,
    pub version: u32,
    /// Updates done; a resumed run continues with step `step` (0-based).
    pub step: u64,
    pub seed: u64,
    /// A short description of the architecture (e.g. `r3d18 w64 x1, head 3x2048 -> 128`), shown
    /// when a checkpoint does not fit the model.
    pub model: String,
    /// The loss of the last step before the checkpoint.
    pub loss: Option<f64>,
    /// The run's configuration (every flag), as the trainer serialised it.
    pub config: serde_json::Value,
    /// The processes (ranks) that trained together; 1 alone.
    #[serde(default = "one")]
    pub world_size: usize,
}

fn one() -> usize {
    1
}

impl CheckpointState {
    pub fn new(
        step: u64,
        seed: u64,
        model: String,
        loss: Option<f64>,
        config: serde_json::Value,
    ) -> Self {
        CheckpointState {
            format: FORMAT.into(),
            version: VERSION,
            step,
            seed,
            model,
            loss,
            config,
            world_size: 1,
        }
    }
}

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: {error}")]
    Torch { path: PathBuf, error: TchError },
    #[error("{path}: not a valid state file: {error}")]
    Json { path: PathBuf, error: serde_json::Error },
    #[error("{path}: format {found:?} version {version} is not a {FORMAT} version {VERSION}")]
    Format { path: PathBuf, found: String, version: u32 },
    #[error("{path} is not a checkpoint (expected a ckpt-* directory holding {STATE_FILE}, a run directory holding such directories, or a file in one)")]
    NotACheckpoint { path: PathBuf },
    #[error("no checkpoint in {dir} (no ckpt-* directory with a {STATE_FILE})")]
    NoCheckpoint { dir: PathBuf },
    #[error("{path} was saved from another model ({saved}) than this run's ({this}): {mismatch}")]
    OtherModel { path: PathBuf, saved: String, this: String, mismatch: Box<TensorMismatch> },
    #[error("{path}: optimiser state does not fit this model's variables: {mismatch}")]
    OptimizerState { path: PathBuf, mismatch: Box<TensorMismatch> },
    #[error("refusing to save a checkpoint: variable {name} holds NaN or infinite values")]
    NonFinite { name: String },
    #[error("{path} does not fit this model's backbone: {mismatch}")]
    OtherEncoder { path: PathBuf, mismatch: Box<TensorMismatch> },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |error| CheckpointError::Io { path: path.to_path_buf(), error }
}

fn torch(path: &Path) -> impl FnOnce(TchError) -> CheckpointError + '_ {
    move |error| CheckpointError::Torch { path: path.to_path_buf(), error }
}

/// Writes `tensors` (moved to the CPU, made contiguous) as safetensors, fsynced.
fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), CheckpointError> {
    let cpu: Vec<(&str, Tensor)> =
        tensors.iter().map(|(n, t)| (n.as_str(), t.to_device(Device::Cpu).contiguous())).collect();
    Tensor::write_safetensors(&cpu, path).map_err(torch(path))?;
    fs::File::open(path).and_then(|f| f.sync_all()).map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io(dir))
}

/// Every variable of `vs`, sorted by name.
fn named(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Writes the checkpoint of `state.step` into `run_dir` atomically (see the module docs)
/// and returns its directory. Refuses (and writes nothing) if any variable is not finite,
/// so that a diverged run never replaces good checkpoints with bad ones.
pub fn save(
    run_dir: &Path,
    state: &CheckpointState,
    vs: &VarStore,
    optimizer: &Optimizer,
) -> Result<PathBuf, CheckpointError> {
    let vars = named(vs);
    for (name, t) in &vars {
        if t.is_floating_point() && !bool::try_from(t.isfinite().all()).unwrap_or(false) {
            return Err(CheckpointError::NonFinite { name: name.clone() });
        }
    }
    let run = RunDir::new(run_dir);
    let dir = run.checkpoint(state.step);
    let tmp = run.partial_checkpoint(state.step);
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    if let Err(e) = write_files(&tmp, state, &vars, optimizer) {
        // A failed write (a full disk) leaves nothing behind and gives back what it took.
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() {
        // The same step again (a resumed run that reached it once before): swap, then drop
        // the old one, so that one complete copy exists at every moment.
        let old = dir.with_extension("old");
        if old.exists() {
            fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        fs::rename(&dir, &old).map_err(io(&dir))?;
        fs::rename(&tmp, &dir).map_err(io(&dir))?;
        fs::remove_dir_all(&old).map_err(io(&old))?;
    } else {
        fs::rename(&tmp, &dir).map_err(io(&dir))?;
    }
    sync_dir(run_dir)?;
    Ok(dir)
}

/// The files of a checkpoint, into the directory `tmp`, fsynced.
fn write_files(
    tmp: &Path,
    state: &CheckpointState,
    vars: &[(String, Tensor)],
    optimizer: &Optimizer,
) -> Result<(), CheckpointError> {
    write_tensors(&tmp.join(MODEL_FILE), vars)?;
    write_tensors(&tmp.join(OPTIMIZER_FILE), &optimizer.state())?;
    let state_path = tmp.join(STATE_FILE);
    let json = serde_json::to_vec_pretty(state)
        .map_err(|error| CheckpointError::Json { path: state_path.clone(), error })?;
    fs::write(&state_path, json).map_err(io(&state_path))?;
    fs::File::open(&state_path).and_then(|f| f.sync_all()).map_err(io(&state_path))?;
    sync_dir(tmp)
}

/// Writes the backbone's variables (everything but `head.*`, BatchNorm running statistics
/// included) to `path` as safetensors, through a temporary file and a rename.
pub fn export_encoder(vs: &VarStore, path: &Path) -> Result<(), CheckpointError> {
    let backbone: Vec<(String, Tensor)> =
        named(vs).into_iter().filter(|(n, _)| !n.starts_with(HEAD_PREFIX)).collect();
    write_tensors_atomic(path, &backbone)
}

/// Writes `tensors` as safetensors to `path` through `<path>.<pid>.tmp`, fsynced, and a
/// rename, so a reader never sees a partial file. The process id keeps two processes that
/// write the same file (two probes filling one feature cache) out of each other's temporary
/// file: each renames a whole file, and the last one stays.
pub fn write_tensors_atomic(
    path: &Path,
    tensors: &[(String, Tensor)],
) -> Result<(), CheckpointError> {
    let tmp = cvrl_formats::atomic::process_tmp_path(path);
    let written =
        write_tensors(&tmp, tensors).and_then(|()| fs::rename(&tmp, path).map_err(io(path)));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Loads an exported encoder ([`export_encoder`]) into the backbone variables of `vs`
/// (everything but `head.*`), after checking that names and shapes match exactly; nothing
/// changes when they do not. Fine-tuning and evaluation start from it.
pub fn load_backbone(vs: &VarStore, path: &Path) -> Result<(), CheckpointError> {
    let mut saved = Tensor::read_safetensors(path).map_err(torch(path))?;
    saved.sort_by(|a, b| a.0.cmp(&b.0));
    let vars: Vec<(String, Tensor)> =
        named(vs).into_iter().filter(|(n, _)| !n.starts_with(HEAD_PREFIX)).collect();
    let mismatch = TensorMismatch::between(&shapes(&vars), &shapes(&saved));
    if !mismatch.is_empty() {
        let mismatch = Box::new(mismatch);
        return Err(CheckpointError::OtherEncoder { path: path.to_path_buf(), mismatch });
    }
    tch::no_grad(|| {
        for ((_, mut var), (_, value)) in vars.into_iter().zip(saved) {
            var.copy_(&value.to_device(var.device()));
        }
    });
    Ok(())
}

/// The checkpoints in `run_dir`, as `(step, directory)` sorted by step. Directories
/// without a state file (or `.tmp` leftovers) are not checkpoints.
pub fn list(run_dir: &Path) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(run_dir).map_err(io(run_dir))? {
        let entry = entry.map_err(io(run_dir))?;
        let name = entry.file_name();
        if let Some(step) = name.to_str().and_then(RunDir::checkpoint_step) {
            if entry.path().join(STATE_FILE).is_file() {
                found.push((step, entry.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The newest complete checkpoint before the one in `dir` (beside it, in its run
/// directory), if any: where a run can go on from when `dir` cannot be read.
pub fn previous(dir: &Path) -> Result<Option<PathBuf>, CheckpointError> {
    let step = dir.file_name().and_then(|n| n.to_str()).and_then(RunDir::checkpoint_step);
    let (Some(step), Some(run_dir)) = (step, dir.parent()) else { return Ok(None) };
    let run_dir = if run_dir.as_os_str().is_empty() { Path::new(".") } else { run_dir };
    Ok(list(run_dir)?.into_iter().filter(|(s, _)| *s < step).map(|(_, d)| d).next_back())
}

/// The checkpoint directory `path` names: a checkpoint directory itself, a file inside one,
/// or a run directory (its latest checkpoint).
pub fn resolve(path: &Path) -> Result<PathBuf, CheckpointError> {
    if path.is_file() {
        return match path.parent() {
            Some(dir) if dir.join(STATE_FILE).is_file() => Ok(dir.to_path_buf()),
            _ => Err(CheckpointError::NotACheckpoint { path: path.to_path_buf() }),
        };
    }
    if !path.is_dir() {
        return Err(CheckpointError::Io {
            path: path.to_path_buf(),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        });
    }
    if path.join(STATE_FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    match list(path)?.pop() {
        Some((_, dir)) => Ok(dir),
        None => Err(CheckpointError::NoCheckpoint { dir: path.to_path_buf() }),
    }
}

/// Reads and checks `state.json` of the checkpoint in `dir`.
pub fn read_state(dir: &Path) -> Result<CheckpointState, CheckpointError> {
    let path = dir.join(STATE_FILE);
    let bytes = fs::read(&path).map_err(io(&path))?;
    let state: CheckpointState = serde_json::from_slice(&bytes)
        .map_err(|error| CheckpointError::Json { path: path.clone(), error })?;
    if state.format != FORMAT || state.version != VERSION {
        return Err(CheckpointError::Format { path, found: state.format, version: state.version });
    }
    Ok(state)
}

fn shapes(tensors: &[(String, Tensor)]) -> Vec<(String, Vec<i64>)> {
    tensors.iter().map(|(n, t)| (n.clone(), t.size())).collect()
}

/// Restores the checkpoint in `dir` into `vs` and `optimizer`, after checking that every
/// tensor name and shape matches (`this_model` describes `vs` for the error message).
/// Nothing is changed when they do not match.
pub fn load(
    dir: &Path,
    vs: &VarStore,
    optimizer: &mut Optimizer,
    this_model: &str,
) -> Result<CheckpointState, CheckpointError> {
    let state = read_state(dir)?;
    let model_path = dir.join(MODEL_FILE);
    let mut saved = Tensor::read_safetensors(&model_path).map_err(torch(&model_path))?;
    saved.sort_by(|a, b| a.0.cmp(&b.0));
    let vars = named(vs);
    let mismatch = TensorMismatch::between(&shapes(&vars), &shapes(&saved));
    if !mismatch.is_empty() {
        return Err(CheckpointError::OtherModel {
            path: dir.to_path_buf(),
            saved: state.model.clone(),
            this: this_model.to_owned(),
            mismatch: Box::new(mismatch),
        });
    }
    let opt_path = dir.join(OPTIMIZER_FILE);
    let velocities = Tensor::read_safetensors(&opt_path).map_err(torch(&opt_path))?;
    // Check the optimiser state before touching the weights, so that a failure changes nothing.
    let expected: Vec<(String, Vec<i64>)> = shapes(&optimizer.state());
    let mismatch = TensorMismatch::between(&expected, &shapes(&velocities));
    if !mismatch.is_empty() {
        return Err(CheckpointError::OptimizerState {
            path: opt_path,
            mismatch: Box::new(mismatch),
        });
    }
    let saved: HashMap<String, Tensor> = saved.into_iter().collect();
    tch::no_grad(|| {
        for (name, mut var) in vars {
            var.copy_(&saved[&name].to_device(var.device()));
        }
    });
    optimizer
        .load_state(&velocities)
        .map_err(|m| CheckpointError::OptimizerState { path: opt_path, mismatch: Box::new(m) })?;
    Ok(state)
}

/// Deletes all but the newest `keep` checkpoints (at least one is always kept) and the
/// leftovers of interrupted saves: `ckpt-*.tmp` directories and half-written encoder
/// exports. Only the one trainer of a run writes these, and not while it prunes.
pub fn prune(run_dir: &Path, keep: usize) -> Result<(), CheckpointError> {
    let all = list(run_dir)?;
    let drop = all.len().saturating_sub(keep.max(1));
    for (_, dir) in &all[..drop] {
        fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    for entry in fs::read_dir(run_dir).map_err(io(run_dir))? {
        let entry = entry.map_err(io(run_dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if RunDir::is_partial_checkpoint(&name) && entry.path().is_dir() {
            fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
        } else if RunDir::is_partial_encoder(&name) && entry.path().is_file() {
            fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::OptimizerConfig;
    use tch::{nn, Kind};

    fn store(width: i64) -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let _ = nn::linear(&root / "stem" / "linear", 3, width, Default::default());
        let _ = nn::linear(&root / "head" / "0" / "linear", width, 2, Default::default());
        vs
    }

    fn state(step: u64) -> CheckpointState {
        CheckpointState::new(step, 7, "toy".into(), Some(1.5), serde_json::json!({"lr": 0.1}))
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        f64::try_from((a - b).abs().max()).unwrap()
    }

    #[test]
    fn save_then_load_restores_weights_and_velocities() {
        let dir = tempfile::tempdir().unwrap();
        let vs = store(4);
        let mut opt = Optimizer::new(&vs, OptimizerConfig::default());
        let vars = vs.variables();
        let loss = vars["stem.linear.weight"].sum(Kind::Float) * 2.0
            + vars["head.0.linear.weight"].square().sum(Kind::Float);
        loss.backward();
        opt.step(0.1);
        let saved = save(dir.path(), &state(12), &vs, &opt).unwrap();
        assert_eq!(saved, dir.path().join("ckpt-00000012"));
        assert!(!dir.path().join("ckpt-00000012.tmp").exists());

        let vs2 = store(4);
        let mut opt2 = Optimizer::new(&vs2, OptimizerConfig::default());
        let st = load(&resolve(dir.path()).unwrap(), &vs2, &mut opt2, "toy").unwrap();
        assert_eq!(st, state(12));
        let v2 = vs2.variables();
        for (name, t) in &vars {
            assert_eq!(max_diff(t, &v2[name]), 0.0, "{name}");
        }
        for ((n, a), (_, b)) in opt.state().iter().zip(opt2.state()) {
            assert_eq!(max_diff(a, &b), 0.0, "velocity of {n}");
        }
        // A file inside the checkpoint names it too.
        assert_eq!(resolve(&saved.join(MODEL_FILE)).unwrap(), saved);
    }

    #[test]
    fn an_atomic_write_leaves_the_file_alone_and_a_failed_one_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("features.safetensors");
        let tensors = vec![("x".to_owned(), Tensor::from_slice(&[1.0f32, 2.0]))];
        write_tensors_atomic(&path, &tensors).unwrap();
        let names: Vec<_> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["features.safetensors"]);
        let back = Tensor::read_safetensors(&path).unwrap();
        assert_eq!(max_diff(&back[0].1, &tensors[0].1), 0.0);
        // The rename fails (a directory is in the way): the temporary file goes too.
        let blocked = dir.path().join("blocked");
        fs::create_dir_all(blocked.join("inside")).unwrap();
        assert!(write_tensors_atomic(&blocked, &tensors).is_err());
        let mut names: Vec<_> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["blocked", "features.safetensors"]);
    }

    #[test]
    fn a_checkpoint_of_another_model_is_refused_with_the_differing_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let vs = store(4);
        let opt = Optimizer::new(&vs, OptimizerConfig::default());
        save(dir.path(), &state(1), &vs, &opt).unwrap();
        let other = store(5);
        let before = other.variables()["stem.linear.weight"].copy();
        let mut opt2 = Optimizer::new(&other, OptimizerConfig::default());
        let err = load(&resolve(dir.path()).unwrap(), &other, &mut opt2, "toy x5").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, CheckpointError::OtherModel { .. }), "{msg}");
        assert!(msg.contains("stem.linear.weight is [4, 3] there but [5, 3] here"), "{msg}");
        assert!(msg.contains("(toy)") && msg.contains("(toy x5)"), "{msg}");
        assert_eq!(max_diff(&before, &other.variables()["stem.linear.weight"]), 0.0);
    }

    #[test]
    fn resolve_picks_the_latest_and_prune_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let vs = store(2);
        let opt = Optimizer::new(&vs, OptimizerConfig::default());
        for step in [5, 10, 100, 20] {
            save(dir.path(), &state(step), &vs, &opt).unwrap();
        }
        // A crashed save leaves a .tmp directory: never a candidate.
        fs::create_dir(dir.path().join("ckpt-00000200.tmp")).unwrap();
        assert_eq!(resolve(dir.path()).unwrap(), dir.path().join("ckpt-00000100"));
        prune(dir.path(), 2).unwrap();
        let left: Vec<u64> = list(dir.path()).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(left, [20, 100]);
        assert!(!dir.path().join("ckpt-00000200.tmp").exists());
        // Saving the same step again replaces it.
        save(dir.path(), &state(100), &vs, &opt).unwrap();
        assert_eq!(read_state(&dir.path().join("ckpt-00000100")).unwrap().step, 100);

        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(resolve(empty.path()), Err(CheckpointError::NoCheckpoint { .. })));
        assert!(resolve(&empty.path().join("nope")).is_err());
    }

    #[test]
    fn the_encoder_export_holds_the_backbone_only_and_non_finite_weights_are_not_saved() {
        let dir = tempfile::tempdir().unwrap();
        let vs = store(3);
        let path = RunDir::new(dir.path()).encoder();
        export_encoder(&vs, &path).unwrap();
        let names: Vec<String> =
            Tensor::read_safetensors(&path).unwrap().into_iter().map(|(n, _)| n).collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, ["stem.linear.bias", "stem.linear.weight"]);

        let opt = Optimizer::new(&vs, OptimizerConfig::default());
        tch::no_grad(|| {
            let mut bias = vs.variables()["head.0.linear.bias"].shallow_clone();
            let _ = bias.fill_(f64::NAN);
        });
        let err = save(dir.path(), &state(3), &vs, &opt).unwrap_err();
        assert!(
            matches!(err, CheckpointError::NonFinite { ref name } if name == "head.0.linear.bias")
        );
        assert!(list(dir.path()).unwrap().is_empty());
    }
}
