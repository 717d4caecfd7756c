//! The CVRL pretraining loop: shard set → loader (interval sampling + augmentation) → R3D
//! and projection head → InfoNCE → SGD/LARS under the warm-up + cosine schedule, with a
//! per-step log, TensorBoard events, checkpoints and resume; and the supervised baseline on
//! the same footing.
//!
//! One step ([`Stepper`] does the arithmetic, [`train_with`] the rest):
//!
//! The files: [`config`] (what a run is made of: [`TrainConfig`], presets, [`Plan`]),
//! [`step`] (the arithmetic of a step: [`Stepper`]), [`error`] ([`TrainError`]), and this
//! one, the loop and its reporting. The run directory's file names are
//! [`crate::run_dir::RunDir`]'s.
//!
//! 1. The loader hands over the step's micro-batches (deterministic per step: a resumed run
//!    sees exactly the batches an uninterrupted one would): two augmented views of `B / N`
//!    videos each, `u8` `[B/N, 3, T, S, S]` per view, `N` = `accumulate` (1 by default).
//!    [`AugmentTransform`](crate::augment::AugmentTransform) makes them from the stored
//!    frames.
//! 2. The two views are joined into one batch of `2B/N` clips, moved to the device as `u8`
//!    (a quarter of the bytes of floats; on CUDA from pinned memory, without blocking) and
//!    scaled to `[0, 1]` there. One forward pass over both views means BatchNorm normalises
//!    with statistics of both views together, as SimCLR does (it concatenates the views
//!    along the batch); two separate passes would give each view its own statistics, which
//!    lets the network tell the views apart by their batch statistics.
//! 3. On CUDA the forward pass runs under bf16 autocast (the reference trains in bfloat16 on
//!    TPU); [`info_nce`] computes the loss in f32 whatever it gets. The CPU runs f32.
//! 4. Backward of the loss divided by `N`, so that after the `N` micro-batches the gradient
//!    is their mean; then [`Optimizer::step`] at [`LrSchedule::lr_at`]`(s)`.
//! 5. One JSON line in `RUN_DIR/log.jsonl` ([`StepLog`]) and the same scalars in
//!    `RUN_DIR/tb/events.out.tfevents.*` ([`crate::tensorboard`]); a checkpoint every
//!    `checkpoint_every` steps and at the end (see [`crate::checkpoint`]), each also
//!    refreshing `RUN_DIR/encoder.safetensors`.
//!
//! **Gradient accumulation** (`accumulate = N`) reaches the paper's batch of 1024 videos on
//! one GPU as far as the *update* goes: the learning rate is scaled by the effective batch
//! `B`, and each update averages the gradients of `B` videos. It does not reproduce the
//! paper's *contrastive task*: each micro-batch's InfoNCE only sees its own `2B/N` clips, so
//! a clip has `2B/N − 2` negatives instead of the `2B − 2` (2046) that the reference gathers
//! across TPU cores, and BatchNorm normalises with the statistics of `2B/N` clips instead of
//! the reference's synchronised 2048. SimCLR found that fewer negatives weaken the learned
//! representation, so an accumulated run is expected to land between a small-batch run and
//! the paper's. The loader counts its epochs in micro-batches (`videos / (B/N)` per epoch),
//! so with `N > 1` the `epoch` in the log can run a fraction of a step ahead of the data
//! loader's own epochs; every video is still seen once per loader epoch.
//!
//! **Supervised** (`supervised`): the same backbone, augmentation and schedule, with a linear
//! classifier (`head.linear.*`) on the pooled feature and cross-entropy against the set's
//! labels, both views labelled. Checkpoints and the encoder export are the same, so linear
//! evaluation compares CVRL with it like for like.
//!
//! Out of memory in the forward or backward pass stops the run with
//! [`TrainError::OutOfMemory`], which says to lower `--batch-size` or raise `--accumulate`.
//! A NaN or infinite loss stops the run with [`TrainError::NonFiniteLoss`], which names the
//! last good checkpoint; nothing is saved after the bad step, and a checkpoint is never
//! written from non-finite weights.

mod config;
mod error;
mod step;

pub use config::{Arch, Plan, Preset, RunLength, SplitChoice, TrainConfig};
pub use error::{is_out_of_memory, TrainError};
pub use step::{MicroBatch, Stepper, Views};

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cvrl_formats::ShardSet;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::augment::AugmentTransform;
use crate::checkpoint::{self, CheckpointError, CheckpointState};
use crate::device::pick_device;
use crate::dist::ProcessGroup;
use crate::loader::{ClipTransform, Loader, LoaderConfig};
use crate::model::R3d;
use crate::run_dir::RunDir;
use crate::schedule::LrSchedule;
use crate::tensorboard::EventWriter;
use error::io_err;

/// One line of `log.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    /// 0-based index of the update.
    pub step: u64,
    /// `step / steps_per_epoch`.
    pub epoch: f64,
    pub loss: f64,
    /// The learning rate of this update.
    pub lr: f64,
    /// Clips (two per video) per second of this step, waiting included.
    pub clips_per_s: f64,
    /// Fraction of this step spent waiting for the loader.
    pub data_wait: f64,
    pub step_time_s: f64,
    /// Seconds since this invocation started training.
    pub elapsed_s: f64,
    /// kNN top-1 (%) on the eval sets, on the steps `--eval-every` checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knn_top1: Option<f64>,
    /// Videos of this step's batches that could not be read (a damaged shard) and were
    /// replaced by the next ones; each is named in a warning on stderr.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_videos: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Receives progress; the library never draws (the binary's progress bar implements this).
pub trait Reporter {
    /// Training is about to run steps `start_step..plan.total_steps` on `device`.
    fn start(&mut self, _plan: &Plan, _start_step: u64, _device: &str) {}
    fn step(&mut self, _log: &StepLog) {}
    /// Something the user should read (a checkpoint written, a resumed run's differences).
    fn note(&mut self, _message: &str) {}
    fn finish(&mut self) {}
}

/// A [`Reporter`] that discards everything.
pub struct Silent;
impl Reporter for Silent {}

/// What a finished run did.
#[derive(Clone, Debug)]
pub struct Summary {
    pub plan: Plan,
    /// The first step this invocation ran (0 unless resumed).
    pub start_step: u64,
    /// The loss of every step this invocation ran, in order.
    pub losses: Vec<f64>,
    /// Seconds per step, in order.
    pub step_times: Vec<f64>,
    pub last_checkpoint: Option<PathBuf>,
    pub encoder: PathBuf,
    /// Videos this invocation could not read and replaced (see [`StepLog::skipped_videos`]).
    pub skipped_videos: u64,
}

/// A check of the backbone while it trains (`--eval-every`), such as `cvrl-eval`'s kNN
/// (`crate::eval::knn::KnnMonitor`). The caller makes it, so that training does not depend
/// on evaluation.
pub trait Monitor {
    /// A top-1 accuracy (%) of `backbone`'s features, or why it could not be computed.
    fn top1(&mut self, backbone: &R3d, device: Device) -> Result<f64, String>;
}

/// Keeps the lines of `log.jsonl` for steps before `start_step` (a resumed run rewrites the
/// steps after its checkpoint) and returns the file opened for appending.
fn open_log(path: &Path, start_step: u64) -> Result<fs::File, TrainError> {
    if start_step > 0 && path.exists() {
        let file = fs::File::open(path).map_err(io_err(path))?;
        let mut kept = String::new();
        for line in BufReader::new(file).lines() {
            let line = line.map_err(io_err(path))?;
            let step = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()));
            if step.is_some_and(|s| s < start_step) {
                kept.push_str(&line);
                kept.push('\n');
            }
        }
        let tmp = path.with_extension("jsonl.tmp");
        fs::write(&tmp, kept).map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))?;
    } else if start_step == 0 {
        fs::write(path, "").map_err(io_err(path))?;
    }
    fs::OpenOptions::new().create(true).append(true).open(path).map_err(io_err(path))
}

/// Refuses to start a fresh run over an existing one.
fn check_fresh(run: &RunDir) -> Result<(), TrainError> {
    let dir = run.path();
    if run.log().metadata().is_ok_and(|m| m.len() > 0) {
        return Err(TrainError::RunExists { dir: dir.to_path_buf(), what: RunDir::LOG.into() });
    }
    if dir.is_dir() && !checkpoint::list(dir)?.is_empty() {
        return Err(TrainError::RunExists { dir: dir.to_path_buf(), what: "checkpoints".into() });
    }
    Ok(())
}

/// Creates the run directory, writes `run.json` and opens `log.jsonl` (rank 0's job).
fn start_run_dir(
    run: &RunDir,
    run_json: &serde_json::Value,
    start_step: u64,
) -> Result<fs::File, TrainError> {
    fs::create_dir_all(run.path()).map_err(io_err(run.path()))?;
    let run_path = run.run_json();
    fs::write(&run_path, serde_json::to_vec_pretty(run_json).expect("json"))
        .map_err(io_err(&run_path))?;
    open_log(&run.log(), start_step)
}

/// Top-level fields of two serialised configurations that differ (`out` aside).
fn config_differences(saved: &serde_json::Value, now: &serde_json::Value) -> Vec<String> {
    let (Some(a), Some(b)) = (saved.as_object(), now.as_object()) else { return Vec::new() };
    b.iter()
        .filter(|(k, v)| k.as_str() != "out" && a.get(*k) != Some(*v))
        .map(|(k, v)| {
            format!("{k}: {} -> {v}", a.get(k).map_or("absent".to_owned(), |x| x.to_string()))
        })
        .collect()
}

/// Runs (or, with `resume`, continues) the training `cfg` describes, with CVRL's
/// augmentation ([`AugmentTransform`]). `resume` names a checkpoint directory, a file in
/// one, or a run directory (its latest checkpoint). `--eval-every` needs
/// [`train_with`] and a [`Monitor`].
pub fn train(
    cfg: &TrainConfig,
    resume: Option<&Path>,
    reporter: &mut dyn Reporter,
) -> Result<Summary, TrainError> {
    let transform = AugmentTransform::for_run(cfg.augmentation, cfg.crop)
        .with_min_area(cfg.crop_area_min)
        .with_grayscale(cfg.grayscale_p);
    train_with(cfg, resume, reporter, Arc::new(transform), None, None)
}

/// [`train`] with another clip transform (an augmentation ablation, or a milder one for
/// tests), which must produce `u8` `[3, frames, crop, crop]` clips, the check
/// `cfg.eval_every` asks for (on rank 0), and, for one rank of a data-parallel run, its
/// process `group`.
///
/// Every rank runs this with the same configuration; each takes its share of every batch
/// (`cfg.batch_size` is the global batch), and rank 0 alone writes the run directory.
pub fn train_with(
    cfg: &TrainConfig,
    resume: Option<&Path>,
    reporter: &mut dyn Reporter,
    transform: Arc<dyn ClipTransform>,
    monitor: Option<&mut dyn Monitor>,
    group: Option<&ProcessGroup>,
) -> Result<Summary, TrainError> {
    let (rank, ranks) = group.map_or((0, 1), |g| (g.rank(), g.world_size()));
    cfg.validate()?;
    let (frames, crop) = (cfg.frames as usize, cfg.crop as usize);
    // A bad --device fails here, before the (slower) shard set is opened.
    let device = pick_device(cfg.device)?;
    if cfg.augment_on.on_device(device) {
        match transform.views() {
            None => {
                return Err(TrainError::Config(
                    "this clip transform runs on the host only: pass --augment-on host".into(),
                ))
            }
            Some(views) if views[0].out_size as usize != crop => {
                return Err(TrainError::Config(format!(
                    "the clip transform makes {0} x {0} frames, not {crop} x {crop}",
                    views[0].out_size
                )))
            }
            Some(_) => {}
        }
    } else if transform.output_len(frames) != 3 * frames * crop * crop {
        return Err(TrainError::Config(format!(
            "the clip transform makes {} bytes per clip, not 3 x {frames} x {crop} x {crop}",
            transform.output_len(frames)
        )));
    }
    if cfg.eval_every > 0 && rank == 0 && monitor.is_none() {
        return Err(TrainError::Eval("no check of the backbone was set up".into()));
    }
    if let Some(n) = cfg.threads {
        tch::set_num_threads(n.max(1));
    }
    let set = open_training_set(cfg, reporter)?;
    let labels = if cfg.supervised { Some(video_labels(cfg, &set)?) } else { None };
    let plan = Plan::new(cfg, set.len())?;
    let mut stepper = Stepper::new(cfg, cfg.supervised.then(|| set.classes().len()), group)?;
    let run = RunDir::new(&cfg.out);
    let config_json = serde_json::to_value(cfg).expect("the configuration serialises");
    let (start_step, last_checkpoint) =
        restore(cfg, resume, &run, &mut stepper, &config_json, reporter, (rank, ranks))?;
    stepper.sync_weights(start_step)?;
    let log = if rank == 0 {
        let run_json = serde_json::json!({ "config": &config_json, "plan": plan,
            "model": cfg.model_description(), "device": crate::device::describe(stepper.device()),
            "world_size": ranks, "start_step": start_step });
        Some(start_run_dir(&run, &run_json, start_step)?)
    } else {
        None
    };
    let summary = Summary {
        plan,
        start_step,
        losses: Vec::new(),
        step_times: Vec::new(),
        last_checkpoint,
        encoder: run.encoder(),
        skipped_videos: 0,
    };
    if start_step >= plan.total_steps {
        reporter.note(&format!("the run is already complete ({} steps)", plan.total_steps));
        if rank == 0 {
            // A run killed while exporting its encoder after the last checkpoint left a
            // half-written export: finish the export and clear what the kill left.
            if !summary.encoder.exists() {
                checkpoint::export_encoder(&stepper.vs, &summary.encoder)?;
            }
            checkpoint::prune(&cfg.out, cfg.keep_checkpoints)?;
        }
        return Ok(summary);
    }
    let tb = match rank {
        0 => Some(EventWriter::create(&run.tensorboard(), start_step)?),
        _ => None,
    };
    // The loader hands out micro-batches: step s is its batches s·N .. s·N + N - 1.
    let loader_cfg = LoaderConfig {
        batch_size: plan.micro_batch,
        workers: cfg.workers.max(1),
        prefetch: cfg.prefetch.max(1),
        seed: cfg.seed,
        clip: cfg.clip(),
        interval: cfg.interval,
        rank,
        ranks,
        on_device: cfg.augment_on.on_device(stepper.device()),
    };
    let first_batch = start_step * plan.accumulate as u64;
    let loader = Loader::start(Arc::new(set), loader_cfg, transform, first_batch)
        .map_err(TrainError::Loader)?;
    let mut training = Training {
        cfg,
        run,
        config_json,
        stepper,
        loader,
        labels,
        log,
        tb,
        monitor,
        schedule: plan.schedule(),
        summary,
        ranks,
    };
    reporter.start(&plan, start_step, &crate::device::describe(training.stepper.device()));
    let result = training.run(reporter);
    reporter.finish();
    result
}

/// The videos of `cfg.shards` the run trains on (`cfg.split`); says which on `reporter`
/// when the sets have splits.
pub fn open_training_set(
    cfg: &TrainConfig,
    reporter: &mut dyn Reporter,
) -> Result<ShardSet, TrainError> {
    let shards_err = |error| TrainError::Shards { dirs: cfg.shards.clone(), error };
    let mut set = ShardSet::open_many(&cfg.shards).map_err(shards_err)?;
    let splits = set.splits();
    let all = set.len();
    let keep = match &cfg.split {
        SplitChoice::All => None,
        SplitChoice::Auto if splits.is_empty() => None,
        SplitChoice::Auto if splits.iter().any(|s| s == "train") => Some("train"),
        SplitChoice::Auto => {
            return Err(TrainError::Config(format!(
                "the shard set has the splits {} and no train split: pass --split NAME or \
                 --split all",
                splits.join(", ")
            )))
        }
        SplitChoice::Named(name) => Some(name.as_str()),
    };
    match keep {
        Some(split) => {
            set.retain_split(split).map_err(shards_err)?;
            reporter.note(&format!(
                "training on the {split} split: {} of the set's {all} videos (splits: {}; \
                 --split all takes every video)",
                set.len(),
                splits.join(", ")
            ));
        }
        None if !splits.is_empty() => {
            reporter.note(&format!("training on every split ({}): {all} videos", splits.join(", ")))
        }
        None => {}
    }
    Ok(set)
}

/// Loads the checkpoint `resume` names into `stepper`, or checks that `run` holds no run
/// yet and loads `--init-encoder`; returns the first step to run and the checkpoint.
fn restore(
    cfg: &TrainConfig,
    resume: Option<&Path>,
    run: &RunDir,
    stepper: &mut Stepper,
    config_json: &serde_json::Value,
    reporter: &mut dyn Reporter,
    (rank, ranks): (usize, usize),
) -> Result<(u64, Option<PathBuf>), TrainError> {
    let fresh = |stepper: &mut Stepper, reporter: &mut dyn Reporter| {
        if let Some(init) = &cfg.init_encoder {
            checkpoint::load_backbone(&stepper.vs, init)?;
            reporter.note(&format!("backbone initialised from {}", init.display()));
        }
        Ok((0, None))
    };
    let Some(path) = resume else {
        if rank == 0 {
            check_fresh(run)?;
        }
        return fresh(stepper, reporter);
    };
    let dir = match checkpoint::resolve(path) {
        Ok(dir) => dir,
        // A run stopped before its first checkpoint starts again from nothing.
        Err(CheckpointError::NoCheckpoint { dir }) => {
            reporter.note(&format!("no checkpoint in {} yet: starting at step 0", dir.display()));
            return fresh(stepper, reporter);
        }
        Err(e) => return Err(e.into()),
    };
    let state =
        match checkpoint::load(&dir, &stepper.vs, &mut stepper.optimizer, &cfg.model_description())
        {
            Ok(state) => state,
            // Another model's checkpoint is not damaged: no earlier one would fit either.
            Err(error @ CheckpointError::OtherModel { .. }) => return Err(error.into()),
            Err(error) => {
                let previous = checkpoint::previous(&dir)?;
                return Err(TrainError::Resume { dir, error: Box::new(error), previous });
            }
        };
    let differences = config_differences(&state.config, config_json);
    if !differences.is_empty() {
        reporter.note(&format!(
            "resuming {} with a changed configuration: {}",
            dir.display(),
            differences.join(", ")
        ));
    }
    if state.world_size != ranks {
        reporter.note(&format!(
            "warning: {} was written by {} rank(s), this run has {ranks}: it goes on with the \
             same batches, split among the ranks anew (BatchNorm statistics without --sync-bn, \
             and float sums, differ from an uninterrupted run)",
            dir.display(),
            state.world_size
        ));
    }
    reporter.note(&format!("resumed from {} at step {}", dir.display(), state.step));
    Ok((state.step, Some(dir)))
}

/// A run in progress: everything the steps share.
struct Training<'a, 'm> {
    cfg: &'a TrainConfig,
    run: RunDir,
    config_json: serde_json::Value,
    stepper: Stepper,
    loader: Loader,
    /// The class of every video (supervised training only).
    labels: Option<Vec<i64>>,
    /// Rank 0's log and TensorBoard writer; other ranks write nothing.
    log: Option<fs::File>,
    tb: Option<EventWriter>,
    monitor: Option<&'m mut dyn Monitor>,
    schedule: LrSchedule,
    summary: Summary,
    /// Processes training together (1 alone).
    ranks: usize,
}

impl Training<'_, '_> {
    /// Runs the remaining steps, logging and checkpointing as it goes.
    fn run(&mut self, reporter: &mut dyn Reporter) -> Result<Summary, TrainError> {
        let plan = self.summary.plan;
        let started = Instant::now();
        for step in self.summary.start_step..plan.total_steps {
            let t0 = Instant::now();
            let lr = self.schedule.lr_at(step);
            let (loss, wait, skipped_videos) = self.step(step, lr)?;
            if !loss.is_finite() {
                let last_checkpoint = self.summary.last_checkpoint.clone();
                return Err(TrainError::NonFiniteLoss { step, loss, last_checkpoint });
            }
            let step_time = t0.elapsed().as_secs_f64();
            let entry = StepLog {
                step,
                epoch: step as f64 / plan.steps_per_epoch as f64,
                loss,
                lr,
                clips_per_s: 2.0 * self.cfg.batch_size as f64 / step_time,
                data_wait: wait / step_time,
                step_time_s: step_time,
                elapsed_s: started.elapsed().as_secs_f64(),
                knn_top1: self.check(step)?,
                skipped_videos,
            };
            self.record(&entry, reporter)?;
            let done = step + 1;
            let every = self.cfg.checkpoint_every;
            let due = (every > 0 && done % every == 0) || done == plan.total_steps;
            if due && self.log.is_some() {
                self.checkpoint(step, loss, reporter)?;
            }
        }
        if let Some(log) = &self.log {
            log.sync_all().map_err(io_err(&self.run.log()))?;
        }
        Ok(self.summary.clone())
    }

    /// One optimiser step over the step's micro-batches: the mean loss, the seconds spent
    /// waiting for the loader and the videos it skipped.
    fn step(&mut self, step: u64, lr: f64) -> Result<(f64, f64, u64), TrainError> {
        let plan = self.summary.plan;
        let mut wait = 0.0;
        let mut skipped = 0;
        let mut batch_labels = Vec::with_capacity(plan.micro_batch);
        let mut losses: Vec<Tensor> = Vec::with_capacity(plan.accumulate);
        self.stepper.zero_grad();
        for _ in 0..plan.accumulate {
            let t_wait = Instant::now();
            let batch = self.loader.next_batch().ok_or(TrainError::LoaderStopped { step })?;
            wait += t_wait.elapsed().as_secs_f64();
            skipped += u64::from(batch.skipped);
            if let Some(labels) = &self.labels {
                batch_labels.clear();
                batch_labels.extend(batch.videos.iter().map(|&v| labels[v as usize]));
            }
            let micro = MicroBatch {
                views: Views::of(&batch.clips),
                labels: self.labels.is_some().then_some(batch_labels.as_slice()),
            };
            losses.push(self.stepper.backward(step, &micro)?);
            // The clips are on the device now: the batch's buffers can be filled again.
            self.loader.recycle(batch);
        }
        Ok((self.stepper.update(step, lr, &losses)?, wait, skipped))
    }

    /// The `--eval-every` check, on the steps it is due.
    fn check(&mut self, step: u64) -> Result<Option<f64>, TrainError> {
        let Some(monitor) = self.monitor.as_deref_mut() else { return Ok(None) };
        let done = step + 1;
        if !done.is_multiple_of(self.cfg.eval_every) && done != self.summary.plan.total_steps {
            return Ok(None);
        }
        let top1 = monitor.top1(self.stepper.backbone(), self.stepper.device());
        top1.map(Some).map_err(TrainError::Eval)
    }

    /// Writes the step's line of `log.jsonl`, its TensorBoard scalars, and tells `reporter`.
    fn record(&mut self, entry: &StepLog, reporter: &mut dyn Reporter) -> Result<(), TrainError> {
        self.summary.losses.push(entry.loss);
        self.summary.step_times.push(entry.step_time_s);
        self.summary.skipped_videos += entry.skipped_videos;
        reporter.step(entry);
        let (Some(log), Some(tb)) = (&mut self.log, &mut self.tb) else { return Ok(()) };
        let step = entry.step;
        if let Some(top1) = entry.knn_top1 {
            tb.scalars(step, &[("eval/knn_top1", top1)])?;
            reporter.note(&format!("step {}: kNN top-1 {top1:.1}%", step + 1));
        }
        let mut line = serde_json::to_string(entry).expect("json");
        line.push('\n');
        log.write_all(line.as_bytes()).map_err(io_err(&self.run.log()))?;
        tb.scalars(
            step,
            &[
                ("train/loss", entry.loss),
                ("train/lr", entry.lr),
                ("train/clips_per_s", entry.clips_per_s),
                ("train/data_wait", entry.data_wait),
                ("train/step_time_s", entry.step_time_s),
                ("train/epoch", entry.epoch),
            ],
        )?;
        Ok(())
    }

    /// Saves the checkpoint after `step`, refreshes the exported encoder and prunes old
    /// checkpoints. Non-finite weights stop the run instead, naming the last good one.
    fn checkpoint(
        &mut self,
        step: u64,
        loss: f64,
        reporter: &mut dyn Reporter,
    ) -> Result<(), TrainError> {
        let cfg = self.cfg;
        let state = CheckpointState {
            world_size: self.ranks,
            ..CheckpointState::new(
                step + 1,
                cfg.seed,
                cfg.model_description(),
                Some(loss),
                self.config_json.clone(),
            )
        };
        let out = self.run.path();
        let dir = match checkpoint::save(out, &state, &self.stepper.vs, &self.stepper.optimizer) {
            Ok(dir) => dir,
            Err(CheckpointError::NonFinite { name }) => {
                let last_checkpoint = self.summary.last_checkpoint.clone();
                return Err(TrainError::NonFiniteWeights { step, name, last_checkpoint });
            }
            Err(e) => return Err(e.into()),
        };
        checkpoint::export_encoder(&self.stepper.vs, &self.summary.encoder)?;
        checkpoint::prune(out, cfg.keep_checkpoints)?;
        reporter.note(&format!("checkpoint {}", dir.display()));
        self.summary.last_checkpoint = Some(dir);
        Ok(())
    }
}

/// The class of every video of the set, for `--supervised`; an error naming what is
/// missing when the set has no classes or some videos no label.
fn video_labels(cfg: &TrainConfig, set: &ShardSet) -> Result<Vec<i64>, TrainError> {
    let no_labels = |reason: String| TrainError::NoLabels { dirs: cfg.shards.clone(), reason };
    if set.classes().is_empty() {
        return Err(no_labels(
            "has no classes (it was built from a flat folder or a CSV without labels; \
             videos/<class>/<video> folders give one)"
                .into(),
        ));
    }
    let unlabelled: Vec<&str> = set
        .videos()
        .iter()
        .filter(|v| v.label_index.is_none())
        .map(|v| v.video_id.as_str())
        .collect();
    if let Some(first) = unlabelled.first() {
        return Err(no_labels(format!(
            "has {} videos without a label (of {}; the first is {first})",
            unlabelled.len(),
            set.len()
        )));
    }
    Ok(set.videos().iter().map(|v| i64::from(v.label_index.unwrap_or(0))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_differences_name_the_changed_fields() {
        let a = TrainConfig::preset(Preset::Demo, vec!["s".into()], "o1".into());
        let b = TrainConfig { lr: 0.5, out: "o2".into(), ..a.clone() };
        let d = config_differences(
            &serde_json::to_value(&a).unwrap(),
            &serde_json::to_value(&b).unwrap(),
        );
        assert_eq!(d, ["lr: 0.32 -> 0.5"]);
    }
}
