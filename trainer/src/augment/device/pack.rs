//! The host half of the device augmentation: a loader worker cuts each clip's crop box out of
//! its stored frames into one byte buffer for the whole batch ([`PackedBatch::push_clip`]),
//! then appends the small tables the device needs ([`PackedBatch::finish`]), so that the
//! batch travels to the device as one buffer in one copy.
//!
//! **What is cut.** For every parameter set the resampling tables are the host's own
//! (`Tables::build`, with the crop box, the output size, chroma siting and the flip), so the
//! device reads exactly the source samples the host reads. Only the rows the vertical taps
//! use (a tap of weight 0 reads nothing) and the columns between the leftmost and rightmost
//! horizontal tap are copied: for `yuv420p` the luma window and both chroma windows, for
//! `rgb24` one window of interleaved bytes. Crops of every size lie back to back with no
//! padding; each packed row gets an entry in a row table (its byte offset and which
//! horizontal table it uses), which is how the device resizes ragged crops in one gather.
//!
//! **The tables** follow the pixels, each array 8-byte aligned so the device can view it in
//! place (`view_dtype`): per packed row its offset and table; per horizontal table the two
//! tap offsets and the weight of the second per output column; per output row (channel,
//! frame, row) the two packed rows and the weight of the second; then per frame the colour
//! factors, and for each step of the pipeline the frames it acts on. Frames are numbered
//! clip-major (`clip * T + t`). [`BatchPlan`] records where each array lies.
//!
//! **Groups.** Contrast needs a mean over the image it jitters: the whole clip in consistent
//! mode (one parameter set), one frame in the per-frame ablation. Each parameter set is one
//! group; the contrast steps carry each frame's group and each group's pixel count.

use crate::augment::blur::MIN_TAP;
use crate::augment::resize::{Axis, Tables};
use crate::augment::{blur_kernel, AugmentError, ClipParams, ColorOp};
use cvrl_formats::{FrameLayout, PixelFormat};

/// Why a clip cannot join a packed batch.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PackError {
    #[error(transparent)]
    Augment(#[from] AugmentError),
    #[error("a clip of {got} frames in a batch of clips of {expected} frames")]
    FrameCount { expected: usize, got: usize },
    #[error("the batch's crops take {bytes} bytes, over the 2 GiB a device gather can index")]
    TooLarge { bytes: usize },
}

/// One array of the tables: byte offset in the packed buffer (a multiple of 8) and length in
/// elements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Section {
    pub(crate) offset: usize,
    pub(crate) len: usize,
}

/// The frames one step acts on: their numbers (`i64`), or every frame of the batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Subset {
    pub(crate) index: Section,
    pub(crate) all: bool,
}

impl Subset {
    pub(crate) fn is_empty(&self) -> bool {
        self.index.len == 0
    }
}

/// The groups of a contrast step: each frame's group, numbered within the step (`i64`), and
/// each group's pixel count per channel (`f64`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Groups {
    pub(crate) of_frame: Section,
    pub(crate) pixels: Section,
}

/// One colour-jitter op for the frames whose drawn order has it at this position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ColourStep {
    pub(crate) op: ColorOp,
    pub(crate) frames: Subset,
    /// Set for [`ColorOp::Contrast`].
    pub(crate) groups: Option<Groups>,
}

/// Rows of the per-frame factor table ([`BatchPlan::factors`], `f32 [4, N]`).
pub(crate) const BRIGHTNESS: usize = 0;
pub(crate) const CONTRAST: usize = 1;
pub(crate) const SATURATION: usize = 2;
/// The hue shift in sixths of a turn, in `[0, 6)`.
pub(crate) const HUE: usize = 3;

/// Where everything of a finished [`PackedBatch`] lies in its bytes, and the shapes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchPlan {
    pub(crate) clips: usize,
    /// Frames per clip.
    pub(crate) frames: usize,
    pub(crate) out_size: usize,
    /// Bytes of cut pixels at the start of the buffer.
    pub(crate) pixels: usize,
    /// Bytes of the whole buffer.
    pub(crate) total: usize,
    /// Horizontal tables (`out_size` taps each).
    pub(crate) tables: usize,
    /// Per packed row: byte offset of its first sample (`i64`) and its table (`i64`).
    pub(crate) row_start: Section,
    pub(crate) row_table: Section,
    /// Per table and output column: offsets of the two taps from the row's start (`i64`)
    /// and the second's weight (`f32`).
    pub(crate) x0: Section,
    pub(crate) x1: Section,
    pub(crate) fx: Section,
    /// Per output row in `[channel, frame, row]` order: the two packed rows (`i64`) and the
    /// second's weight (`f32`).
    pub(crate) y0: Section,
    pub(crate) y1: Section,
    pub(crate) fy: Section,
    /// Frames stored as `yuv420p` (their channels are Y, U, V until converted).
    pub(crate) yuv: Subset,
    /// `f32 [4, N]`: brightness, contrast and saturation factors and the hue shift.
    pub(crate) factors: Section,
    pub(crate) colour: Vec<ColourStep>,
    pub(crate) grayscale: Subset,
    pub(crate) blur: Subset,
    /// `f32 [blurred frames, blur_radius + 1]`: centre tap, then one weight per distance.
    pub(crate) blur_taps: Section,
    pub(crate) blur_radius: usize,
    pub(crate) solarize: Subset,
}

impl BatchPlan {
    /// Clips in the batch.
    pub fn clips(&self) -> usize {
        self.clips
    }
    /// Frames per clip.
    pub fn frames(&self) -> usize {
        self.frames
    }
    /// Side of the square output frames.
    pub fn out_size(&self) -> usize {
        self.out_size
    }
}

/// One plane of one parameter set: where its window lies in a stored frame and how the
/// packed rows map to output rows.
#[derive(Default)]
struct PlaneCut {
    /// Byte offset of the plane in the frame, bytes per plane row, first byte of the window
    /// in a row and bytes of a window row.
    src: usize,
    stride: usize,
    col: usize,
    width: usize,
    /// Plane rows the vertical taps use, ascending.
    rows: Vec<usize>,
    /// Per output row: the two taps as positions in `rows`, and the second's weight.
    taps: Vec<(usize, usize, f32)>,
    /// The horizontal table of this plane.
    table: usize,
    /// Output channels fed by this plane and the byte offset of each within a sample.
    channels: &'static [(usize, usize)],
}

impl PlaneCut {
    fn set(&mut self, x: &Axis, y: &Axis, src: usize, stride: usize, bytes_per_px: usize) {
        self.src = src;
        self.stride = stride;
        self.col = x.lo;
        // `span` reaches the first byte of the rightmost sample; take the whole sample.
        self.width = x.span + bytes_per_px - 1;
        self.rows.clear();
        for o in 0..y.f.len() {
            self.rows.push(y.lo + y.i0[o]);
            if y.f[o] != 0.0 {
                self.rows.push(y.lo + y.i1[o]);
            }
        }
        self.rows.sort_unstable();
        self.rows.dedup();
        let pos = |r: usize| self.rows.binary_search(&(y.lo + r)).expect("a used row");
        self.taps.clear();
        for o in 0..y.f.len() {
            let a = pos(y.i0[o]);
            let b = if y.f[o] != 0.0 { pos(y.i1[o]) } else { a };
            self.taps.push((a, b, y.f[o]));
        }
    }
}

/// The output rows of one channel, in `[frame, row]` order: the two packed rows each
/// interpolates and the second's weight.
#[derive(Default)]
struct OutRows {
    y0: Vec<i64>,
    y1: Vec<i64>,
    fy: Vec<f32>,
}

const YUV_CHANNELS: [&[(usize, usize)]; 3] = [&[(0, 0)], &[(1, 0)], &[(2, 0)]];
const RGB_CHANNELS: &[(usize, usize)] = &[(0, 0), (1, 1), (2, 2)];

/// The crops of a batch of clips, cut on the host and packed back to back, with the tables
/// the device pipeline reads; one per view of a batch, reused across batches (clearing
/// keeps every buffer's capacity). The module doc of [`super`] shows the whole flow.
#[derive(Default)]
pub struct PackedBatch {
    out_size: usize,
    frames: Option<usize>,
    clips: usize,
    bytes: Vec<u8>,
    /// Bytes of pixels; the tables follow once finished.
    pixels: usize,
    finished: bool,
    row_start: Vec<i64>,
    row_table: Vec<i64>,
    x0: Vec<i64>,
    x1: Vec<i64>,
    fx: Vec<f32>,
    /// Per output channel, its output rows.
    y: [OutRows; 3],
    /// Per frame: its parameters, group and whether it is `yuv420p`.
    params: Vec<ClipParams>,
    group: Vec<usize>,
    yuv: Vec<bool>,
    groups: usize,
    plan: BatchPlan,
    tables: Tables,
    planes: [PlaneCut; 3],
    /// Byte offsets of the packed rows of the plane being cut.
    starts: Vec<usize>,
}

impl PackedBatch {
    /// An empty batch of `out_size²` output frames.
    pub fn new(out_size: u32) -> Self {
        PackedBatch { out_size: out_size as usize, ..PackedBatch::default() }
    }

    /// Empties the batch for reuse at `out_size`, keeping its buffers.
    pub fn clear(&mut self, out_size: u32) {
        self.out_size = out_size as usize;
        self.frames = None;
        self.clips = 0;
        self.bytes.clear();
        self.pixels = 0;
        self.finished = false;
        for v in [&mut self.row_start, &mut self.row_table, &mut self.x0, &mut self.x1] {
            v.clear();
        }
        self.fx.clear();
        for rows in &mut self.y {
            rows.y0.clear();
            rows.y1.clear();
            rows.fy.clear();
        }
        self.params.clear();
        self.group.clear();
        self.yuv.clear();
        self.groups = 0;
    }

    /// Clips pushed so far.
    pub fn clips(&self) -> usize {
        self.clips
    }

    /// The buffer to copy to the device: the cut pixels, then (once finished) the tables.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Where things lie in [`PackedBatch::bytes`], once finished.
    pub fn plan(&self) -> Option<&BatchPlan> {
        self.finished.then_some(&self.plan)
    }

    /// Cuts the crop boxes of a clip of `t` frames (stored back to back in `frames`) into
    /// the batch: `params` holds one set for the whole clip (consistent mode) or one per
    /// frame, as for [`crate::augment::augment_clip`]. Every clip of a batch has `t` frames.
    pub fn push_clip(
        &mut self,
        layout: &FrameLayout,
        frames: &[u8],
        t: usize,
        params: &[ClipParams],
    ) -> Result<(), PackError> {
        check_clip(layout, frames, t, params, self.out_size)?;
        if let Some(expected) = self.frames.filter(|&e| e != t) {
            return Err(PackError::FrameCount { expected, got: t });
        }
        self.frames = Some(t);
        if self.finished {
            self.bytes.truncate(self.pixels);
            self.finished = false;
        }
        let consistent = params.len() == 1;
        for (ti, frame) in frames.chunks_exact(layout.frame_bytes()).enumerate() {
            let p = if consistent { &params[0] } else { &params[ti] };
            if ti == 0 || !consistent {
                self.set_params(layout, p);
            }
            self.cut_frame(frame);
            self.params.push(*p);
            self.group.push(self.groups - 1);
            self.yuv.push(layout.format() == PixelFormat::Yuv420p);
        }
        self.pixels = self.bytes.len();
        self.clips += 1;
        Ok(())
    }

    /// Builds the tables of one parameter set (a new group).
    fn set_params(&mut self, layout: &FrameLayout, p: &ClipParams) {
        let s = self.out_size;
        let tb = &mut self.tables;
        tb.build(layout, p, s);
        let (w, h) = (layout.width() as usize, layout.height() as usize);
        let first_table = self.x0.len() / s;
        match layout.format() {
            PixelFormat::Yuv420p => {
                let (cw, ch) = (w / 2, h / 2);
                let [y, u, v] = &mut self.planes;
                y.set(&tb.x, &tb.y, 0, w, 1);
                u.set(&tb.cx, &tb.cy, w * h, cw, 1);
                v.set(&tb.cx, &tb.cy, w * h + cw * ch, cw, 1);
                for (plane, channels) in self.planes.iter_mut().zip(YUV_CHANNELS) {
                    plane.channels = channels;
                }
                self.planes[0].table = first_table;
                self.planes[1].table = first_table + 1;
                self.planes[2].table = first_table + 1;
                push_table(&tb.x, &mut self.x0, &mut self.x1, &mut self.fx);
                push_table(&tb.cx, &mut self.x0, &mut self.x1, &mut self.fx);
            }
            PixelFormat::Rgb24 => {
                let plane = &mut self.planes[0];
                plane.set(&tb.x, &tb.y, 0, 3 * w, 3);
                plane.channels = RGB_CHANNELS;
                plane.table = first_table;
                self.planes[1].channels = &[];
                self.planes[2].channels = &[];
                push_table(&tb.x, &mut self.x0, &mut self.x1, &mut self.fx);
            }
        }
        self.groups += 1;
    }

    /// Copies the windows of one stored frame and records its rows and output rows.
    fn cut_frame(&mut self, frame: &[u8]) {
        for plane in &self.planes {
            if plane.channels.is_empty() {
                continue;
            }
            self.starts.clear();
            for &r in &plane.rows {
                let from = plane.src + r * plane.stride + plane.col;
                self.starts.push(self.bytes.len());
                self.bytes.extend_from_slice(&frame[from..from + plane.width]);
            }
            for &(channel, offset) in plane.channels {
                let base = self.row_start.len();
                for &start in &self.starts {
                    self.row_start.push((start + offset) as i64);
                    self.row_table.push(plane.table as i64);
                }
                let rows = &mut self.y[channel];
                for &(a, b, f) in &plane.taps {
                    rows.y0.push((base + a) as i64);
                    rows.y1.push((base + b) as i64);
                    rows.fy.push(f);
                }
            }
        }
    }

    /// Appends the tables after the pixels and returns where everything lies. Pushing
    /// another clip afterwards drops the tables again.
    pub fn finish(&mut self) -> Result<&BatchPlan, PackError> {
        if self.pixels > i32::MAX as usize {
            return Err(PackError::TooLarge { bytes: self.pixels });
        }
        self.bytes.truncate(self.pixels);
        let s = self.out_size;
        let n = self.params.len();
        let mut plan = BatchPlan {
            clips: self.clips,
            frames: self.frames.unwrap_or(0),
            out_size: s,
            pixels: self.pixels,
            tables: self.x0.len() / s.max(1),
            ..BatchPlan::default()
        };
        let out = &mut self.bytes;
        plan.row_start = put(out, &self.row_start);
        plan.row_table = put(out, &self.row_table);
        plan.x0 = put(out, &self.x0);
        plan.x1 = put(out, &self.x1);
        plan.fx = put(out, &self.fx);
        let y = &self.y;
        plan.y0 = put(out, &y.iter().flat_map(|c| c.y0.iter().copied()).collect::<Vec<_>>());
        plan.y1 = put(out, &y.iter().flat_map(|c| c.y1.iter().copied()).collect::<Vec<_>>());
        plan.fy = put(out, &y.iter().flat_map(|c| c.fy.iter().copied()).collect::<Vec<_>>());
        plan.yuv = subset(out, n, |i| self.yuv[i]);
        let mut factors = vec![0f32; 4 * n];
        for (i, p) in self.params.iter().enumerate() {
            let j = p.jitter;
            factors[BRIGHTNESS * n + i] = j.map_or(1.0, |j| j.brightness);
            factors[CONTRAST * n + i] = j.map_or(1.0, |j| j.contrast);
            factors[SATURATION * n + i] = j.map_or(1.0, |j| j.saturation.max(0.0));
            factors[HUE * n + i] = j.map_or(0.0, |j| (j.hue * 6.0).rem_euclid(6.0));
        }
        plan.factors = put(out, &factors);
        plan.colour = self.colour_steps();
        plan.grayscale = subset(&mut self.bytes, n, |i| self.params[i].grayscale);
        self.blur_steps(&mut plan);
        plan.solarize = subset(&mut self.bytes, n, |i| self.params[i].solarize);
        plan.total = self.bytes.len();
        self.plan = plan;
        self.finished = true;
        Ok(&self.plan)
    }

    /// The jitter ops position by position: at each, one step per op that some frame's
    /// drawn order puts there.
    fn colour_steps(&mut self) -> Vec<ColourStep> {
        let n = self.params.len();
        let pixels = (self.out_size * self.out_size) as f64;
        let mut steps = Vec::new();
        for pos in 0..4 {
            for op in [ColorOp::Brightness, ColorOp::Contrast, ColorOp::Saturation, ColorOp::Hue] {
                let at = |i: usize| self.params[i].jitter.is_some_and(|j| j.order[pos] == op);
                let frames = subset(&mut self.bytes, n, at);
                if frames.is_empty() {
                    continue;
                }
                let groups = (op == ColorOp::Contrast).then(|| {
                    // Groups numbered within the step, in order of first frame.
                    let (mut of_frame, mut sizes) = (Vec::new(), Vec::<f64>::new());
                    let mut last = usize::MAX;
                    for i in (0..n).filter(|&i| at(i)) {
                        if self.group[i] != last {
                            last = self.group[i];
                            sizes.push(0.0);
                        }
                        of_frame.push(sizes.len() as i64 - 1);
                        *sizes.last_mut().expect("pushed above") += pixels;
                    }
                    Groups {
                        of_frame: put(&mut self.bytes, &of_frame),
                        pixels: put(&mut self.bytes, &sizes),
                    }
                });
                steps.push(ColourStep { op, frames, groups });
            }
        }
        steps
    }

    /// The frames to blur and their kernels, as the host's `BlurScratch::set_kernel` keeps
    /// them: nothing when the radius is 0, taps below `MIN_TAP` dropped.
    fn blur_steps(&mut self, plan: &mut BatchPlan) {
        let s = self.out_size;
        let kernels: Vec<Option<Vec<f32>>> = self
            .params
            .iter()
            .map(|p| {
                let sigma = p.blur_sigma.filter(|&sg| !sg.is_nan() && sg > 0.0)?;
                let kernel = blur_kernel(sigma, s as u32);
                let radius = kernel.len() / 2;
                if radius == 0 {
                    return None;
                }
                let kept = kernel[radius + 1..].iter().take_while(|&&w| w >= MIN_TAP).count();
                Some(kernel[radius..=radius + kept].to_vec())
            })
            .collect();
        let n = kernels.len();
        plan.blur = subset(&mut self.bytes, n, |i| kernels[i].is_some());
        let width = kernels.iter().flatten().map(Vec::len).max().unwrap_or(1);
        plan.blur_radius = width - 1;
        let mut taps = Vec::new();
        for k in kernels.iter().flatten() {
            taps.extend_from_slice(k);
            taps.resize(taps.len() + width - k.len(), 0.0);
        }
        plan.blur_taps = put(&mut self.bytes, &taps);
    }
}

/// Appends one horizontal table: tap offsets from the window's start, the second tap equal
/// to the first where its weight is 0 (so it reads nothing the cut left out).
fn push_table(x: &Axis, x0: &mut Vec<i64>, x1: &mut Vec<i64>, fx: &mut Vec<f32>) {
    for o in 0..x.f.len() {
        let second = if x.f[o] != 0.0 { x.i1[o] } else { x.i0[o] };
        x0.push(x.i0[o] as i64);
        x1.push(second as i64);
        fx.push(x.f[o]);
    }
}

/// The checks of [`crate::augment::augment_clip`], as errors of the same kinds.
fn check_clip(
    layout: &FrameLayout,
    frames: &[u8],
    t: usize,
    params: &[ClipParams],
    s: usize,
) -> Result<(), AugmentError> {
    if s == 0 {
        return Err(AugmentError::ZeroOutSize);
    }
    let (width, height) = (layout.width(), layout.height());
    let expected = layout.frame_bytes().checked_mul(t);
    if expected != Some(frames.len()) {
        return Err(AugmentError::ClipBytes {
            frames: t,
            width,
            height,
            format: layout.format(),
            expected: expected.unwrap_or(usize::MAX),
            got: frames.len(),
        });
    }
    if params.len() != 1 && params.len() != t {
        return Err(AugmentError::ParamCount { frames: t, got: params.len() });
    }
    let inside = |start: u32, len: u32, size: u32| {
        len > 0 && start.checked_add(len).is_some_and(|end| end <= size)
    };
    match params
        .iter()
        .find(|p| !inside(p.crop.x, p.crop.w, width) || !inside(p.crop.y, p.crop.h, height))
    {
        Some(p) => Err(AugmentError::CropOutside { crop: p.crop, width, height }),
        None => Ok(()),
    }
}

/// Plain numbers that go into the tables in native byte order.
trait Element: Copy {
    fn write(self, out: &mut Vec<u8>);
}

impl Element for i64 {
    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_ne_bytes());
    }
}

impl Element for f32 {
    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_ne_bytes());
    }
}

impl Element for f64 {
    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_ne_bytes());
    }
}

/// Appends `values` at the next multiple of 8.
fn put<T: Element>(out: &mut Vec<u8>, values: &[T]) -> Section {
    out.resize(out.len().next_multiple_of(8), 0);
    let offset = out.len();
    for &v in values {
        v.write(out);
    }
    Section { offset, len: values.len() }
}

/// Appends the numbers of the frames among `n` for which `pick` holds.
fn subset(out: &mut Vec<u8>, n: usize, pick: impl Fn(usize) -> bool) -> Subset {
    let index: Vec<i64> = (0..n).filter(|&i| pick(i)).map(|i| i as i64).collect();
    Subset { all: index.len() == n && n > 0, index: put(out, &index) }
}
