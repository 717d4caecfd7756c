//! Lossless chunk codec: block-wise spatial/temporal prediction, context-split residual
//! streams, one zstd frame per chunk.
//!
//! A *chunk* is `n >= 1` consecutive frames of one video (one [`FrameLayout`]) compressed as
//! one independent zstd frame (with its content checksum): it decodes without any other
//! chunk. The encoder replaces every pixel by the residual of a predictor chosen per 16x16
//! block, then splits the residuals into streams selected by a context of already-decoded
//! neighbours before zstd sees them.
//!
//! Why not hand zstd the residual bytes: on smooth footage 70-80% of residuals are 0, and
//! zstd's Huffman coder spends at least one bit on every byte; that measured 1.45x the size
//! of FFV1 on a panning clip. Zero flags packed eight to a byte per context cost zstd a
//! fraction of a bit each, and groups in busy areas are stored as plain bytes, which is both
//! the cheapest code there and a `memcpy` for the decoder. Why blocks: moving objects and a
//! static or panning background need different predictors in one frame (per-plane choice
//! was 12% larger on the panning clip). Measurements: `examples/codec_eval.rs`.
//!
//! # Decompressed payload
//!
//! Notation: `F` = frames in the chunk, `P` = planes per frame ([`FrameLayout::planes`]:
//! `yuv420p` Y, U, V; `rgb24` one plane). For one plane: `W` = bytes per row, `H` = rows,
//! `S` = bytes from one pixel to the next pixel of the same channel (3 for `rgb24`, else 1).
//! Integers are little-endian. All division is integer division.
//!
//! The payload is, with nothing between the parts:
//! 1. **Motion vectors**: `F * P` pairs of `i8` `(dx, dy)`, frame-major (frame 0 plane 0,
//!    frame 0 plane 1, ..., frame 1 plane 0, ...). `dx` is in pixels (`dx * S` bytes), `dy`
//!    in rows. Frame 0's vectors MUST be `(0, 0)`.
//! 2. **Block predictor codes**: for each frame and plane (frame-major), the plane is tiled
//!    from its top-left corner with blocks of `BW` bytes by `BH` rows, edge blocks clipped:
//!    Y and `rgb24` 16x16 pixels (`BW = 16 * S`, `BH = 16`), U and V 8x8. One code byte per
//!    block, blocks in raster order: `ceil(W / BW) * ceil(H / BH)` bytes per plane.
//! 3. **Stream table**: 33 `u32` byte lengths, for the streams in this order: `Z0..Z8` (zero
//!    flags), `O0..O6` (magnitude > 1), `S0..S8` (signs), `M0..M3` (magnitudes), `L0..L3`
//!    (literal groups). `Z`, `O`, `S` are bit streams, `M`, `L` byte streams.
//! 4. **Streams**, concatenated in table order.
//!
//! A decoder MUST reject: a payload whose length differs from the sum of parts 1-4
//! (`2FP + codes + 132 + sum of stream lengths`); unknown predictor codes; temporal codes or
//! non-zero vectors in frame 0; a stream read past its end, or not read to its end; non-zero
//! padding bits; an out-of-range magnitude; compressed input that is not exactly one zstd
//! frame. [`ChunkDecoder`] also caps the decompressed size at what `F` frames can need.
//!
//! ## Predictors
//! Pixels are `u8`; the stored residual is `r = x.wrapping_sub(pred)`, and a decoder computes
//! `x = r.wrapping_add(pred)`. Arithmetic inside a prediction is on integers, the result
//! taken modulo 256. `med(a, b, c)` is LOCO-I's median edge detector: `min(a, b)` if
//! `c >= max(a, b)`, `max(a, b)` if `c <= min(a, b)`, else `a + b - c` (that is,
//! `clamp(a + b - c, min(a, b), max(a, b))`). For a plane `X` and the byte at column `x` of
//! row `y`, with `a = X[y][x-S]`, `b = X[y-1][x]`, `c = X[y-1][x-S]`, the spatial rule
//! `sp(X)` is: `0` at `y = 0, x < S`; `a` on the rest of row 0; `b` at `y > 0, x < S`;
//! `med(a, b, c)` elsewhere. Neighbours may lie in other blocks (they are decoded first:
//! blocks are decoded row by row, left to right, like the pixels of an unblocked plane).
//!
//! `prev` is the same plane of the previous frame of the chunk. `R` is `prev` shifted by the
//! plane's vector with edges replicated:
//! `R[y][x] = prev[clamp(y + dy, 0, H-1)][clamp(x / S + dx, 0, W / S - 1) * S + x % S]`.
//!
//! | code | name | prediction |
//! |---|---|---|
//! | 0 | RAW | `0` |
//! | 1 | TEMPORAL | `prev[y][x]` (the vector is not used) |
//! | 2 | MED | `sp(X)` |
//! | 3 | TEMPORAL_MED | `prev[y][x] + sp(X - prev)`: MED applied to the difference to `prev` |
//! | 4 | MOTION | `R[y][x]` |
//! | 5 | MOTION_MED | `R[y][x] + sp(X - R)` |
//!
//! `X - prev` and `X - R` are taken pixel by pixel as integers (-255..=255) before `sp`.
//! Codes 1, 3, 4, 5 MUST NOT appear in frame 0; codes above 5 are invalid.
//!
//! ## Residual streams
//! Residual planes are coded one after another in payload order (frame 0 plane 0, frame 0
//! plane 1, ..., frame 1 plane 0, ...), each row top to bottom, and every stream holds its
//! symbols in that order; how reads from different streams interleave does not matter.
//! `v[y][x]` is a residual byte of the current plane read as `i8` and `|v|` its magnitude
//! (0..=128); outside the plane (`x < 0`, `x >= W`, `y < 0`) `v = 0`. `sgn(v)` is 0, 1, 2
//! for negative, zero, positive. `count(t, T)` is how many of the thresholds `T` are below
//! `t`. A bit stream holds bits least-significant bit first; the unused high bits of its last
//! byte MUST be 0.
//!
//! Each row is cut into groups of 8 bytes from `x0 = 0`, the last one holding
//! `n = min(8, W - x0)` bytes. A group's context is `k = count(g, [0, 1, 2, 3, 4, 6, 8, 11,
//! 15, 20, 28, 40])` with `g = sum of |v[y-1][i]| for i in x0-1..=x0+8` (only the row above).
//! - `k >= 9` (a busy area): the group's `n` residual bytes are the next `n` bytes of
//!   `L[k-9]`.
//! - `k < 9`: the next `n` bits of `Z[k]`; bit `i` set means byte `x0 + i` is non-zero, and
//!   its other bytes are zero. Each non-zero byte at column `x` then takes, with
//!   `s = 2 * [v[y][x-S] != 0] + |v[y-1][x]| + |v[y-1][x-S]| + |v[y-1][x+S]|`:
//!   one bit from `O[count(s, [1, 2, 4, 7, 12, 20])]`, set if its magnitude is > 1; one bit
//!   from `S[3 * sgn(v[y-1][x]) + sgn(v[y-1][x-S])]`, set if it is negative; and, if the
//!   magnitude is > 1, one byte `m` from `M[count(s, [4, 10, 25])]`: magnitude `m + 2`. The
//!   magnitude MUST be at most 127 for a positive and 128 for a negative residual; the
//!   residual byte is the magnitude, negated (two's complement) when negative.
//!
//! Nothing depends on a residual's value in the same row, only on whether it is zero: a
//! decoder reads a row's zero flags first and finds every context of the row up front.
//!
//! # Encoder
//! [`ChunkEncoder`] searches one vector per plane (the shift of the previous frame with the
//! smallest sum of absolute differences on every fourth row, within 8 pixels, 4 in chroma)
//! and picks per block the allowed predictor with the smallest sum of `|v|`. Chunk length,
//! zstd level and the predictor set are the writer's choice; `examples/codec_eval.rs`
//! measures them; `cvrl-shard` defaults to adaptive, zstd level 1, 8 frames (BENCHMARKS.md).

use crate::pixel::{FrameLayout, PixelFormat};
use std::fmt;
use std::io;
use std::str::FromStr;

/// Which predictors the encoder may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PredictorMode {
    /// Every block RAW (zstd alone; for comparison).
    Raw,
    /// TEMPORAL everywhere after frame 0, MED on frame 0.
    Temporal,
    /// MED everywhere (purely spatial: every frame is intra).
    Med,
    /// Per block, the cheapest of all predictors, with one motion vector per plane.
    #[default]
    Adaptive,
}

impl PredictorMode {
    /// The name used on the command line and in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            PredictorMode::Raw => "raw",
            PredictorMode::Temporal => "temporal",
            PredictorMode::Med => "med",
            PredictorMode::Adaptive => "adaptive",
        }
    }
}

impl fmt::Display for PredictorMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PredictorMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(PredictorMode::Raw),
            "temporal" => Ok(PredictorMode::Temporal),
            "med" => Ok(PredictorMode::Med),
            "adaptive" => Ok(PredictorMode::Adaptive),
            other => Err(format!(
                "unknown predictor mode {other:?} (expected raw, temporal, med or adaptive)"
            )),
        }
    }
}

/// A block predictor and its on-disk code (module doc, "Predictors").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Predictor {
    Raw = 0,
    Temporal = 1,
    Med = 2,
    TemporalMed = 3,
    Motion = 4,
    MotionMed = 5,
}

impl Predictor {
    pub const ALL: [Predictor; 6] = [
        Predictor::Raw,
        Predictor::Temporal,
        Predictor::Med,
        Predictor::TemporalMed,
        Predictor::Motion,
        Predictor::MotionMed,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Predictor::ALL.get(usize::from(code)).copied()
    }

    /// Whether it reads the previous frame (forbidden in a chunk's first frame).
    pub fn is_temporal(self) -> bool {
        !matches!(self, Predictor::Raw | Predictor::Med)
    }

    fn uses_vector(self) -> bool {
        matches!(self, Predictor::Motion | Predictor::MotionMed)
    }
}

/// Everything that can go wrong encoding or decoding a chunk.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("zstd: {0}")]
    Zstd(#[source] io::Error),

    #[error("{what} is {actual} bytes, expected {expected}")]
    BadLength { what: &'static str, expected: usize, actual: usize },

    #[error("a chunk holds at least one frame")]
    NoFrames,

    #[error("compressed chunk is not exactly one zstd frame ({frame} of {total} bytes)")]
    NotOneFrame { frame: usize, total: usize },

    #[error("decompressed payload is {actual} bytes, its header implies {expected}")]
    SizeMismatch { expected: usize, actual: usize },

    #[error("unknown predictor code {code} in frame {frame}, plane {plane}, block {block}")]
    UnknownPredictor { frame: usize, plane: usize, block: usize, code: u8 },

    #[error("temporal predictor {code} in the chunk's first frame (plane {plane}, block {block})")]
    TemporalOnFirstFrame { plane: usize, block: usize, code: u8 },

    #[error("non-zero motion vector in the chunk's first frame (plane {plane})")]
    VectorOnFirstFrame { plane: usize },

    #[error("residual stream {stream} ends early (frame {frame}, plane {plane})")]
    StreamOverrun { stream: usize, frame: usize, plane: usize },

    #[error("residual stream {stream} has unread bytes or non-zero padding")]
    StreamTrailing { stream: usize },

    #[error("residual magnitude {magnitude} out of range (frame {frame}, plane {plane})")]
    BadMagnitude { magnitude: u32, frame: usize, plane: usize },
}

// ---------------------------------------------------------------------------------------
// Geometry and contexts shared by encoder and decoder.

/// One plane as the codec sees it.
#[derive(Clone, Copy, Debug)]
struct Geom {
    /// Byte offset of the plane in a frame.
    off: usize,
    /// Bytes per row.
    w: usize,
    h: usize,
    /// Bytes between horizontally adjacent pixels of one channel.
    s: usize,
    /// Block width in bytes and height in rows.
    bw: usize,
    bh: usize,
    nbx: usize,
    nby: usize,
}

impl Geom {
    fn len(&self) -> usize {
        self.w * self.h
    }
    fn blocks(&self) -> usize {
        self.nbx * self.nby
    }
}

fn geoms(layout: &FrameLayout) -> Vec<Geom> {
    let s = match layout.format() {
        PixelFormat::Yuv420p => 1,
        PixelFormat::Rgb24 => 3,
    };
    let mut off = 0;
    layout
        .planes()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            // Blocks cover the same picture area in every plane: chroma is half size.
            let px = if layout.format() == PixelFormat::Yuv420p && i > 0 { 8 } else { 16 };
            let (bw, bh) = (px * s, px);
            let g = Geom {
                off,
                w: p.width,
                h: p.height,
                s,
                bw,
                bh,
                nbx: p.width.div_ceil(bw),
                nby: p.height.div_ceil(bh),
            };
            off += p.len();
            g
        })
        .collect()
}

/// Group contexts; those from `LIT_K` up are literal groups.
const NG: usize = 13;
const LIT_K: usize = 9;
const NZ: usize = LIT_K;
const NO: usize = 7;
const NS: usize = 9;
const NM: usize = 4;
const NL: usize = NG - LIT_K;
const N_BIT_STREAMS: usize = NZ + NO + NS;
const N_BYTE_STREAMS: usize = NM + NL;
const N_STREAMS: usize = N_BIT_STREAMS + N_BYTE_STREAMS;
const Z_THRESHOLDS: [u32; NG - 1] = [0, 1, 2, 3, 4, 6, 8, 11, 15, 20, 28, 40];
const O_THRESHOLDS: [u32; NO - 1] = [1, 2, 4, 7, 12, 20];
const M_THRESHOLDS: [u32; NM - 1] = [4, 10, 25];
/// Bytes of left padding on context rows: at least `S` and at least 1 (group context).
const PAD_L: usize = 8;
/// Bytes of right padding: the group context reads up to `x0 + 8`, a group writes 8 bytes.
const PAD_R: usize = 16;
/// Motion search range in pixels for full-resolution planes (half for chroma). Panning at
/// 256p moves up to ~7 pixels a frame on the test clips; a wider search slows the encoder.
const SEARCH_RANGE: i32 = 8;

const fn quantizer<const N: usize, const T: usize>(t: [u32; T]) -> [u8; N] {
    let mut q = [0u8; N];
    let mut s = 0;
    while s < N {
        let mut k = 0;
        while k < T && t[k] < s as u32 {
            k += 1;
        }
        q[s] = k as u8;
        s += 1;
    }
    q
}

/// Group context index for `g` (`g > 40` maps to the last context).
static ZQ: [u8; 42] = quantizer::<42, { NG - 1 }>(Z_THRESHOLDS);

#[inline(always)]
fn z_ctx(g: u32) -> usize {
    ZQ[g.min(41) as usize] as usize
}

/// Context sum of a non-zero residual (module doc), saturated: every threshold is below 255.
#[inline(always)]
fn pixel_sum(left_nonzero: u8, b: u8, c: u8, d: u8) -> u8 {
    (2 * left_nonzero).saturating_add(b).saturating_add(c).saturating_add(d)
}

/// `(O context) | (M context) << 3` for a context sum, computed without a table so the
/// decoder's per-row loop vectorises.
#[inline(always)]
fn om_code(sum: u8) -> u8 {
    let ko = O_THRESHOLDS.iter().map(|&t| u8::from(u32::from(sum) > t)).sum::<u8>();
    let km = M_THRESHOLDS.iter().map(|&t| u8::from(u32::from(sum) > t)).sum::<u8>();
    ko | km << 3
}

#[inline(always)]
fn sgn3(v: u8) -> usize {
    ((v as i8).signum() + 1) as usize
}

/// Sum of `|v|` over the 10 bytes `x0-1..=x0+8` of a padded row (index `PAD_L + x`).
#[inline(always)]
fn group_up_sum(up: &[u8], x0: usize) -> u32 {
    let win: &[u8; 10] = up[PAD_L + x0 - 1..PAD_L + x0 + 9].try_into().unwrap();
    win.iter().map(|&v| u32::from((v as i8).unsigned_abs())).sum()
}

#[inline(always)]
fn med(a: i32, b: i32, c: i32) -> i32 {
    (a + b - c).clamp(a.min(b), a.max(b))
}

// ---------------------------------------------------------------------------------------
// Encoder.

#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    #[inline(always)]
    fn put(&mut self, bits: u32, k: u32) {
        self.acc |= u64::from(bits) << self.n;
        self.n += k;
        if self.n >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.n -= 32;
        }
    }
    fn finish(&mut self) {
        while self.n > 0 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n = self.n.saturating_sub(8);
        }
    }
    fn clear(&mut self) {
        self.out.clear();
        self.acc = 0;
        self.n = 0;
    }
}

/// Scratch of the per-plane predictor choice.
#[derive(Default)]
struct PredictScratch {
    /// Residual plane of each predictor, indexed by code.
    cand: Vec<Vec<u8>>,
    /// The previous plane shifted by the motion vector.
    shifted: Vec<u8>,
    /// Row scratch of `shift_plane`.
    row: Vec<u8>,
}

/// Reusable encoder; one per thread.
pub struct ChunkEncoder {
    mode: PredictorMode,
    candidates: Vec<Predictor>,
    compressor: zstd::bulk::Compressor<'static>,
    scratch: PredictScratch,
    residual: Vec<u8>,
    payload: Vec<u8>,
    bits: Vec<BitWriter>,
    bytes: Vec<Vec<u8>>,
    rows: [Vec<u8>; 2],
}

impl ChunkEncoder {
    /// `level` is the zstd level (1..=22; negative levels are zstd's fast modes).
    pub fn new(level: i32, mode: PredictorMode) -> Result<Self, CodecError> {
        let mut compressor = zstd::bulk::Compressor::new(level).map_err(CodecError::Zstd)?;
        // 4 bytes per chunk buy detection of any corruption inside the frame, so a damaged
        // chunk fails to decode instead of yielding wrong pixels.
        compressor
            .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
            .map_err(CodecError::Zstd)?;
        Ok(ChunkEncoder {
            mode,
            candidates: Predictor::ALL.to_vec(),
            compressor,
            scratch: PredictScratch {
                cand: vec![Vec::new(); Predictor::ALL.len()],
                ..PredictScratch::default()
            },
            residual: Vec::new(),
            payload: Vec::new(),
            bits: (0..N_BIT_STREAMS).map(|_| BitWriter::default()).collect(),
            bytes: vec![Vec::new(); N_BYTE_STREAMS],
            rows: [Vec::new(), Vec::new()],
        })
    }

    /// Restricts [`PredictorMode::Adaptive`] to these predictors; RAW and MED are always
    /// allowed since frame 0 needs a spatial one. For measuring what each predictor is worth.
    pub fn with_candidates(mut self, candidates: &[Predictor]) -> Self {
        let mut c: Vec<Predictor> = candidates.to_vec();
        for p in [Predictor::Raw, Predictor::Med] {
            if !c.contains(&p) {
                c.push(p);
            }
        }
        c.sort_by_key(|p| p.code());
        c.dedup();
        self.candidates = c;
        self
    }

    pub fn mode(&self) -> PredictorMode {
        self.mode
    }

    /// `frames` is `n_frames * layout.frame_bytes()` bytes, frames back to back. Returns the
    /// zstd frame.
    pub fn encode(&mut self, layout: &FrameLayout, frames: &[u8]) -> Result<Vec<u8>, CodecError> {
        let fb = layout.frame_bytes();
        if frames.is_empty() {
            return Err(CodecError::NoFrames);
        }
        if !frames.len().is_multiple_of(fb) {
            return Err(CodecError::BadLength {
                what: "frames (a whole number of frames)",
                expected: frames.len().next_multiple_of(fb),
                actual: frames.len(),
            });
        }
        let n = frames.len() / fb;
        let gs = geoms(layout);
        let np = gs.len();
        let blocks: usize = gs.iter().map(Geom::blocks).sum();

        self.payload.clear();
        self.payload.resize(n * np * 2 + n * blocks, 0);
        self.residual.resize(frames.len(), 0);
        let (vectors, codes) = self.payload.split_at_mut(n * np * 2);
        let mut codes = codes;
        for f in 0..n {
            for (p, g) in gs.iter().enumerate() {
                let cur = &frames[f * fb + g.off..][..g.len()];
                let prev = (f > 0).then(|| &frames[(f - 1) * fb + g.off..][..g.len()]);
                let (plane_codes, rest) = codes.split_at_mut(g.blocks());
                codes = rest;
                let dst = &mut self.residual[f * fb + g.off..][..g.len()];
                let v = predict_plane(
                    self.mode,
                    &self.candidates,
                    &mut self.scratch,
                    g,
                    cur,
                    prev,
                    plane_codes,
                    dst,
                );
                vectors[(f * np + p) * 2] = v.0 as u8;
                vectors[(f * np + p) * 2 + 1] = v.1 as u8;
            }
        }

        for w in &mut self.bits {
            w.clear();
        }
        for b in &mut self.bytes {
            b.clear();
        }
        for f in 0..n {
            for g in &gs {
                let res = &self.residual[f * fb + g.off..][..g.len()];
                encode_residuals(g, res, &mut self.bits, &mut self.bytes, &mut self.rows);
            }
        }
        for w in &mut self.bits {
            w.finish();
        }
        for s in self.bits.iter().map(|w| &w.out).chain(&self.bytes) {
            // A stream holds at most one byte per pixel: u32 lengths fail only for chunks of
            // over 4 GiB, which the shard's u32 chunk lengths could not store anyway.
            let len = u32::try_from(s.len()).map_err(|_| CodecError::BadLength {
                what: "residual stream",
                expected: u32::MAX as usize,
                actual: s.len(),
            })?;
            self.payload.extend_from_slice(&len.to_le_bytes());
        }
        for s in self.bits.iter().map(|w| &w.out).chain(&self.bytes) {
            self.payload.extend_from_slice(s);
        }
        self.compressor.compress(&self.payload).map_err(CodecError::Zstd)
    }
}

/// Chooses the vector and the block codes of one plane and writes its residual to `dst`.
#[allow(clippy::too_many_arguments)]
fn predict_plane(
    mode: PredictorMode,
    candidates: &[Predictor],
    sc: &mut PredictScratch,
    g: &Geom,
    cur: &[u8],
    prev: Option<&[u8]>,
    codes: &mut [u8],
    dst: &mut [u8],
) -> (i8, i8) {
    let mut cands: Vec<Predictor> = match (mode, prev) {
        (PredictorMode::Raw, _) => vec![Predictor::Raw],
        (PredictorMode::Med, _) | (PredictorMode::Temporal, None) => vec![Predictor::Med],
        (PredictorMode::Temporal, Some(_)) => vec![Predictor::Temporal],
        (PredictorMode::Adaptive, _) => {
            candidates.iter().copied().filter(|p| prev.is_some() || !p.is_temporal()).collect()
        }
    };
    let mut vector = (0i8, 0i8);
    if let Some(pv) = prev {
        if cands.iter().any(|p| p.uses_vector()) {
            vector = search_vector(g, cur, pv);
            if vector == (0, 0) {
                // Same as the unshifted predictors: skip the work.
                cands.retain(|p| !p.uses_vector());
            } else {
                shift_plane(g, pv, vector, &mut sc.shifted, &mut sc.row);
            }
        }
    }
    for &p in &cands {
        let buf = &mut sc.cand[p as usize];
        buf.resize(g.len(), 0);
        let reference = match p {
            Predictor::Temporal | Predictor::TemporalMed => prev,
            Predictor::Motion | Predictor::MotionMed => Some(&sc.shifted[..]),
            Predictor::Raw | Predictor::Med => None,
        };
        residual_plane(p, g, cur, reference, buf);
    }
    if let [only] = cands[..] {
        codes.fill(only.code());
        dst.copy_from_slice(&sc.cand[only as usize]);
        return (0, 0);
    }
    let mut any_vector = false;
    for by in 0..g.nby {
        let (y0, y1) = (by * g.bh, ((by + 1) * g.bh).min(g.h));
        for bx in 0..g.nbx {
            let (x0, x1) = (bx * g.bw, ((bx + 1) * g.bw).min(g.w));
            // Sum of |residual|: a cheap stand-in for the coded size that tracks it well
            // (zero flags dominate, and small residuals are cheap in every stream).
            let cost = |p: Predictor| -> u32 {
                let buf = &sc.cand[p as usize];
                (y0..y1)
                    .map(|y| {
                        buf[y * g.w + x0..y * g.w + x1]
                            .iter()
                            .map(|&r| u32::from((r as i8).unsigned_abs()))
                            .sum::<u32>()
                    })
                    .sum()
            };
            let mut best = (u32::MAX, Predictor::Raw);
            for &p in &cands {
                let c = cost(p);
                if c < best.0 {
                    best = (c, p);
                }
            }
            let p = best.1;
            any_vector |= p.uses_vector();
            codes[by * g.nbx + bx] = p.code();
            let buf = &sc.cand[p as usize];
            for y in y0..y1 {
                dst[y * g.w + x0..y * g.w + x1].copy_from_slice(&buf[y * g.w + x0..y * g.w + x1]);
            }
        }
    }
    if any_vector {
        vector
    } else {
        (0, 0)
    }
}

/// Residual of predictor `p` over a whole plane (the encoder knows every pixel, so unlike
/// the decoder these loops carry no dependency and vectorise).
fn residual_plane(p: Predictor, g: &Geom, cur: &[u8], reference: Option<&[u8]>, out: &mut [u8]) {
    let (w, s) = (g.w, g.s);
    match (p, reference) {
        (Predictor::Raw, _) => out.copy_from_slice(cur),
        (Predictor::Temporal | Predictor::Motion, Some(r)) => {
            for ((o, &x), &r) in out.iter_mut().zip(cur).zip(r) {
                *o = x.wrapping_sub(r);
            }
        }
        (Predictor::Med, _) => {
            for y in 0..g.h {
                let row = &cur[y * w..][..w];
                let o = &mut out[y * w..][..w];
                if y == 0 {
                    o[..s].copy_from_slice(&row[..s]);
                    for x in s..w {
                        o[x] = row[x].wrapping_sub(row[x - s]);
                    }
                } else {
                    let up = &cur[(y - 1) * w..][..w];
                    for x in 0..s {
                        o[x] = row[x].wrapping_sub(up[x]);
                    }
                    for x in s..w {
                        let pred =
                            med(i32::from(row[x - s]), i32::from(up[x]), i32::from(up[x - s]));
                        o[x] = row[x].wrapping_sub(pred as u8);
                    }
                }
            }
        }
        (Predictor::TemporalMed | Predictor::MotionMed, Some(r)) => {
            let d = |i: usize| i32::from(cur[i]) - i32::from(r[i]);
            for y in 0..g.h {
                let o = &mut out[y * w..][..w];
                let i0 = y * w;
                // The residual of MED on D is D minus its spatial prediction, modulo 256.
                if y == 0 {
                    for (x, o) in o.iter_mut().enumerate() {
                        let pred = if x < s { 0 } else { d(i0 + x - s) };
                        *o = (d(i0 + x) - pred) as u8;
                    }
                } else {
                    let u0 = i0 - w;
                    for (x, o) in o.iter_mut().enumerate() {
                        let pred = if x < s {
                            d(u0 + x)
                        } else {
                            med(d(i0 + x - s), d(u0 + x), d(u0 + x - s))
                        };
                        *o = (d(i0 + x) - pred) as u8;
                    }
                }
            }
        }
        // Temporal predictors always get a reference; keep the residual defined anyway.
        (_, None) => out.copy_from_slice(cur),
    }
}

/// Row `src` shifted by `dx` pixels (`out[x] = src[x + dx * s]`), edge pixels replicated.
fn shift_row(src: &[u8], s: usize, dx: i32, out: &mut [u8]) {
    let w = src.len();
    let k = dx.unsigned_abs() as usize * s;
    if k == 0 {
        out.copy_from_slice(src);
    } else if k >= w {
        let edge = if dx > 0 { &src[w - s..] } else { &src[..s] };
        for (i, o) in out.iter_mut().enumerate() {
            *o = edge[i % s];
        }
    } else if dx > 0 {
        // `w` and `k` are multiples of `s`, so `i % s` is the channel of `out[w - k + i]`.
        out[..w - k].copy_from_slice(&src[k..]);
        let edge = &src[w - s..];
        for (i, o) in out[w - k..].iter_mut().enumerate() {
            *o = edge[i % s];
        }
    } else {
        out[k..].copy_from_slice(&src[..w - k]);
        for (i, o) in out[..k].iter_mut().enumerate() {
            *o = src[i % s];
        }
    }
}

/// Row `y` of the previous plane shifted by `v` (module doc: `R`).
fn shifted_row(g: &Geom, prev: &[u8], v: (i8, i8), y: usize, out: &mut [u8]) {
    let sy = (y as i64 + i64::from(v.1)).clamp(0, g.h as i64 - 1) as usize;
    shift_row(&prev[sy * g.w..][..g.w], g.s, i32::from(v.0), out);
}

fn shift_plane(g: &Geom, prev: &[u8], v: (i8, i8), out: &mut Vec<u8>, row: &mut Vec<u8>) {
    out.resize(g.len(), 0);
    row.resize(g.w, 0);
    for y in 0..g.h {
        shifted_row(g, prev, v, y, row);
        out[y * g.w..][..g.w].copy_from_slice(row);
    }
}

/// The global shift of the previous plane that best matches `cur` (smallest sum of absolute
/// differences over every fourth row, away from the edges), `(0, 0)` on ties.
fn search_vector(g: &Geom, cur: &[u8], prev: &[u8]) -> (i8, i8) {
    let (w, s) = (g.w, g.s);
    let range = if g.bh < 16 { SEARCH_RANGE / 2 } else { SEARCH_RANGE };
    let r = range.min((w / s / 4) as i32).min((g.h / 4) as i32);
    if r <= 0 {
        return (0, 0);
    }
    let ru = r as usize;
    let (x0, x1) = (ru * s, w - ru * s);
    let step = if g.h >= 64 { 4 } else { 2 };
    let sad = |dx: i32, dy: i32, limit: u64| -> u64 {
        let mut total = 0u64;
        for y in (ru..g.h - ru).step_by(step) {
            let a = &cur[y * w + x0..y * w + x1];
            let sy = (y as i64 + i64::from(dy)) as usize;
            let sx = (x0 as i64 + i64::from(dx) * s as i64) as usize;
            let b = &prev[sy * w + sx..][..x1 - x0];
            total += a.iter().zip(b).map(|(&p, &q)| u32::from(p.abs_diff(q))).sum::<u32>() as u64;
            if total >= limit {
                break;
            }
        }
        total
    };
    let mut best = (sad(0, 0, u64::MAX), 0, 0);
    for dy in -r..=r {
        for dx in -r..=r {
            if (dx, dy) != (0, 0) {
                let t = sad(dx, dy, best.0);
                if t < best.0 {
                    best = (t, dx, dy);
                }
            }
        }
    }
    (best.1 as i8, best.2 as i8)
}

/// Appends the residual plane `res` to the streams (module doc, "Residual streams").
fn encode_residuals(
    g: &Geom,
    res: &[u8],
    bits: &mut [BitWriter],
    bytes: &mut [Vec<u8>],
    rows: &mut [Vec<u8>; 2],
) {
    let (w, s) = (g.w, g.s);
    for r in rows.iter_mut() {
        r.clear();
        r.resize(PAD_L + w + PAD_R, 0);
    }
    let [ra, rb] = rows;
    let (mut up, mut cur) = (&mut ra[..], &mut rb[..]);
    for y in 0..g.h {
        let r = &res[y * w..][..w];
        cur[PAD_L..PAD_L + w].copy_from_slice(r);
        for x0 in (0..w).step_by(8) {
            let n = (w - x0).min(8);
            let k = z_ctx(group_up_sum(up, x0));
            if k >= LIT_K {
                bytes[NM + k - LIT_K].extend_from_slice(&r[x0..x0 + n]);
                continue;
            }
            let mut mask = 0u32;
            for (i, &b) in r[x0..x0 + n].iter().enumerate() {
                mask |= u32::from(b != 0) << i;
            }
            bits[k].put(mask, n as u32);
            while mask != 0 {
                let i = PAD_L + x0 + mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let (ko, km, ks) = pixel_ctx(up, cur[i - s] != 0, i, s);
                let v = cur[i] as i8;
                let mag = u32::from(v.unsigned_abs());
                bits[NZ + ko].put(u32::from(mag > 1), 1);
                bits[NZ + NO + ks].put(u32::from(v < 0), 1);
                if mag > 1 {
                    bytes[km].push((mag - 2) as u8);
                }
            }
        }
        std::mem::swap(&mut up, &mut cur);
    }
}

/// Contexts of a non-zero residual at padded index `i`: (O, M, S). They use the row above
/// and only whether the left neighbour is non-zero, never its value, so a decoder knows them
/// from the zero flags alone and no pixel waits for its left neighbour's magnitude.
#[inline(always)]
fn pixel_ctx(up: &[u8], left_nonzero: bool, i: usize, s: usize) -> (usize, usize, usize) {
    let (b, c, d) = (up[i], up[i - s], up[i + s]);
    let abs = |v: u8| (v as i8).unsigned_abs();
    let oc = om_code(pixel_sum(u8::from(left_nonzero), abs(b), abs(c), abs(d)));
    (usize::from(oc & 7), usize::from(oc >> 3), 3 * sgn3(b) + sgn3(c))
}

// ---------------------------------------------------------------------------------------
// Decoder.

/// What went wrong inside the hot loops; checked once per plane so they stay branch-light.
#[derive(Default)]
struct Fault {
    overrun: Option<usize>,
    magnitude: Option<u32>,
}

impl Fault {
    fn any(&self) -> bool {
        self.overrun.is_some() || self.magnitude.is_some()
    }
}

/// Reads bits least-significant first from `data[pos..end]`.
#[derive(Clone, Copy, Default)]
struct BitReader {
    pos: usize,
    end: usize,
    /// Loaded, unread bits in the low `n` bits (bits above may hold a preview of the next
    /// byte, which the next refill ORs in again unchanged).
    buf: u64,
    n: u32,
    id: usize,
}

impl BitReader {
    #[inline(always)]
    fn read(&mut self, data: &[u8], k: u32, fault: &mut Fault) -> u32 {
        if self.n < k {
            self.refill(data);
            if self.n < k {
                return self.overrun(k, fault);
            }
        }
        let v = (self.buf & ((1u64 << k) - 1)) as u32;
        self.buf >>= k;
        self.n -= k;
        v
    }

    #[inline(always)]
    fn refill(&mut self, data: &[u8]) {
        if let Some(word) = data.get(self.pos..self.pos + 8).filter(|_| self.end - self.pos >= 8) {
            let word = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
            self.buf |= word << self.n;
            let take = (63 - self.n) / 8;
            self.pos += take as usize;
            self.n += take * 8;
        } else {
            while self.n <= 56 && self.pos < self.end {
                self.buf |= u64::from(data.get(self.pos).copied().unwrap_or(0)) << self.n;
                self.pos += 1;
                self.n += 8;
            }
        }
    }

    #[cold]
    fn overrun(&mut self, k: u32, fault: &mut Fault) -> u32 {
        fault.overrun.get_or_insert(self.id);
        let v = (self.buf & ((1u64 << k) - 1)) as u32;
        self.buf = 0;
        self.n = 0;
        v
    }

    /// Everything read, and the padding bits of the last byte are zero.
    fn finished(&self) -> bool {
        self.pos == self.end && self.n < 8 && self.buf == 0
    }
}

#[derive(Clone, Copy, Default)]
struct ByteReader {
    pos: usize,
    end: usize,
    id: usize,
}

impl ByteReader {
    /// Reads a byte if `take`, without a branch on `take`: whether a residual has a magnitude
    /// byte is a coin flip the branch predictor would lose. `data` extends past every `end`.
    #[inline(always)]
    fn read_if(&mut self, data: &[u8], take: bool, fault: &mut Fault) -> u8 {
        let b = data.get(self.pos).copied().unwrap_or(0);
        if take & (self.pos >= self.end) {
            fault.overrun.get_or_insert(self.id);
        }
        self.pos += usize::from(take & (self.pos < self.end));
        b
    }

    /// The next `n <= 8` bytes, zero-filled to 8.
    #[inline(always)]
    fn read8(&mut self, data: &[u8], n: usize, fault: &mut Fault) -> [u8; 8] {
        let mut v = match data.get(self.pos..self.pos + 8) {
            Some(b) => u64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
            None => 0,
        };
        if self.end - self.pos < n {
            fault.overrun.get_or_insert(self.id);
            v = 0;
        } else {
            self.pos += n;
        }
        if n < 8 {
            v &= (1u64 << (8 * n)) - 1;
        }
        v.to_le_bytes()
    }
}

/// Reusable decoder; one per thread. Holds the decompressed payload and row scratch, so
/// decoding allocates nothing once it has seen the largest chunk.
pub struct ChunkDecoder {
    decompressor: zstd::bulk::Decompressor<'static>,
    payload: Vec<u8>,
    rows: RowScratch,
    refrows: [Vec<u8>; 3],
    runs: Vec<(usize, usize, Predictor)>,
    /// The CPU has AVX2 (checked once): decode with the AVX2 build of the residual pass.
    avx2: bool,
}

impl ChunkDecoder {
    pub fn new() -> Result<Self, CodecError> {
        Ok(ChunkDecoder {
            decompressor: zstd::bulk::Decompressor::new().map_err(CodecError::Zstd)?,
            payload: Vec::new(),
            rows: RowScratch::default(),
            refrows: [Vec::new(), Vec::new(), Vec::new()],
            runs: Vec::new(),
            avx2: has_avx2(),
        })
    }

    /// Decodes a chunk of `n_frames` frames into `out` (exactly `n_frames * frame_bytes`
    /// long). Never panics on any input bytes; on error `out` holds garbage.
    pub fn decode(
        &mut self,
        layout: &FrameLayout,
        n_frames: usize,
        compressed: &[u8],
        out: &mut [u8],
    ) -> Result<(), CodecError> {
        self.decode_first(layout, n_frames, compressed, out, n_frames)
    }

    /// Like [`decode`](Self::decode), but reconstructs only the first `upto` frames (at most
    /// `n_frames`; `out` is still `n_frames * frame_bytes` long and holds garbage after them).
    /// Frames are coded in order, so a reader that needs frames `0..upto` of a chunk skips
    /// the rest of the residual decoding and prediction. The whole payload is still
    /// decompressed (zstd checks its checksum) and validated, except that whether every stream
    /// ends exactly where the last frame's symbols end can only be checked with `upto ==
    /// n_frames`.
    pub fn decode_first(
        &mut self,
        layout: &FrameLayout,
        n_frames: usize,
        compressed: &[u8],
        out: &mut [u8],
        upto: usize,
    ) -> Result<(), CodecError> {
        let upto = upto.min(n_frames);
        if n_frames == 0 {
            return Err(CodecError::NoFrames);
        }
        let fb = layout.frame_bytes();
        let gs = geoms(layout);
        let np = gs.len();
        let blocks: usize = gs.iter().map(Geom::blocks).sum();
        // Worst case per pixel: 3 flag bits and one byte, plus a partial last byte per bit
        // stream. Decompressing into at most this much bounds what a bomb can claim.
        let sizes = || -> Option<(usize, usize, usize, usize)> {
            let total = n_frames.checked_mul(fb)?;
            let header = n_frames.checked_mul(np * 2 + blocks)?;
            let table = header.checked_add(4 * N_STREAMS)?;
            let limit = (total / 8 + 1)
                .checked_mul(3)?
                .checked_add(total)?
                .checked_add(table)?
                .checked_add(N_BIT_STREAMS + 8)?;
            Some((total, header, table, limit))
        };
        let Some((_, header, table, limit)) = sizes().filter(|s| s.0 == out.len()) else {
            let expected = n_frames.saturating_mul(fb);
            return Err(CodecError::BadLength {
                what: "output buffer",
                expected,
                actual: out.len(),
            });
        };

        let frame = zstd::zstd_safe::find_frame_compressed_size(compressed).map_err(|code| {
            CodecError::Zstd(io::Error::other(zstd::zstd_safe::get_error_name(code)))
        })?;
        if frame != compressed.len() {
            return Err(CodecError::NotOneFrame { frame, total: compressed.len() });
        }
        // 8 bytes of slack past the payload let readers peek without a bounds branch.
        if self.payload.len() < limit + 8 {
            self.payload.resize(limit + 8, 0);
        }
        let got = self
            .decompressor
            .decompress_to_buffer(compressed, &mut self.payload[..limit])
            .map_err(CodecError::Zstd)?;
        let data = &self.payload[..];
        if got < table {
            return Err(CodecError::SizeMismatch { expected: table, actual: got });
        }

        // Parse and validate everything before touching pixels.
        let mut rd = Readers::default();
        let mut pos = table;
        for k in 0..N_STREAMS {
            let len = &data[header + 4 * k..header + 4 * k + 4];
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let end = pos.saturating_add(len);
            rd.init(k, pos, end);
            pos = end;
        }
        if pos != got {
            return Err(CodecError::SizeMismatch { expected: pos, actual: got });
        }
        let (vectors, codes) = data[..header].split_at(n_frames * np * 2);
        for p in 0..np {
            if vectors[2 * p] != 0 || vectors[2 * p + 1] != 0 {
                return Err(CodecError::VectorOnFirstFrame { plane: p });
            }
        }
        let mut at = 0;
        for f in 0..n_frames {
            for (p, g) in gs.iter().enumerate() {
                for (block, &code) in codes[at..at + g.blocks()].iter().enumerate() {
                    match Predictor::from_code(code) {
                        None => {
                            return Err(CodecError::UnknownPredictor {
                                frame: f,
                                plane: p,
                                block,
                                code,
                            })
                        }
                        Some(pr) if f == 0 && pr.is_temporal() => {
                            return Err(CodecError::TemporalOnFirstFrame { plane: p, block, code })
                        }
                        Some(_) => {}
                    }
                }
                at += g.blocks();
            }
        }

        let mut fault = Fault::default();
        let mut at = 0;
        for f in 0..upto {
            let (before, rest) = out.split_at_mut(f * fb);
            let frame = &mut rest[..fb];
            for (p, g) in gs.iter().enumerate() {
                let plane = &mut frame[g.off..][..g.len()];
                let prev = (f > 0).then(|| &before[(f - 1) * fb + g.off..][..g.len()]);
                decode_residuals(g, data, &mut rd, &mut self.rows, plane, &mut fault, self.avx2);
                if fault.any() {
                    return Err(match (fault.overrun, fault.magnitude) {
                        (Some(stream), _) => {
                            CodecError::StreamOverrun { stream, frame: f, plane: p }
                        }
                        (None, magnitude) => CodecError::BadMagnitude {
                            magnitude: magnitude.unwrap_or(0),
                            frame: f,
                            plane: p,
                        },
                    });
                }
                let v = (vectors[(f * np + p) * 2] as i8, vectors[(f * np + p) * 2 + 1] as i8);
                unpredict_plane(
                    g,
                    &codes[at..at + g.blocks()],
                    v,
                    plane,
                    prev,
                    &mut self.refrows,
                    &mut self.runs,
                );
                at += g.blocks();
            }
        }
        if upto < n_frames {
            return Ok(());
        }
        if let Some(stream) = rd.unfinished() {
            return Err(CodecError::StreamTrailing { stream });
        }
        Ok(())
    }
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The stream readers, grouped by kind. Array lengths are powers of two so that masked
/// context indices need no bounds check.
#[derive(Default)]
struct Readers {
    z: [BitReader; 16],
    o: [BitReader; 8],
    s: [BitReader; 16],
    m: [ByteReader; 4],
    l: [ByteReader; 8],
}

impl Readers {
    /// Points stream `k` of the table (module doc order) at `data[pos..end]`.
    fn init(&mut self, k: usize, pos: usize, end: usize) {
        let bit = BitReader { pos, end, buf: 0, n: 0, id: k };
        let byte = ByteReader { pos, end, id: k };
        match k {
            _ if k < NZ => self.z[k] = bit,
            _ if k < NZ + NO => self.o[k - NZ] = bit,
            _ if k < N_BIT_STREAMS => self.s[k - NZ - NO] = bit,
            _ if k < N_BIT_STREAMS + NM => self.m[k - N_BIT_STREAMS] = byte,
            _ => self.l[(k - N_BIT_STREAMS - NM) & 7] = byte,
        }
    }

    /// The first stream not read exactly to its end, if any.
    fn unfinished(&self) -> Option<usize> {
        let bits = self.z.iter().chain(&self.o).chain(&self.s);
        let bytes = self.m.iter().chain(&self.l);
        bits.filter(|r| !r.finished())
            .map(|r| r.id)
            .chain(bytes.filter(|r| r.pos != r.end).map(|r| r.id))
            .min()
    }
}

/// Pass 1: entropy-decodes one plane's residuals into `plane` (module doc, "Residual
/// streams"). Contexts depend only on residuals, so this runs before any prediction.
/// `avx2`: run the build of [`residuals_body`] compiled for AVX2 (the caller checked the
/// CPU); its row loops get twice the lanes, and the bytes it produces are the same.
#[inline(never)]
fn decode_residuals(
    g: &Geom,
    data: &[u8],
    rd: &mut Readers,
    rows: &mut RowScratch,
    plane: &mut [u8],
    fault: &mut Fault,
    avx2: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is only true when the CPU supports AVX2 (`ChunkDecoder::new`).
        unsafe { residuals_avx2(g, data, rd, rows, plane, fault) };
        return;
    }
    let _ = avx2;
    residuals_body(g, data, rd, rows, plane, fault);
}

/// [`residuals_body`] compiled for AVX2 (everything it calls is `#[inline(always)]`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn residuals_avx2(
    g: &Geom,
    data: &[u8],
    rd: &mut Readers,
    rows: &mut RowScratch,
    plane: &mut [u8],
    fault: &mut Fault,
) {
    residuals_body(g, data, rd, rows, plane, fault)
}

#[inline(always)]
fn residuals_body(
    g: &Geom,
    data: &[u8],
    rd: &mut Readers,
    rows: &mut RowScratch,
    plane: &mut [u8],
    fault: &mut Fault,
) {
    let (w, s) = (g.w, g.s);
    let ngroups = w.div_ceil(8);
    let padded = PAD_L + w + PAD_R;
    for r in [&mut rows.up, &mut rows.cur, &mut rows.abs, &mut rows.om, &mut rows.sg] {
        r.clear();
        r.resize(padded, 0);
    }
    rows.ctx.clear();
    rows.ctx.resize(ngroups, 0);
    let RowScratch { up, cur, abs, ctx, om, sg, pending } = rows;
    for y in 0..g.h {
        // Every context of this row depends only on the row above and on this row's zero
        // flags, so they are computed in loops over whole rows that vectorise; what remains
        // per pixel is reading the streams.
        for (a, &v) in abs.iter_mut().zip(up.iter()) {
            *a = (v as i8).unsigned_abs();
        }
        for (gi, c) in ctx.iter_mut().enumerate() {
            let win = &abs[PAD_L + gi * 8 - 1..PAD_L + gi * 8 + 9];
            *c = z_ctx(win.iter().map(|&a| u32::from(a)).sum()) as u8;
        }
        let span = PAD_L..PAD_L + w;
        pending.clear();
        for (gi, &k) in ctx.iter().enumerate() {
            let x0 = gi * 8;
            let k = usize::from(k);
            let n = (w - x0).min(8);
            let vals: &mut [u8; 8] = (&mut cur[PAD_L + x0..PAD_L + x0 + 8]).try_into().unwrap();
            if k >= LIT_K {
                // Busy area: the bytes are stored as they are, a plain copy.
                *vals = rd.l[(k - LIT_K) & 7].read8(data, n, fault);
                continue;
            }
            let mask = rd.z[k & 15].read(data, n as u32, fault);
            // Until the magnitudes below replace them, a zero-flag group holds its flags (0
            // or 1), so `cur != 0` tells every byte of the row whether it is non-zero.
            // Spilling zeros into the right padding is harmless.
            *vals = NZ_EXPAND[mask as usize & 0xff];
            if mask != 0 {
                pending.push((x0 as u32, mask));
            }
        }
        if pending.is_empty() {
            plane[y * w..][..w].copy_from_slice(&cur[span]);
            std::mem::swap(up, cur);
            continue;
        }
        // Contexts of the non-zero residuals, only on rows that have some.
        for ((o, &b), &c) in
            sg[span.clone()].iter_mut().zip(&up[span.clone()]).zip(&up[PAD_L - s..])
        {
            *o = (3 * sgn3(b) + sgn3(c)) as u8;
        }
        let it = om[span.clone()].iter_mut().zip(&cur[PAD_L - s..]);
        for ((o, &left), (&b, (&c, &d))) in
            it.zip(abs[span.clone()].iter().zip(abs[PAD_L - s..].iter().zip(&abs[PAD_L + s..])))
        {
            *o = om_code(pixel_sum(u8::from(left != 0), b, c, d));
        }
        for &(x0, mut mask) in pending.iter() {
            while mask != 0 {
                let i = PAD_L + x0 as usize + mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let (oc, ks) = (om[i], sg[i]);
                let big = rd.o[usize::from(oc & 7)].read(data, 1, fault);
                let neg = rd.s[usize::from(ks & 15)].read(data, 1, fault);
                let m = u32::from(rd.m[usize::from(oc >> 3) & 3].read_if(data, big != 0, fault));
                let mag = if big != 0 { m + 2 } else { 1 };
                if mag > 127 + neg {
                    fault.magnitude.get_or_insert(mag);
                }
                let m = mag as u8;
                cur[i] = if neg != 0 { m.wrapping_neg() } else { m };
            }
        }
        plane[y * w..][..w].copy_from_slice(&cur[span]);
        std::mem::swap(up, cur);
    }
}

/// Row buffers of [`decode_residuals`], padded by `PAD_L`/`PAD_R` zero bytes.
#[derive(Default)]
struct RowScratch {
    /// Residuals of the row above and of this row.
    up: Vec<u8>,
    cur: Vec<u8>,
    /// `|v|` of the row above.
    abs: Vec<u8>,
    /// Group context of each group of this row.
    ctx: Vec<u8>,
    /// Per pixel: O and M contexts (`om_code`), and S context.
    om: Vec<u8>,
    sg: Vec<u8>,
    /// Groups of this row with non-zero residuals: (x0, zero-flag mask).
    pending: Vec<(u32, u32)>,
}

/// Bit `i` of the index becomes byte `i` (0 or 1).
static NZ_EXPAND: [[u8; 8]; 256] = {
    let mut t = [[0u8; 8]; 256];
    let mut m = 0;
    while m < 256 {
        let mut i = 0;
        while i < 8 {
            t[m][i] = ((m >> i) & 1) as u8;
            i += 1;
        }
        m += 1;
    }
    t
};

/// Pass 2: turns the residuals in `plane` into pixels, in place, row by row; each row is cut
/// into runs of blocks with the same predictor.
fn unpredict_plane(
    g: &Geom,
    codes: &[u8],
    v: (i8, i8),
    plane: &mut [u8],
    prev: Option<&[u8]>,
    refrows: &mut [Vec<u8>; 3],
    runs: &mut Vec<(usize, usize, Predictor)>,
) {
    for r in refrows.iter_mut() {
        r.resize(g.w, 0);
    }
    for by in 0..g.nby {
        runs.clear();
        for bx in 0..g.nbx {
            // Codes were validated; an impossible one decodes as RAW rather than panic.
            let p = Predictor::from_code(codes[by * g.nbx + bx]).unwrap_or(Predictor::Raw);
            let (x0, x1) = (bx * g.bw, ((bx + 1) * g.bw).min(g.w));
            match runs.last_mut() {
                Some(last) if last.2 == p => last.1 = x1,
                _ => runs.push((x0, x1, p)),
            }
        }
        let uses_vector = runs.iter().any(|r| r.2.uses_vector());
        let (mut y, y_end) = (by * g.bh, ((by + 1) * g.bh).min(g.h));
        while y < y_end {
            // MED-type predictors are one serial chain per row; two rows at once give the
            // CPU two chains to overlap (with S = 3 the channels already do that).
            if g.s == 1 && y > 0 && y + 1 < y_end {
                unpredict_pair(g, runs, v, plane, prev, refrows, uses_vector, y);
                y += 2;
            } else {
                unpredict_row(g, runs, v, plane, prev, refrows, uses_vector, y);
                y += 1;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn unpredict_row(
    g: &Geom,
    runs: &[(usize, usize, Predictor)],
    v: (i8, i8),
    plane: &mut [u8],
    prev: Option<&[u8]>,
    refrows: &mut [Vec<u8>; 3],
    uses_vector: bool,
    y: usize,
) {
    let (w, s) = (g.w, g.s);
    let (above, rest) = plane.split_at_mut(y * w);
    let row = &mut rest[..w];
    let up = (y > 0).then(|| &above[(y - 1) * w..][..w]);
    let Some(prev) = prev else {
        for &(x0, x1, p) in runs {
            if p == Predictor::Med {
                med_run(row, up, x0, x1, s);
            }
        }
        return;
    };
    let [rc, ru, _] = refrows;
    if uses_vector {
        shifted_row(g, prev, v, y, rc);
        if y > 0 {
            shifted_row(g, prev, v, y - 1, ru);
        }
    }
    let prev_row = &prev[y * w..][..w];
    let prev_up = (y > 0).then(|| &prev[(y - 1) * w..][..w]);
    for &(x0, x1, p) in runs {
        match p {
            Predictor::Raw => {}
            Predictor::Temporal => add_run(&mut row[x0..x1], &prev_row[x0..x1]),
            Predictor::Motion => add_run(&mut row[x0..x1], &rc[x0..x1]),
            Predictor::Med => med_run(row, up, x0, x1, s),
            Predictor::TemporalMed => tmed_run(row, up.zip(prev_up), prev_row, x0, x1, s),
            Predictor::MotionMed => tmed_run(row, up.map(|u| (u, &ru[..])), rc, x0, x1, s),
        }
    }
}

/// Rows `y` and `y + 1` (`y >= 1`, `S == 1`) together.
#[allow(clippy::too_many_arguments)]
fn unpredict_pair(
    g: &Geom,
    runs: &[(usize, usize, Predictor)],
    v: (i8, i8),
    plane: &mut [u8],
    prev: Option<&[u8]>,
    refrows: &mut [Vec<u8>; 3],
    uses_vector: bool,
    y: usize,
) {
    let w = g.w;
    let (above, rest) = plane.split_at_mut(y * w);
    let up = &above[(y - 1) * w..][..w];
    let (r0, r1) = rest[..2 * w].split_at_mut(w);
    let Some(prev) = prev else {
        for &(x0, x1, p) in runs {
            if p == Predictor::Med {
                med_pair(r0, r1, up, x0, x1);
            }
        }
        return;
    };
    let [rc0, ru, rc1] = refrows;
    if uses_vector {
        shifted_row(g, prev, v, y - 1, ru);
        shifted_row(g, prev, v, y, rc0);
        shifted_row(g, prev, v, y + 1, rc1);
    }
    let pu = &prev[(y - 1) * w..][..w];
    let p0 = &prev[y * w..][..w];
    let p1 = &prev[(y + 1) * w..][..w];
    for &(x0, x1, p) in runs {
        match p {
            Predictor::Raw => {}
            Predictor::Temporal => {
                add_run(&mut r0[x0..x1], &p0[x0..x1]);
                add_run(&mut r1[x0..x1], &p1[x0..x1]);
            }
            Predictor::Motion => {
                add_run(&mut r0[x0..x1], &rc0[x0..x1]);
                add_run(&mut r1[x0..x1], &rc1[x0..x1]);
            }
            Predictor::Med => med_pair(r0, r1, up, x0, x1),
            Predictor::TemporalMed => tmed_pair(r0, r1, up, [pu, p0, p1], x0, x1),
            Predictor::MotionMed => tmed_pair(r0, r1, up, [ru, rc0, rc1], x0, x1),
        }
    }
}

/// MED over `[x0, x1)` of two rows (`r1` below `r0`, `up` above `r0`, not the first row).
#[inline]
fn med_pair(r0: &mut [u8], r1: &mut [u8], up: &[u8], x0: usize, x1: usize) {
    let (r0, r1, up) = (&mut r0[..x1], &mut r1[..x1], &up[..x1]);
    let mut start = x0;
    if x0 == 0 {
        r0[0] = r0[0].wrapping_add(up[0]);
        r1[0] = r1[0].wrapping_add(r0[0]);
        start = 1;
    }
    if start >= x1 {
        return;
    }
    let (mut a0, mut c0) = (i32::from(r0[start - 1]), i32::from(up[start - 1]));
    let mut a1 = i32::from(r1[start - 1]);
    let mut c1 = a0;
    let it = r0[start..].iter_mut().zip(r1[start..].iter_mut()).zip(&up[start..]);
    for ((x0, x1), &b) in it {
        let b = i32::from(b);
        let v0 = i32::from(x0.wrapping_add(med(a0, b, c0) as u8));
        *x0 = v0 as u8;
        let v1 = i32::from(x1.wrapping_add(med(a1, v0, c1) as u8));
        *x1 = v1 as u8;
        (a0, c0, a1, c1) = (v0, b, v1, v0);
    }
}

/// MED on the difference to reference rows `[above, row 0, row 1]`, over two rows.
#[inline]
fn tmed_pair(r0: &mut [u8], r1: &mut [u8], up: &[u8], refs: [&[u8]; 3], x0: usize, x1: usize) {
    let (r0, r1, up) = (&mut r0[..x1], &mut r1[..x1], &up[..x1]);
    let (ru, rc0, rc1) = (&refs[0][..x1], &refs[1][..x1], &refs[2][..x1]);
    let d = |x: u8, r: u8| i32::from(x) - i32::from(r);
    let mut start = x0;
    if x0 == 0 {
        r0[0] = r0[0].wrapping_add((i32::from(rc0[0]) + d(up[0], ru[0])) as u8);
        r1[0] = r1[0].wrapping_add((i32::from(rc1[0]) + d(r0[0], rc0[0])) as u8);
        start = 1;
    }
    if start >= x1 {
        return;
    }
    let i = start - 1;
    let (mut da0, mut dc0) = (d(r0[i], rc0[i]), d(up[i], ru[i]));
    let mut da1 = d(r1[i], rc1[i]);
    let mut dc1 = da0;
    let it = r0[start..]
        .iter_mut()
        .zip(r1[start..].iter_mut())
        .zip(up[start..].iter().zip(&ru[start..]))
        .zip(rc0[start..].iter().zip(&rc1[start..]));
    for (((x0, x1), (&u, &uref)), (&c0, &c1)) in it {
        let db0 = d(u, uref);
        let v0 = x0.wrapping_add((i32::from(c0) + med(da0, db0, dc0)) as u8);
        *x0 = v0;
        let d0 = d(v0, c0);
        let v1 = x1.wrapping_add((i32::from(c1) + med(da1, d0, dc1)) as u8);
        *x1 = v1;
        (da0, dc0, da1, dc1) = (d0, db0, d(v1, c1), d0);
    }
}

#[inline]
fn add_run(row: &mut [u8], reference: &[u8]) {
    for (x, &r) in row.iter_mut().zip(reference) {
        *x = x.wrapping_add(r);
    }
}

/// MED over `row[x0..x1]`; `up` is the decoded row above (`None` on row 0).
#[inline]
fn med_run(row: &mut [u8], up: Option<&[u8]>, x0: usize, x1: usize, s: usize) {
    let row = &mut row[..x1];
    let Some(up) = up else {
        for x in x0..x1 {
            let pred = if x >= s { row[x - s] } else { 0 };
            row[x] = row[x].wrapping_add(pred);
        }
        return;
    };
    let up = &up[..x1];
    let start = x0.max(s).min(x1);
    for x in x0..start {
        row[x] = row[x].wrapping_add(up[x]);
    }
    if start >= x1 {
        return;
    }
    if s == 1 {
        // One dependency chain: carry the left and up-left values in registers.
        let (mut a, mut c) = (i32::from(row[start - 1]), i32::from(up[start - 1]));
        for (x, &b) in row[start..].iter_mut().zip(&up[start..]) {
            let b = i32::from(b);
            let v = x.wrapping_add(med(a, b, c) as u8);
            *x = v;
            a = i32::from(v);
            c = b;
        }
    } else {
        for x in start..x1 {
            let pred = med(i32::from(row[x - s]), i32::from(up[x]), i32::from(up[x - s]));
            row[x] = row[x].wrapping_add(pred as u8);
        }
    }
}

/// MED on the difference to a reference: `rc` is the reference row, `up` the decoded row
/// above with its reference row (`None` on row 0).
#[inline]
fn tmed_run(row: &mut [u8], up: Option<(&[u8], &[u8])>, rc: &[u8], x0: usize, x1: usize, s: usize) {
    let row = &mut row[..x1];
    let rc = &rc[..x1];
    let d = |x: u8, r: u8| i32::from(x) - i32::from(r);
    let Some((up, ru)) = up else {
        for x in x0..x1 {
            let pred = i32::from(rc[x]) + if x >= s { d(row[x - s], rc[x - s]) } else { 0 };
            row[x] = row[x].wrapping_add(pred as u8);
        }
        return;
    };
    let (up, ru) = (&up[..x1], &ru[..x1]);
    let start = x0.max(s).min(x1);
    for x in x0..start {
        row[x] = row[x].wrapping_add((i32::from(rc[x]) + d(up[x], ru[x])) as u8);
    }
    if start >= x1 {
        return;
    }
    if s == 1 {
        let mut da = d(row[start - 1], rc[start - 1]);
        let mut dc = d(up[start - 1], ru[start - 1]);
        let it =
            row[start..].iter_mut().zip(&rc[start..]).zip(up[start..].iter().zip(&ru[start..]));
        for ((x, &r), (&u, &uref)) in it {
            let db = d(u, uref);
            let v = x.wrapping_add((i32::from(r) + med(da, db, dc)) as u8);
            *x = v;
            da = d(v, r);
            dc = db;
        }
    } else {
        for x in start..x1 {
            let pred = i32::from(rc[x])
                + med(d(row[x - s], rc[x - s]), d(up[x], ru[x]), d(up[x - s], ru[x - s]));
            row[x] = row[x].wrapping_add(pred as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
    fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// A smooth textured scene (what real footage looks like to a predictor).
    fn scene(x: i64, y: i64, seed: u64) -> u8 {
        let h = |a: i64, b: i64| {
            let v = (a.wrapping_mul(73_856_093) ^ b.wrapping_mul(19_349_663) ^ seed as i64) as u64;
            (v.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 58) as i64
        };
        // Coarse random lattice, bilinearly smoothed, plus a gradient.
        let (cx, cy) = (x.div_euclid(8), y.div_euclid(8));
        let (fx, fy) = (x.rem_euclid(8), y.rem_euclid(8));
        let v = h(cx, cy) * (8 - fx) * (8 - fy)
            + h(cx + 1, cy) * fx * (8 - fy)
            + h(cx, cy + 1) * (8 - fx) * fy
            + h(cx + 1, cy + 1) * fx * fy;
        (v / 64 * 3 + x + y / 2).rem_euclid(256) as u8
    }

    /// `n` frames of a scene panning by `(dx, dy)` pixels a frame, with a little noise.
    fn clip(layout: &FrameLayout, n: usize, dx: i64, dy: i64, noise_amp: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let jitter = noise(7, n * layout.frame_bytes());
        for f in 0..n as i64 {
            for (p, g) in geoms(layout).iter().enumerate() {
                for y in 0..g.h as i64 {
                    for x in 0..g.w as i64 {
                        let (px, ch) = (x / g.s as i64, x % g.s as i64);
                        let scale = if g.bh < 16 { 2 } else { 1 };
                        let v = scene(
                            (px + f * dx / scale) * scale,
                            (y + f * dy / scale) * scale,
                            p as u64 * 3 + ch as u64,
                        );
                        let j = if noise_amp > 0 { jitter[out.len()] % noise_amp } else { 0 };
                        out.push(v.wrapping_add(j));
                    }
                }
            }
        }
        out
    }

    fn layouts() -> Vec<FrameLayout> {
        vec![
            FrameLayout::new(64, 48, PixelFormat::Yuv420p).unwrap(),
            FrameLayout::new(38, 22, PixelFormat::Yuv420p).unwrap(),
            FrameLayout::new(41, 19, PixelFormat::Rgb24).unwrap(),
            FrameLayout::new(2, 2, PixelFormat::Yuv420p).unwrap(),
            FrameLayout::new(1, 1, PixelFormat::Rgb24).unwrap(),
        ]
    }

    const MODES: [PredictorMode; 4] =
        [PredictorMode::Raw, PredictorMode::Temporal, PredictorMode::Med, PredictorMode::Adaptive];

    fn round_trip(layout: &FrameLayout, frames: &[u8], mode: PredictorMode, level: i32) -> usize {
        let n = frames.len() / layout.frame_bytes();
        let chunk = ChunkEncoder::new(level, mode).unwrap().encode(layout, frames).unwrap();
        let mut out = vec![0xA5; frames.len()];
        ChunkDecoder::new().unwrap().decode(layout, n, &chunk, &mut out).unwrap();
        assert!(out == frames, "{mode} {layout:?}: decoded frames differ");
        // The portable build of the residual pass, whatever this CPU has.
        out.fill(0xA5);
        baseline_decoder().decode(layout, n, &chunk, &mut out).unwrap();
        assert!(out == frames, "{mode} {layout:?}: the baseline build decodes differently");
        chunk.len()
    }

    /// A decoder that never takes the AVX2 build of the residual pass.
    fn baseline_decoder() -> ChunkDecoder {
        ChunkDecoder { avx2: false, ..ChunkDecoder::new().unwrap() }
    }

    #[test]
    fn every_mode_round_trips_gradients_noise_and_motion() {
        for layout in layouts() {
            let fb = layout.frame_bytes();
            let gradient: Vec<u8> = (0..3 * fb).map(|i| (i % 251) as u8).collect();
            let clips = [
                gradient,
                noise(1, 3 * fb),
                clip(&layout, 5, 3, -2, 0),
                clip(&layout, 4, -7, 1, 6),
                clip(&layout, 1, 0, 0, 3),
                vec![0; 2 * fb],
                vec![255; 2 * fb],
            ];
            for frames in &clips {
                for mode in MODES {
                    round_trip(&layout, frames, mode, 3);
                }
            }
        }
    }

    #[test]
    fn decoding_the_first_frames_gives_those_of_a_full_decode() {
        for layout in layouts() {
            let frames = clip(&layout, 5, 3, -2, 4);
            let chunk = ChunkEncoder::new(1, PredictorMode::Adaptive).unwrap();
            let chunk = chunk.with_candidates(&Predictor::ALL).encode(&layout, &frames).unwrap();
            let mut dec = ChunkDecoder::new().unwrap();
            for upto in 1..=6 {
                let mut out = vec![0xA5; frames.len()];
                dec.decode_first(&layout, 5, &chunk, &mut out, upto).unwrap();
                let n = upto.min(5) * layout.frame_bytes();
                assert!(out[..n] == frames[..n], "{layout:?}: first {upto} frames differ");
            }
        }
    }

    #[test]
    fn extreme_residuals_round_trip() {
        // Alternating 0/128/255 columns and rows produce residuals of -128, 127 and 128.
        let layout = FrameLayout::new(24, 10, PixelFormat::Rgb24).unwrap();
        let fb = layout.frame_bytes();
        let frames: Vec<u8> =
            (0..3 * fb).map(|i| [0u8, 128, 255, 127, 1][(i * 7 + i / 72) % 5]).collect();
        for mode in MODES {
            round_trip(&layout, &frames, mode, 1);
        }
    }

    #[test]
    fn one_decoder_handles_chunks_of_different_layouts_in_turn() {
        let mut dec = ChunkDecoder::new().unwrap();
        let mut enc = ChunkEncoder::new(3, PredictorMode::Adaptive).unwrap();
        for (i, layout) in layouts().iter().cycle().take(10).enumerate() {
            let frames = clip(layout, 1 + i % 3, 1, 1, 4);
            let chunk = enc.encode(layout, &frames).unwrap();
            let mut out = vec![0; frames.len()];
            dec.decode(layout, 1 + i % 3, &chunk, &mut out).unwrap();
            assert_eq!(out, frames);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn random_frames_round_trip(
            w in 1u32..40, h in 1u32..24, rgb in any::<bool>(), n in 1usize..5,
            seed in any::<u64>(), smooth in any::<bool>(), mode in 0usize..4, level in 1i32..6,
        ) {
            let (w, h, format) = if rgb { (w, h, PixelFormat::Rgb24) } else {
                (w * 2, h * 2, PixelFormat::Yuv420p)
            };
            let layout = FrameLayout::new(w, h, format).unwrap();
            let frames = if smooth {
                clip(&layout, n, (seed % 5) as i64 - 2, (seed % 3) as i64 - 1, (seed % 4) as u8)
            } else {
                noise(seed, n * layout.frame_bytes())
            };
            round_trip(&layout, &frames, MODES[mode], level);
        }

        /// Whatever the decompressed payload holds, the decoder returns (an error, usually)
        /// without panicking.
        #[test]
        fn mutated_payloads_never_panic(
            edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..6),
            cut in any::<u16>(),
        ) {
            let layout = FrameLayout::new(20, 12, PixelFormat::Yuv420p).unwrap();
            let frames = clip(&layout, 3, 2, 1, 5);
            let mut payload = payload_of(&layout, &frames);
            for (at, v) in edits {
                let at = usize::from(at) % payload.len();
                payload[at] = v;
            }
            if cut % 4 == 0 {
                payload.truncate(usize::from(cut) % payload.len());
            }
            let chunk = zstd::bulk::compress(&payload, 1).unwrap();
            let mut out = vec![0; frames.len()];
            let got = ChunkDecoder::new().unwrap().decode(&layout, 3, &chunk, &mut out);
            let mut base = vec![0; frames.len()];
            let want = baseline_decoder().decode(&layout, 3, &chunk, &mut base);
            // Both builds agree on what they reject and on what they decode.
            prop_assert_eq!(got.map_err(|e| e.to_string()), want.map_err(|e| e.to_string()));
            prop_assert!(out == base);
        }
    }

    /// The decompressed payload the encoder wrote for `frames`.
    fn payload_of(layout: &FrameLayout, frames: &[u8]) -> Vec<u8> {
        let chunk =
            ChunkEncoder::new(3, PredictorMode::Adaptive).unwrap().encode(layout, frames).unwrap();
        zstd::bulk::decompress(&chunk, 1 << 24).unwrap()
    }

    fn decode_payload(layout: &FrameLayout, n: usize, payload: &[u8]) -> Result<(), CodecError> {
        let mut out = vec![0; n * layout.frame_bytes()];
        let chunk = zstd::bulk::compress(payload, 3).unwrap();
        ChunkDecoder::new().unwrap().decode(layout, n, &chunk, &mut out)
    }

    fn test_clip() -> (FrameLayout, Vec<u8>) {
        let layout = FrameLayout::new(32, 24, PixelFormat::Yuv420p).unwrap();
        (layout, clip(&layout, 3, 2, 1, 5))
    }

    /// Offset of the first block code of frame `f`, plane 0.
    fn codes_at(layout: &FrameLayout, n: usize, f: usize) -> usize {
        let gs = geoms(layout);
        let blocks: usize = gs.iter().map(Geom::blocks).sum();
        n * gs.len() * 2 + f * blocks
    }

    #[test]
    fn crafted_payload_decodes_and_the_encoder_payload_is_valid() {
        let (layout, frames) = test_clip();
        decode_payload(&layout, 3, &payload_of(&layout, &frames)).unwrap();
    }

    #[test]
    fn rejects_unknown_predictor_codes() {
        let (layout, frames) = test_clip();
        for code in [6u8, 7, 0x80, 255] {
            let mut p = payload_of(&layout, &frames);
            p[codes_at(&layout, 3, 1) + 2] = code;
            match decode_payload(&layout, 3, &p) {
                Err(CodecError::UnknownPredictor { frame: 1, plane: 0, block: 2, code: c }) => {
                    assert_eq!(c, code)
                }
                other => panic!("code {code}: {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_temporal_predictors_and_vectors_on_the_first_frame() {
        let (layout, frames) = test_clip();
        for p in Predictor::ALL.into_iter().filter(|p| p.is_temporal()) {
            let mut payload = payload_of(&layout, &frames);
            payload[codes_at(&layout, 3, 0) + 1] = p.code();
            assert!(
                matches!(
                    decode_payload(&layout, 3, &payload),
                    Err(CodecError::TemporalOnFirstFrame { plane: 0, block: 1, .. })
                ),
                "{p:?}"
            );
        }
        let mut payload = payload_of(&layout, &frames);
        payload[3] = 1; // dy of frame 0, plane 1
        assert!(matches!(
            decode_payload(&layout, 3, &payload),
            Err(CodecError::VectorOnFirstFrame { plane: 1 })
        ));
    }

    #[test]
    fn rejects_payloads_of_the_wrong_size() {
        let (layout, frames) = test_clip();
        let payload = payload_of(&layout, &frames);
        let mut longer = payload.clone();
        longer.push(0);
        assert!(matches!(
            decode_payload(&layout, 3, &longer),
            Err(CodecError::SizeMismatch { .. })
        ));
        for len in [0, 10, payload.len() / 2, payload.len() - 1] {
            assert!(decode_payload(&layout, 3, &payload[..len]).is_err(), "length {len}");
        }
        // A payload far beyond what the chunk could need is refused by zstd, not allocated.
        assert!(matches!(
            decode_payload(&layout, 3, &vec![0; 20 * frames.len()]),
            Err(CodecError::Zstd(_))
        ));
    }

    #[test]
    fn rejects_streams_that_end_early_or_late() {
        let (layout, frames) = test_clip();
        let payload = payload_of(&layout, &frames);
        let table = codes_at(&layout, 3, 3);
        let len = |p: &[u8], k: usize| {
            u32::from_le_bytes(p[table + 4 * k..table + 4 * k + 4].try_into().unwrap())
        };
        // Move one byte from the first non-empty zero-flag stream to the next stream: the
        // total stays right but the streams no longer hold what the decoder reads.
        let k = (0..NZ).find(|&k| len(&payload, k) > 0).unwrap();
        let mut p = payload.clone();
        p[table + 4 * k..][..4].copy_from_slice(&(len(&payload, k) - 1).to_le_bytes());
        p[table + 4 * (k + 1)..][..4].copy_from_slice(&(len(&payload, k + 1) + 1).to_le_bytes());
        assert!(matches!(
            decode_payload(&layout, 3, &p),
            Err(CodecError::StreamOverrun { .. } | CodecError::StreamTrailing { .. })
        ));
        // Padding bits of a bit stream must be zero: set the top bit of a stream's last byte.
        let start = table + 4 * N_STREAMS;
        let mut end = start;
        let mut found = false;
        for s in 0..N_BIT_STREAMS {
            end += len(&payload, s) as usize;
            if len(&payload, s) > 0 && payload[end - 1] & 0x80 == 0 {
                let mut p = payload.clone();
                p[end - 1] |= 0x80;
                if let Err(CodecError::StreamTrailing { .. }) = decode_payload(&layout, 3, &p) {
                    found = true;
                    break;
                }
            }
        }
        assert!(found, "no stream with padding detected its non-zero padding bit");
    }

    #[test]
    fn rejects_magnitudes_out_of_range() {
        // One 8x1 rgb24 frame (24 bytes, one RAW block), written by hand: every residual is
        // non-zero, the first has magnitude byte 126, i.e. +128, which is out of range.
        let layout = FrameLayout::new(8, 1, PixelFormat::Rgb24).unwrap();
        let mut p = vec![0, 0, Predictor::Raw.code()];
        // Row 0 has no row above: every group context is 0, so 3 groups of 8 flags in Z0.
        // Per pixel the context sum is 2 * (left non-zero): 0 for x < 3, 2 after.
        let (o_first, o_rest) = (usize::from(om_code(0) & 7), usize::from(om_code(2) & 7));
        assert_ne!(o_first, o_rest);
        let mut streams = vec![Vec::new(); N_STREAMS];
        streams[0] = vec![0xFF; 3];
        streams[NZ + o_first] = vec![0b001]; // x = 0 has magnitude > 1, x = 1, 2 do not
        streams[NZ + o_rest] = vec![0; 3]; // 21 flags: magnitude 1
        streams[NZ + NO + 4] = vec![0; 3]; // signs (context 4: no neighbours): positive
        streams[N_BIT_STREAMS + usize::from(om_code(0) >> 3)] = vec![126];
        for s in &streams {
            p.extend((s.len() as u32).to_le_bytes());
        }
        p.extend(streams.concat());
        match decode_payload(&layout, 1, &p) {
            Err(CodecError::BadMagnitude { magnitude: 128, frame: 0, plane: 0 }) => {}
            other => panic!("{other:?}"),
        }
        // The same payload with magnitude 127 is valid.
        let m = p.len() - 1;
        p[m] = 125;
        let mut out = vec![0; 24];
        let chunk = zstd::bulk::compress(&p, 3).unwrap();
        ChunkDecoder::new().unwrap().decode(&layout, 1, &chunk, &mut out).unwrap();
        assert_eq!(out, [&[127u8][..], &[1; 23][..]].concat());
    }

    #[test]
    fn rejects_truncated_flipped_garbage_and_concatenated_chunks() {
        let (layout, frames) = test_clip();
        let chunk = ChunkEncoder::new(3, PredictorMode::Adaptive)
            .unwrap()
            .encode(&layout, &frames)
            .unwrap();
        let mut dec = ChunkDecoder::new().unwrap();
        let mut out = vec![0; frames.len()];
        for len in 0..chunk.len() {
            assert!(dec.decode(&layout, 3, &chunk[..len], &mut out).is_err(), "truncated to {len}");
        }
        // Thanks to the frame checksum a flipped bit is an error, never wrong pixels. About one
        // bit in a thousand changes nothing at all (the frame descriptor's unused bit, slack in
        // entropy table descriptions): those decode to the right frames.
        let mut harmless = 0;
        for bit in 0..chunk.len() * 8 {
            let mut c = chunk.clone();
            c[bit / 8] ^= 1 << (bit % 8);
            if dec.decode(&layout, 3, &c, &mut out).is_ok() {
                assert!(out == frames, "bit {bit} flipped: wrong pixels accepted");
                harmless += 1;
            }
        }
        assert!(harmless * 100 < chunk.len() * 8, "{harmless} flips changed nothing");
        for seed in 0..64 {
            let garbage = noise(seed, 1 + seed as usize * 13);
            assert!(dec.decode(&layout, 3, &garbage, &mut out).is_err());
        }
        let twice = [chunk.clone(), chunk.clone()].concat();
        assert!(matches!(
            dec.decode(&layout, 3, &twice, &mut out),
            Err(CodecError::NotOneFrame { .. })
        ));
        // And the decoder still works afterwards.
        dec.decode(&layout, 3, &chunk, &mut out).unwrap();
        assert_eq!(out, frames);
    }

    #[test]
    fn rejects_wrong_frame_counts_and_buffer_sizes() {
        let (layout, frames) = test_clip();
        let chunk = ChunkEncoder::new(3, PredictorMode::Adaptive)
            .unwrap()
            .encode(&layout, &frames)
            .unwrap();
        let fb = layout.frame_bytes();
        let mut dec = ChunkDecoder::new().unwrap();
        for n in [1, 2, 4, 16] {
            let mut out = vec![0; n * fb];
            assert!(dec.decode(&layout, n, &chunk, &mut out).is_err(), "{n} frames");
        }
        let mut out = vec![0; 3 * fb + 1];
        assert!(matches!(
            dec.decode(&layout, 3, &chunk, &mut out),
            Err(CodecError::BadLength { .. })
        ));
        assert!(matches!(dec.decode(&layout, 0, &chunk, &mut []), Err(CodecError::NoFrames)));
        let other = FrameLayout::new(32, 22, PixelFormat::Yuv420p).unwrap();
        let mut out = vec![0; 3 * other.frame_bytes()];
        assert!(dec.decode(&other, 3, &chunk, &mut out).is_err());
        let mut enc = ChunkEncoder::new(3, PredictorMode::Adaptive).unwrap();
        assert!(matches!(enc.encode(&layout, &frames[1..]), Err(CodecError::BadLength { .. })));
        assert!(matches!(enc.encode(&layout, &[]), Err(CodecError::NoFrames)));
    }

    #[test]
    fn adaptive_is_never_much_larger_than_the_best_fixed_mode() {
        let layout = FrameLayout::new(96, 64, PixelFormat::Yuv420p).unwrap();
        let clips = [
            ("static", clip(&layout, 8, 0, 0, 3)),
            ("panning", clip(&layout, 8, 3, 1, 3)),
            ("noise", noise(3, 4 * layout.frame_bytes())),
        ];
        for (name, frames) in &clips {
            let size = |m| round_trip(&layout, frames, m, 3);
            let best_fixed = [PredictorMode::Raw, PredictorMode::Temporal, PredictorMode::Med]
                .map(size)
                .into_iter()
                .min()
                .unwrap();
            let adaptive = size(PredictorMode::Adaptive);
            assert!(
                adaptive as f64 <= best_fixed as f64 * 1.03,
                "{name}: adaptive {adaptive} B, best fixed mode {best_fixed} B"
            );
        }
    }

    #[test]
    fn motion_predictors_pay_on_panning_footage() {
        let layout = FrameLayout::new(96, 64, PixelFormat::Yuv420p).unwrap();
        let frames = clip(&layout, 6, 4, 2, 2);
        let enc = |c: &[Predictor]| {
            let mut e = ChunkEncoder::new(3, PredictorMode::Adaptive).unwrap().with_candidates(c);
            e.encode(&layout, &frames).unwrap().len()
        };
        let all = enc(&Predictor::ALL);
        let no_motion =
            enc(&[Predictor::Raw, Predictor::Temporal, Predictor::Med, Predictor::TemporalMed]);
        assert!(all < no_motion, "with motion {all} B, without {no_motion} B");
    }

    #[test]
    fn mode_names_and_codes_round_trip() {
        for m in MODES {
            assert_eq!(m.to_string().parse::<PredictorMode>().unwrap(), m);
        }
        assert_eq!(PredictorMode::default(), PredictorMode::Adaptive);
        assert!("fast".parse::<PredictorMode>().is_err());
        for p in Predictor::ALL {
            assert_eq!(Predictor::from_code(p.code()), Some(p));
        }
        assert_eq!(Predictor::from_code(6), None);
    }

    #[test]
    fn context_tables_match_their_thresholds() {
        for g in 0..100u32 {
            assert_eq!(z_ctx(g), Z_THRESHOLDS.iter().filter(|&&t| g > t).count());
        }
        for s in 0..=255u8 {
            let c = om_code(s);
            let above = |t: &[u32]| t.iter().filter(|&&t| u32::from(s) > t).count() as u8;
            assert_eq!((c & 7, c >> 3), (above(&O_THRESHOLDS), above(&M_THRESHOLDS)));
        }
        assert_eq!(pixel_sum(1, 128, 128, 128), 255);
    }
}
