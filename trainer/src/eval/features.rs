//! Pooled backbone features of every video of a shard set: computed once by the frozen
//! encoder (eval-mode BatchNorm, no gradients), then cached as safetensors under a key made
//! of the weights' digest, the set's contents (video ids and record checksums) and the views,
//! so a changed checkpoint, set or sampling never reuses stale features; the labels are
//! read from the index each time, so every target shares one extraction.

use std::fmt;
use std::fs;
use std::path::Path;

use cvrl_formats::ShardSet;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use super::views::ViewSpec;
use super::{digest, Encoder, EvalError};
use crate::checkpoint;
use crate::model::{clips_to_input, R3d};

/// What a probe predicts: the class of the index, or one of the video's recorded factors
/// (for the proxy dataset: `object`, `motion`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Class,
    Factor(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Class => write!(f, "class"),
            Target::Factor(name) => write!(f, "{name}"),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = std::convert::Infallible;
    /// `class`, or the name of a factor column.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if s == "class" { Target::Class } else { Target::Factor(s.to_owned()) })
    }
}

/// Features `[N, V, D]` (`f32`, CPU) of `N` videos with `V` views each, and their labels.
pub struct Features {
    pub data: Tensor,
    /// Label index of each video, `[N]` `i64`, into `names`.
    pub labels: Tensor,
    /// The label names, in index order.
    pub names: Vec<String>,
}

impl Features {
    /// Videos, views per video, feature channels.
    pub fn shape(&self) -> (i64, i64, i64) {
        let s = self.data.size();
        (s[0], s[1], s[2])
    }
}

/// The label of every video of `set` for `target`, as indices into the returned names.
/// With `names` given (the training set's), the same indices are used and a label outside
/// them is an error.
pub fn labels(
    set: &ShardSet,
    target: &Target,
    names: Option<&[String]>,
) -> Result<(Vec<i64>, Vec<String>), EvalError> {
    let values: Vec<Option<String>> = set
        .videos()
        .iter()
        .map(|row| match target {
            Target::Class => row.label.clone(),
            Target::Factor(name) => row.factors.get(name).cloned(),
        })
        .collect();
    if let Some(i) = values.iter().position(Option::is_none) {
        return Err(EvalError::Labels(format!(
            "video {} has no {target} label (shard sets built from class folders or a labelled \
             CSV have classes; factors come from `cvrl-shard build --factors`)",
            set.videos()[i].video_id
        )));
    }
    let names: Vec<String> = match names {
        Some(n) => n.to_vec(),
        None => {
            let mut n: Vec<String> = values.iter().flatten().cloned().collect();
            n.sort();
            n.dedup();
            n
        }
    };
    let labels = values
        .iter()
        .flatten()
        .map(|v| {
            names.iter().position(|n| n == v).map(|p| p as i64).ok_or_else(|| {
                EvalError::Labels(format!("{target} {v:?} is not among the training labels"))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok((labels, names))
}

/// What identifies a set's contents: its videos and their checksums.
fn set_digest(set: &ShardSet) -> String {
    let text: String =
        set.videos().iter().map(|r| format!("{}:{:08x};", r.video_id, r.checksum)).collect();
    digest(text)
}

/// Extracts (or loads from `cache`) the features of `set` for `spec`; `names` as in
/// [`labels`]. `progress` is called with the number of videos done.
pub fn features(
    encoder: &Encoder,
    set: &ShardSet,
    spec: &ViewSpec,
    target: &Target,
    names: Option<&[String]>,
    cache: Option<&Path>,
    progress: &dyn Fn(usize),
) -> Result<Features, EvalError> {
    spec.validate()?;
    let (labels, names) = labels(set, target, names)?;
    // The labels are not part of the key: one extraction serves every target.
    let key = digest(format!("{}|{}|{spec}", encoder.digest, set_digest(set)));
    let path = cache.map(|dir| dir.join(format!("features-{key}.safetensors")));
    if let Some(data) = path.as_deref().and_then(read_cached) {
        if data.size()[0] == labels.len() as i64 {
            return Ok(Features { data, labels: Tensor::from_slice(&labels), names });
        }
    }
    let device = encoder.vs.device();
    let data = extract(&encoder.backbone, device, set, spec, progress)?;
    if let (Some(dir), Some(path)) = (cache, &path) {
        write_cached(dir, path, &data)?;
    }
    Ok(Features { data, labels: Tensor::from_slice(&labels), names })
}

fn read_cached(path: &Path) -> Option<Tensor> {
    let tensors = Tensor::read_safetensors(path).ok()?;
    tensors.into_iter().find(|(n, _)| n == "features").map(|(_, t)| t)
}

/// Writes through a temporary file and a rename, so an interrupted write leaves no cache.
fn write_cached(dir: &Path, path: &Path, data: &Tensor) -> Result<(), EvalError> {
    fs::create_dir_all(dir).map_err(EvalError::io(dir))?;
    let tensors = [("features".to_owned(), data.shallow_clone())];
    Ok(checkpoint::write_tensors_atomic(path, &tensors)?)
}

/// Clips through the frozen backbone in batches of about this many.
const CLIPS_PER_BATCH: usize = 32;

/// Runs `backbone` (eval-mode BatchNorm, no gradients) on `device` over every view of every
/// video: `[N, V, D]` on the CPU.
pub fn extract(
    backbone: &R3d,
    device: Device,
    set: &ShardSet,
    spec: &ViewSpec,
    progress: &dyn Fn(usize),
) -> Result<Tensor, EvalError> {
    let views = spec.count();
    let per_video = views * spec.clip_bytes();
    let videos_per_batch = (CLIPS_PER_BATCH / views).max(1);
    let (t, s) = (i64::from(spec.clip.frames), i64::from(spec.size));
    let mut out = Vec::with_capacity(set.len());
    let mut buf = Vec::new();
    for first in (0..set.len()).step_by(videos_per_batch) {
        let n = videos_per_batch.min(set.len() - first);
        buf.resize(n * per_video, 0);
        render_batch(set, spec, first, &mut buf[..n * per_video])?;
        let clips =
            Tensor::from_slice(&buf[..n * per_video]).view([(n * views) as i64, 3, t, s, s]);
        let input = clips_to_input(&clips, device)
            .map_err(|e| EvalError::Config(format!("model input: {e}")))?;
        let pooled = tch::no_grad(|| backbone.forward_features_t(&input, false));
        out.push(pooled.to_device(Device::Cpu).to_kind(Kind::Float).view([
            n as i64,
            views as i64,
            -1,
        ]));
        progress(first + n);
    }
    if out.is_empty() {
        return Err(EvalError::Labels("the shard set has no videos".into()));
    }
    Ok(Tensor::cat(&out, 0))
}

/// Cuts the views of videos `first..` into `buf`, one video per task.
fn render_batch(
    set: &ShardSet,
    spec: &ViewSpec,
    first: usize,
    buf: &mut [u8],
) -> Result<(), EvalError> {
    let per_video = spec.count() * spec.clip_bytes();
    buf.par_chunks_mut(per_video).enumerate().try_for_each_init(
        || (set.reader(), Vec::new()),
        |(reader, frames), (j, out)| {
            let reader = reader.as_mut().map_err(|e| EvalError::Config(e.to_string()))?;
            spec.render(set, reader, first + j, frames, out)
        },
    )
}
