//! `cvrl._cvrl.ShardSet`: one open shard set (or several opened as one), shared by every
//! thread that reads from it.
//!
//! Reading releases the GIL and decodes with a [`FrameReader`] of its own into output
//! buffers that become [`Frames`] once filled, so any number of Python threads read at
//! once; the buffers are reused between reads ([`crate::frames`]). The memory maps are the
//! process's own, and `cvrl.torch` reopens a set in each DataLoader worker process. Frames
//! come out either as stored (`yuv420p` planes, or `rgb24`) or as `rgb24`, converted by
//! [`yuv420p_to_rgb24`]: the conversion of every other RGB reader of cvrl. An RGB read can
//! cut each clip to a box and mirror it, converting only the box's pixels (what a random
//! crop and flip keep).
//!
//! Clip placement is [`cvrl_formats::sampler`]'s, with the same per-sample seeding as the
//! trainer's loader, so a Python dataset draws the pairs the Rust code would.

use std::path::PathBuf;
use std::sync::Arc;

use cvrl_formats::pixel::{copy_rgb_row, yuv420p_to_rgb24, yuv420p_to_rgb24_crop, Crop};
use cvrl_formats::sampler::{linspace_starts, sample_pair, sample_rng, ClipSpec};
use cvrl_formats::{FormatError, FrameLayout, FrameReader, PixelFormat, ShardSet as Set};
use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;
use rand::RngExt as _;

use crate::error::{open_error, read_error};
use crate::frames::{output_buffer, Frames, Spare, Spares};
use crate::index::IndexStream;

/// Facts about one video: `(video_id, width, height, pixel_format, num_frames, fps,
/// label_index)`, the label index `None` for an unlabelled video.
type VideoInfo = (String, u32, u32, String, u32, f64, Option<i32>);

/// A shard set opened for reading (`cvrl.ShardSet` wraps it).
#[pyclass(frozen, module = "cvrl._cvrl")]
pub struct ShardSet {
    set: Arc<Set>,
    /// Reader buffers that finished reads left for the next.
    spares: Spares,
}

#[pymethods]
impl ShardSet {
    /// Opens the sets in `paths` as one (their class lists and pixel formats must agree).
    #[new]
    fn new(py: Python<'_>, paths: Vec<PathBuf>) -> PyResult<Self> {
        let set = py.detach(|| Set::open_many(&paths)).map_err(open_error)?;
        Ok(ShardSet { set: Arc::new(set), spares: Spares::default() })
    }

    fn __len__(&self) -> usize {
        self.set.len()
    }

    /// The class names of the set, in label-index order.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.set.classes().to_vec()
    }

    /// The index rows, row `i` for video `i`, as an Arrow stream.
    fn index_stream(&self) -> PyResult<IndexStream> {
        let batch = cvrl_formats::index::index_batch(self.set.videos())
            .map_err(|e| PyValueError::new_err(format!("index as Arrow: {e}")))?;
        Ok(IndexStream::new(batch))
    }

    /// The position of the video with id `video_id`, or `None`.
    fn find(&self, video_id: &str) -> Option<usize> {
        self.set.find(video_id)
    }

    /// See [`VideoInfo`].
    fn video(&self, video: usize) -> PyResult<VideoInfo> {
        let row = self.row(video)?;
        Ok((
            row.video_id.clone(),
            row.width,
            row.height,
            row.pixel_format.clone(),
            row.num_frames,
            row.fps(),
            row.label_index,
        ))
    }

    /// The shard file holding `video`.
    fn shard_path(&self, video: usize) -> PyResult<PathBuf> {
        self.row(video)?;
        Ok(self.set.shard_path(video).to_path_buf())
    }

    /// Frames `clips[k]` of `video` into one [`Frames`] per clip, frame after frame: `rgb24`
    /// (`rgb`), else as stored (`yuv420p` planes; refused for an `rgb24` video). RGB reads
    /// only: `boxes[k]`, `(top, left, height, width)`, cuts every frame of clip `k` to that
    /// box, and `flips[k]` mirrors it left to right; only the box's pixels are converted.
    /// Decodes with the GIL released.
    #[pyo3(signature = (video, clips, rgb, boxes=None, flips=None))]
    fn read(
        &self,
        py: Python<'_>,
        video: usize,
        clips: Vec<Vec<u32>>,
        rgb: bool,
        boxes: Option<Vec<(u32, u32, u32, u32)>>,
        flips: Option<Vec<bool>>,
    ) -> PyResult<Vec<Frames>> {
        let row = self.row(video)?;
        let layout = self.set.layout(video);
        if !rgb && layout.format() != PixelFormat::Yuv420p {
            return Err(PyValueError::new_err(format!(
                "video {:?} is stored as {}, not yuv420p: read it as RGB",
                row.video_id,
                layout.format()
            )));
        }
        let cuts = cuts(&row.video_id, &layout, clips.len(), rgb, boxes, flips)?;
        let (set, spares) = (&*self.set, &self.spares);
        let outs = py
            .detach(|| {
                let mut outs: Vec<Vec<u8>> = (clips.iter().zip(&cuts))
                    .map(|(c, cut)| output_buffer(c.len() * out_frame_bytes(&layout, rgb, *cut)))
                    .collect();
                let Spare { reader, mut frames } = spares.take()?;
                let mut reader = set.reader_with(reader);
                let filled =
                    fill(set, &mut reader, &mut frames, video, &clips, rgb, &cuts, &mut outs);
                spares.put(Spare { reader: reader.into_buffers(), frames });
                filled.map(|()| outs)
            })
            .map_err(|e| read_error(e, set.shard_path(video), &row.video_id))?;
        Ok(outs.into_iter().map(Frames::new).collect())
    }

    /// The stored frame indices of the two clips of a CVRL positive pair of `video`
    /// (`sample_pair` of the Rust sampler), drawn by the generator of `(seed, epoch,
    /// position)`.
    #[allow(clippy::too_many_arguments)]
    fn pair_indices(
        &self,
        video: usize,
        frames: u32,
        stride: u32,
        base_fps: f64,
        interval: &str,
        seed: u64,
        epoch: u64,
        position: u64,
    ) -> PyResult<(Vec<u32>, Vec<u32>)> {
        let row = self.row(video)?;
        let clip = clip_spec(frames, stride, base_fps)?;
        let dist = interval.parse().map_err(PyValueError::new_err)?;
        let mut rng = sample_rng(seed, epoch, position);
        let starts = sample_pair(&mut rng, dist, &clip, row.num_frames, row.fps());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        clip.indices(starts.first, row.num_frames, row.fps(), &mut a);
        clip.indices(starts.second, row.num_frames, row.fps(), &mut b);
        Ok((a, b))
    }

    /// The stored frame indices of `temporal` evenly spaced clips of `video`: the test
    /// views of `cvrl-eval` (`linspace_starts`).
    fn view_indices(
        &self,
        video: usize,
        frames: u32,
        stride: u32,
        base_fps: f64,
        temporal: u32,
    ) -> PyResult<Vec<Vec<u32>>> {
        let row = self.row(video)?;
        let clip = clip_spec(frames, stride, base_fps)?;
        let starts = linspace_starts(&clip, row.num_frames, row.fps(), temporal);
        Ok(starts
            .into_iter()
            .map(|s| {
                let mut out = Vec::new();
                clip.indices(s, row.num_frames, row.fps(), &mut out);
                out
            })
            .collect())
    }
}

impl ShardSet {
    fn row(&self, video: usize) -> PyResult<&cvrl_formats::VideoRow> {
        self.set.videos().get(video).ok_or_else(|| {
            PyIndexError::new_err(format!(
                "video {video} out of range: the set has {} videos",
                self.set.len()
            ))
        })
    }
}

/// A seed for the random transform of the sample at `position` of `epoch`: the first draw
/// of that sample's generator after the pair's, kept below 2^63 for `torch.manual_seed`.
#[pyfunction]
pub fn sample_seed(seed: u64, epoch: u64, position: u64) -> u64 {
    // Another stream than the pair's own generator: the pair draws a varying count.
    sample_rng(seed ^ TRANSFORM_STREAM, epoch, position).random::<u64>() >> 1
}

/// Separates the transform's seeds from the pair sampler's.
const TRANSFORM_STREAM: u64 = 0x7472_616e_7366_6f72; // "transfor"

/// Bytes of one output frame: the box of `cut` as RGB, else the whole frame as RGB (`rgb`)
/// or as stored.
fn out_frame_bytes(layout: &FrameLayout, rgb: bool, cut: Cut) -> usize {
    match cut {
        Some((crop, _)) => crop.rgb_bytes(),
        None if rgb => Crop::full(layout).rgb_bytes(),
        None => layout.frame_bytes(),
    }
}

fn clip_spec(frames: u32, stride: u32, base_fps: f64) -> PyResult<ClipSpec> {
    if frames == 0 || stride == 0 || !(base_fps.is_finite() && base_fps > 0.0) {
        return Err(PyValueError::new_err(format!(
            "a clip needs frames >= 1, stride >= 1 and base_fps > 0 (got {frames}, {stride}, \
             {base_fps})"
        )));
    }
    Ok(ClipSpec { frames, stride, base_fps })
}

/// How an RGB read cuts each frame of a clip: a box, and whether to mirror it. `None`: the
/// whole frame as it is.
type Cut = Option<(Crop, bool)>;

/// The cut of each of `n` clips from a read's `boxes` and `flips`, or why they are wrong.
fn cuts(
    video_id: &str,
    layout: &FrameLayout,
    n: usize,
    rgb: bool,
    boxes: Option<Vec<(u32, u32, u32, u32)>>,
    flips: Option<Vec<bool>>,
) -> PyResult<Vec<Cut>> {
    if boxes.is_none() && flips.is_none() {
        return Ok(vec![None; n]);
    }
    if !rgb {
        return Err(PyValueError::new_err("boxes and flips cut RGB reads only, not planes"));
    }
    let count = |what: &str, len: usize| {
        if len == n {
            Ok(())
        } else {
            Err(PyValueError::new_err(format!("{len} {what} for {n} clips: give one per clip")))
        }
    };
    let crops = match boxes {
        None => vec![Crop::full(layout); n],
        Some(b) => {
            count("boxes", b.len())?;
            b.into_iter().map(|b| crop(video_id, layout, b)).collect::<PyResult<_>>()?
        }
    };
    let flips = flips.unwrap_or_else(|| vec![false; n]);
    count("flips", flips.len())?;
    Ok(crops.into_iter().zip(flips).map(Some).collect())
}

/// `(top, left, height, width)` as a [`Crop`] of `layout`'s frames, or why not.
fn crop(
    video_id: &str,
    layout: &FrameLayout,
    (top, left, h, w): (u32, u32, u32, u32),
) -> PyResult<Crop> {
    let c = Crop { x: left, y: top, w, h };
    if !c.fits(layout) {
        return Err(PyValueError::new_err(format!(
            "box (top {top}, left {left}, height {h}, width {w}) is empty or leaves the \
             {}x{} frames of video {video_id:?}",
            layout.width(),
            layout.height()
        )));
    }
    Ok(c)
}

/// Decodes each clip of `video` into its output buffer (GIL released: no Python here),
/// one chunk's frames at a time (through `frames`), converted while they are still in
/// cache; each chunk is still decoded once.
#[allow(clippy::too_many_arguments)]
fn fill(
    set: &Set,
    reader: &mut FrameReader<'_>,
    frames: &mut Vec<u8>,
    video: usize,
    clips: &[Vec<u32>],
    rgb: bool,
    cuts: &[Cut],
    outs: &mut [Vec<u8>],
) -> Result<(), FormatError> {
    let layout = set.layout(video);
    let chunks = &set.videos()[video].chunks;
    for ((indices, cut), out) in clips.iter().zip(cuts).zip(outs.iter_mut()) {
        let out_bytes = out_frame_bytes(&layout, rgb, *cut);
        let mut k = 0;
        while k < indices.len() {
            let c = chunks.partition_point(|e| e.first_frame + e.num_frames <= indices[k]);
            let in_chunk = |i: u32| {
                chunks
                    .get(c)
                    .is_some_and(|e| i >= e.first_frame && i - e.first_frame < e.num_frames)
            };
            let run = indices[k..].iter().take_while(|&&i| in_chunk(i)).count().max(1);
            frames.clear();
            reader.read_indices(video, &indices[k..k + run], frames)?;
            let dst = out[k * out_bytes..(k + run) * out_bytes].chunks_exact_mut(out_bytes);
            for (src, dst) in frames.chunks_exact(layout.frame_bytes()).zip(dst) {
                write_frame(&layout, rgb, *cut, src, dst);
            }
            k += run;
        }
    }
    Ok(())
}

/// One stored frame `src` as the read asks for it: as stored, or RGB (cut).
fn write_frame(layout: &FrameLayout, rgb: bool, cut: Cut, src: &[u8], dst: &mut [u8]) {
    match (rgb && layout.format() == PixelFormat::Yuv420p, cut) {
        (true, None) => yuv420p_to_rgb24(layout, src, dst),
        (true, Some((c, flip))) => yuv420p_to_rgb24_crop(layout, src, c, flip, dst),
        // Stored bytes (planes, or an rgb24 frame), whole or cut row by row.
        (false, None) => dst.copy_from_slice(src),
        (false, Some((c, flip))) => {
            let (row, stored_row) = (3 * c.w as usize, 3 * layout.width() as usize);
            for (r, out) in dst.chunks_exact_mut(row).enumerate() {
                let at = (c.y as usize + r) * stored_row + 3 * c.x as usize;
                copy_rgb_row(&src[at..at + row], out, flip);
            }
        }
    }
}
