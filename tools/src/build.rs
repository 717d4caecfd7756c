//! `cvrl-shard build`: decode every input once, in parallel, into shards plus an index.
//!
//! Videos are decoded and compressed in parallel (rayon, one video per task) but written
//! strictly in input order, so a build is deterministic: same inputs and parameters, same
//! shards byte for byte.
//!
//! Crash safety and resume: the unit of commit is a shard. When a shard is full its index
//! rows and failure rows are written to `.building/<shard>.index.parquet` and
//! `.failures.parquet` first, then the shard is renamed from `.tmp` to its final name. On
//! a rerun, shards whose final name exists are kept (they hold a prefix of the ordered
//! input list, which their sidecars say the length of); everything after them is redone.
//! The final `index.parquet`, `failures.parquet` and, last, `manifest.json` are written
//! atomically; a set with a manifest is complete.
//!
//! A write that fails (a full disk) stops the build with an error saying so; the committed
//! shards stay, the shard being written is removed, and a rerun resumes as after a kill.
//! One build at a time writes an output folder (or one part of it): [`build`] runs holding
//! its [`OutputLock`].

use crate::decode::{decode_video, DecodeOptions, VideoInfo};
use crate::inputs::{InputVideo, Inputs, STAGE_CSV, STAGE_MISSING};
use crate::lock::{OutputLock, STATE_DIR};
use anyhow::{bail, ensure, Context, Result};
use cvrl_formats::atomic::tmp_path;
use cvrl_formats::codec::ChunkEncoder;
use cvrl_formats::index::{read_failures, read_index, write_failures, write_index};
use cvrl_formats::manifest::ShardInfo;
use cvrl_formats::{
    write_set, BuildParams, EncodedRecord, FailureRow, FormatError, Manifest, Part, RecordBuilder,
    SetFiles, ShardWriter, VideoRow, VideoSpec,
};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// Everything `build` needs besides the inputs.
#[derive(Clone, Debug)]
pub struct BuildConfig {
    pub out: PathBuf,
    pub params: BuildParams,
    pub part: Option<Part>,
    /// Start over: delete this part's files in `out` first.
    pub force: bool,
}

/// Progress callbacks; the CLI draws a bar, tests pass [`NoProgress`].
pub trait Reporter: Sync {
    fn start(&self, total: usize, already_done: usize);
    fn video_done(&self, frames: u64, failed: Option<&FailureRow>);
    fn finish(&self);
}

/// A reporter that reports nothing.
pub struct NoProgress;
impl Reporter for NoProgress {
    fn start(&self, _: usize, _: usize) {}
    fn video_done(&self, _: u64, _: Option<&FailureRow>) {}
    fn finish(&self) {}
}

/// What a build did.
#[derive(Debug)]
pub struct BuildSummary {
    pub manifest: Manifest,
    pub failures: Vec<FailureRow>,
    /// Inputs taken from shards committed by an earlier, interrupted run.
    pub resumed: usize,
    /// True when the set was already complete and nothing was done.
    pub already_complete: bool,
    pub seconds: f64,
}

/// Outcome of decoding and encoding one input.
enum Encoded {
    Ok(Box<(EncodedRecord, VideoInfo)>),
    Failed(FailureRow),
}

/// Builds (or resumes building) the shard set of `inputs` in `cfg.out`, holding `lock` (the
/// lock of that folder and part) until it is done.
pub fn build(
    inputs: &Inputs,
    cfg: &BuildConfig,
    lock: OutputLock,
    progress: &dyn Reporter,
) -> Result<BuildSummary> {
    ensure!(
        lock.covers(&cfg.out, cfg.part),
        "the lock held is not the one of {} for this part",
        cfg.out.display()
    );
    let started = Instant::now();
    let files = SetFiles::new(cfg.part);
    let state = cfg.out.join(STATE_DIR);
    std::fs::create_dir_all(&state)
        .with_context(|| format!("cannot create {}", state.display()))?;
    let manifest_path = cfg.out.join(files.manifest());
    let params_path =
        state.join(format!("{}params.json", files.shard(0).trim_end_matches("shard-00000.cvrs")));
    if cfg.force {
        remove_part_files(&cfg.out, &files)?;
    }
    if manifest_path.exists() {
        let m = Manifest::load(&manifest_path)?;
        if m.params != cfg.params {
            let diff = param_diff(&m.params, &cfg.params);
            bail!("{} was built with other parameters ({diff}); use --force to rebuild or choose another output folder", manifest_path.display());
        }
        let failures = read_failures(&cfg.out.join(&m.failures))?;
        return Ok(BuildSummary {
            manifest: m,
            failures,
            resumed: 0,
            already_complete: true,
            seconds: 0.0,
        });
    }
    check_resume_params(&params_path, &cfg.params)?;

    let mine: Vec<&InputVideo> = match cfg.part {
        Some(p) => inputs.videos.iter().skip(p.index as usize).step_by(p.count as usize).collect(),
        None => inputs.videos.iter().collect(),
    };
    let mut out = Output::resume(cfg, &files, &state)?;
    let resumed = out.inputs_done;
    progress.start(mine.len(), resumed);
    let written = encode_all(&mut out, &mine[resumed.min(mine.len())..], inputs, cfg, progress)
        .and_then(|()| out.finish(inputs, cfg));
    progress.finish();
    let manifest = written.map_err(|e| out.stopped(e))?;
    let _ = std::fs::remove_file(&params_path);
    drop(lock); // removes the state folder too, unless other parts are still building
    let failures = read_failures(&cfg.out.join(&manifest.failures))?;
    Ok(BuildSummary {
        manifest,
        failures,
        resumed,
        already_complete: false,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The largest record buffer kept for the next videos: a long video's is freed once written
/// rather than held for the rest of the build. A 10 s clip at the default short side takes
/// 11-46 MB (BENCHMARKS.md, Sharder table 2: 44-153 KB a frame, by predictor and size).
const KEEP_BUFFER_MAX: usize = 256 << 20;

/// Decodes and encodes `todo` in parallel, appending to `out` in input order.
///
/// Each record is compressed into a buffer that an earlier record was written from. With a
/// fresh buffer each (and a fresh `Vec` per chunk, copied into the record at its end), every
/// video's compressed bytes were page-faulted in again: `--predictor plain` on the 8 videos
/// of `just bench-shard` took 103,000 minor page faults, and takes 59,000 now.
fn encode_all(
    out: &mut Output,
    todo: &[&InputVideo],
    inputs: &Inputs,
    cfg: &BuildConfig,
    progress: &dyn Reporter,
) -> Result<()> {
    let window = rayon::current_num_threads() * 4;
    let buffers = Mutex::new(Vec::<Vec<u8>>::with_capacity(window));
    for batch in todo.chunks(window) {
        let encoded: Vec<Encoded> = batch
            .par_iter()
            .map_init(
                || ChunkEncoder::new(cfg.params.zstd_level, cfg.params.predictor),
                |enc, input| match enc {
                    Ok(enc) => {
                        let buffer = buffers.lock().map(|mut b| b.pop()).ok().flatten();
                        encode_one(input, &cfg.params, enc, buffer.unwrap_or_default())
                    }
                    Err(e) => Encoded::Failed(failure(input, "encode", &e.to_string())),
                },
            )
            .collect();
        for (input, e) in batch.iter().zip(encoded) {
            match e {
                Encoded::Ok(b) => {
                    let (record, info) = *b;
                    progress.video_done(u64::from(info.num_frames), None);
                    out.append(input, inputs, &record, &info)?;
                    let buffer = record.into_buffer();
                    if buffer.capacity() <= KEEP_BUFFER_MAX {
                        if let Ok(mut b) = buffers.lock() {
                            b.push(buffer);
                        }
                    }
                }
                Encoded::Failed(f) => {
                    progress.video_done(0, Some(&f));
                    out.failures.push(f);
                    out.inputs_done += 1;
                }
            }
        }
    }
    Ok(())
}

/// Whether `e` comes from a full disk, a quota, or a file size limit (`ulimit -f`).
fn out_of_space(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let io = cause
            .downcast_ref::<std::io::Error>()
            .or_else(|| cause.downcast_ref::<FormatError>().and_then(FormatError::io_error));
        io.is_some_and(|io| {
            use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
            matches!(io.kind(), StorageFull | FileTooLarge | QuotaExceeded)
        })
    })
}

/// `name: old there, new now` for each build parameter that differs.
fn param_diff(old: &BuildParams, new: &BuildParams) -> String {
    old.differences(new)
        .iter()
        .map(|(k, a, b)| format!("{k}: {a} there, {b} now"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A resumed build must use the parameters of the run it continues.
fn check_resume_params(path: &Path, params: &BuildParams) -> Result<()> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let before: BuildParams = serde_json::from_str(&text).with_context(|| {
            format!("damaged {}; delete the output folder and rebuild", path.display())
        })?;
        if &before != params {
            let diff = param_diff(&before, params);
            bail!("an interrupted build in this folder used other parameters ({diff}); rerun it with those, or pass --force to start over");
        }
    } else {
        let json = serde_json::to_vec_pretty(params)?;
        cvrl_formats::atomic::atomic_write(path, |f| std::io::Write::write_all(f, &json))?;
    }
    Ok(())
}

/// Deletes the files this build (or part) writes, and nothing else in `out`.
fn remove_part_files(out: &Path, files: &SetFiles) -> Result<()> {
    let shard_prefix = files.shard(0).trim_end_matches("00000.cvrs").to_string();
    let fixed = [files.manifest(), files.index(), files.failures()];
    for dir in [out.to_path_buf(), out.join(STATE_DIR)] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let base = name.trim_end_matches(".tmp");
            let ours = fixed.iter().any(|f| f == base)
                || (base.starts_with(&shard_prefix)
                    && (base.ends_with(".cvrs") || base.ends_with(".parquet")))
                || base == format!("{}params.json", shard_prefix.trim_end_matches("shard-"));
            if ours && e.path().is_file() {
                std::fs::remove_file(e.path())
                    .with_context(|| format!("cannot remove {}", e.path().display()))?;
            }
        }
    }
    Ok(())
}

/// The failure row of `input`; the error of a CSV row names its line.
fn failure(input: &InputVideo, stage: &str, error: &str) -> FailureRow {
    FailureRow {
        source_path: input.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        video_id: input.stored_id().map(str::to_string),
        label: input.label.clone(),
        stage: stage.to_string(),
        error: match &input.csv_row {
            Some(row) => format!("{row}: {error}"),
            None => error.to_string(),
        },
    }
}

/// How the summary and the progress bar show a failure: what failed, the stage, why.
pub fn describe_failure(f: &FailureRow) -> String {
    let what = if f.source_path.is_empty() {
        f.video_id.as_deref().unwrap_or_default()
    } else {
        f.source_path.as_str()
    };
    if what.is_empty() {
        format!("{} failed: {}", f.stage, f.error)
    } else {
        format!("{what}: {} failed: {}", f.stage, f.error)
    }
}

fn decode_options(params: &BuildParams, input: &InputVideo) -> DecodeOptions {
    DecodeOptions {
        short_side: params.short_side,
        fps: params.fps,
        pixel_format: params.pixel_format,
        trim: input.trim,
        max_frames: None,
    }
}

/// Decodes one input and compresses it into a record held in `buffer` (runs on a rayon
/// worker).
fn encode_one(
    input: &InputVideo,
    params: &BuildParams,
    enc: &mut ChunkEncoder,
    buffer: Vec<u8>,
) -> Encoded {
    if let Some(r) = &input.rejected {
        return Encoded::Failed(failure(input, r.stage, &r.reason));
    }
    let Some(path) = &input.path else {
        return Encoded::Failed(failure(input, STAGE_MISSING, "no file for this input"));
    };
    let mut builder: Option<RecordBuilder<'_>> = None;
    let mut encode_error: Option<String> = None;
    let mut enc = Some((enc, buffer));
    let info = decode_video(path, &decode_options(params, input), |layout, frame| {
        if builder.is_none() {
            let spec = VideoSpec {
                video_id: input.video_id.clone(),
                layout: *layout,
                fps_num: 1,
                fps_den: 1,
            };
            let (e, buffer) = enc.take().expect("encoder taken once");
            builder = Some(RecordBuilder::with_buffer(spec, params.chunk_frames, e, buffer)?);
        }
        let b = builder.as_mut().expect("builder set above");
        b.push_frame(frame).map_err(|e| {
            encode_error = Some(e.to_string());
            anyhow::Error::new(e)
        })
    });
    let info = match info {
        Ok(info) => info,
        Err(e) => {
            if let Some(f) = window_past_the_end(input, path) {
                return Encoded::Failed(f);
            }
            return Encoded::Failed(failure(input, &e.stage.to_string(), &e.message));
        }
    };
    if let Some(e) = encode_error {
        return Encoded::Failed(failure(input, "encode", &e));
    }
    let Some(mut builder) = builder else {
        return Encoded::Failed(failure(input, "decode", "no frames decoded"));
    };
    builder.set_fps(info.fps_num, info.fps_den);
    match builder.finish() {
        Ok(record) => Encoded::Ok(Box::new((record, info))),
        Err(e) => Encoded::Failed(failure(input, "encode", &e.to_string())),
    }
}

/// A CSV row's window that starts after its video ends, as a failure naming the row: the
/// decoder only sees that no frame lies in the window (or a jump past the end), which does
/// not say what to fix. Probed only once decoding failed.
fn window_past_the_end(input: &InputVideo, path: &Path) -> Option<FailureRow> {
    let (start, end) = input.trim?;
    let duration = crate::decode::probe(path).ok()?.duration_s?;
    (start >= duration).then(|| {
        let why = format!(
            "the window {start}..{end} s starts after the end of the video ({duration:.1} s \
             long): the download is shorter than the video the row was made from, or the \
             row's times are wrong"
        );
        failure(input, STAGE_CSV, &why)
    })
}

/// The shard being written and the committed state before it.
struct Output {
    out: PathBuf,
    shard_bytes: u64,
    files: SetFiles,
    state: PathBuf,
    /// Committed shards.
    shards: Vec<ShardInfo>,
    committed_rows: Vec<VideoRow>,
    committed_failures: Vec<FailureRow>,
    /// Inputs handled so far (committed + current shard + current failures).
    inputs_done: usize,
    writer: Option<ShardWriter>,
    rows: Vec<VideoRow>,
    failures: Vec<FailureRow>,
}

impl Output {
    /// Keeps the shards of an interrupted run whose sidecars were written, removes the rest.
    fn resume(cfg: &BuildConfig, files: &SetFiles, state: &Path) -> Result<Output> {
        let mut o = Output {
            out: cfg.out.clone(),
            shard_bytes: cfg.params.shard_bytes,
            files: files.clone(),
            state: state.to_path_buf(),
            shards: Vec::new(),
            committed_rows: Vec::new(),
            committed_failures: Vec::new(),
            inputs_done: 0,
            writer: None,
            rows: Vec::new(),
            failures: Vec::new(),
        };
        loop {
            let name = files.shard(o.shards.len());
            let (shard, idx, fail) = o.paths(&name);
            if !(shard.exists() && idx.exists() && fail.exists()) {
                break;
            }
            let rows = read_index(&idx)?;
            let failures = read_failures(&fail)?;
            let bytes = std::fs::metadata(&shard)
                .with_context(|| format!("cannot stat {}", shard.display()))?
                .len();
            o.inputs_done += rows.len() + failures.len();
            o.shards.push(ShardInfo { file: name, bytes, videos: rows.len() as u64 });
            o.committed_rows.extend(rows);
            o.committed_failures.extend(failures);
        }
        // Remove what an interrupted run left beyond the committed shards.
        for k in o.shards.len().. {
            let (shard, idx, fail) = o.paths(&files.shard(k));
            let stale = [tmp_path(&shard), tmp_path(&idx), tmp_path(&fail), shard, idx, fail];
            if !stale.iter().any(|p| p.exists()) {
                break;
            }
            for p in stale.iter().filter(|p| p.exists()) {
                std::fs::remove_file(p)
                    .with_context(|| format!("cannot remove stale {}", p.display()))?;
            }
        }
        Ok(o)
    }

    fn paths(&self, shard_name: &str) -> (PathBuf, PathBuf, PathBuf) {
        (
            self.out.join(shard_name),
            self.state.join(format!("{shard_name}.index.parquet")),
            self.state.join(format!("{shard_name}.failures.parquet")),
        )
    }

    fn append(
        &mut self,
        input: &InputVideo,
        inputs: &Inputs,
        record: &EncodedRecord,
        info: &VideoInfo,
    ) -> Result<()> {
        if self.writer.is_none() {
            let path = self.out.join(self.files.shard(self.shards.len()));
            self.writer = Some(ShardWriter::create(&path)?);
        }
        let writer = self.writer.as_mut().expect("created above");
        let loc = writer.append(record)?;
        let source = input.path.as_ref().expect("decoded inputs have a path");
        let shard = self.files.shard(self.shards.len());
        self.rows.push(VideoRow {
            label: input.label.clone(),
            label_index: input.label.as_deref().and_then(|l| inputs.label_index(l)),
            split: input.split.clone(),
            source_bytes: std::fs::metadata(source).map(|m| m.len()).unwrap_or(0),
            source_codec: info.source_codec.clone(),
            time_start_s: input.trim.map(|t| t.0),
            time_end_s: input.trim.map(|t| t.1),
            factors: input.factors.clone(),
            ..VideoRow::for_record(record, &shard, loc, source.display().to_string())
        });
        self.inputs_done += 1;
        if writer.len() >= self.shard_bytes {
            self.commit_shard()?;
        }
        Ok(())
    }

    /// Sidecars first, then the shard's rename: a shard under its final name is committed.
    fn commit_shard(&mut self) -> Result<()> {
        let Some(writer) = self.writer.take() else { return Ok(()) };
        let name = self.files.shard(self.shards.len());
        let (_, idx, fail) = self.paths(&name);
        write_index(&idx, &self.rows)?;
        write_failures(&fail, &self.failures)?;
        let bytes = writer.finish()?;
        self.shards.push(ShardInfo { file: name, bytes, videos: self.rows.len() as u64 });
        self.committed_rows.append(&mut self.rows);
        self.committed_failures.append(&mut self.failures);
        Ok(())
    }

    /// `e`, which stopped the build, saying what is kept and what to do. The uncommitted
    /// shard's files go: they may be what filled the disk, and a rerun redoes them.
    fn stopped(&mut self, e: anyhow::Error) -> anyhow::Error {
        drop(self.writer.take());
        let (shard, idx, fail) = self.paths(&self.files.shard(self.shards.len()));
        for p in [tmp_path(&shard), tmp_path(&idx), tmp_path(&fail), idx, fail] {
            let _ = std::fs::remove_file(p);
        }
        let (kept, out) = (self.shards.len(), self.out.display());
        if out_of_space(&e) {
            e.context(format!(
                "writing {out} ran out of space (the disk is full, or a quota or file size limit \
                 is reached); its {kept} committed shards are kept: free space and run the same \
                 command again to resume after them"
            ))
        } else {
            e.context(format!(
                "writing {out} stopped; its {kept} committed shards are kept, and running the \
                 same command again resumes after them"
            ))
        }
    }

    fn finish(&mut self, inputs: &Inputs, cfg: &BuildConfig) -> Result<Manifest> {
        self.commit_shard()?;
        self.committed_failures.append(&mut self.failures);
        let (rows, failures) = (&self.committed_rows, &self.committed_failures);
        let manifest = Manifest::new(
            format!("cvrl-shard {}", env!("CARGO_PKG_VERSION")),
            cfg.params.clone(),
            inputs.classes.clone(),
            cfg.part,
            self.shards.clone(),
            rows,
            failures,
        );
        write_set(&self.out, &manifest, rows, failures)?;
        for s in &self.shards {
            let (_, idx, fail) = self.paths(&s.file);
            let _ = (std::fs::remove_file(idx), std::fs::remove_file(fail));
        }
        Ok(manifest)
    }
}
