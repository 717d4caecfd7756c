//! [`ChunkEncoder`]: frames in, one zstd frame out (`FORMAT.md#321-payload-layout`).

use super::bits::BitWriter;
use super::context::{N_BIT_STREAMS, N_BYTE_STREAMS};
use super::error::CodecError;
use super::mode::{Predictor, PredictorMode};
use super::plane::{geoms, Geom};
use super::predict::{predict_plane, PredictScratch};
use super::residuals::encode_residuals;
use crate::pixel::FrameLayout;

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
    interleaved: super::interleaved::Scratch,
}

impl ChunkEncoder {
    /// `level` is the zstd level (1..=22; negative levels are zstd's fast modes).
    pub fn new(level: i32, mode: PredictorMode) -> Result<Self, CodecError> {
        let mut compressor = zstd::bulk::Compressor::new(level).map_err(CodecError::Zstd)?;
        match mode {
            PredictorMode::Interleaved => super::interleaved::configure(&mut compressor)?,
            PredictorMode::Plain => super::plain::configure(&mut compressor)?,
            // 4 bytes per chunk buy detection of any corruption inside the frame, so a
            // damaged chunk fails to decode instead of yielding wrong pixels.
            _ => compressor
                .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
                .map_err(CodecError::Zstd)?,
        }
        Ok(ChunkEncoder {
            mode,
            candidates: Predictor::ALL.to_vec(),
            compressor,
            scratch: PredictScratch::new(),
            residual: Vec::new(),
            payload: Vec::new(),
            bits: (0..N_BIT_STREAMS).map(|_| BitWriter::default()).collect(),
            bytes: vec![Vec::new(); N_BYTE_STREAMS],
            rows: [Vec::new(), Vec::new()],
            interleaved: super::interleaved::Scratch::new(),
        })
    }

    /// Restricts [`PredictorMode::Adaptive`] and [`PredictorMode::Interleaved`] to these
    /// predictors; RAW and MED are always allowed since a frame without a reference needs a
    /// spatial one. For measuring what each predictor is worth.
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
    /// chunk: one zstd frame, or one per frame for [`PredictorMode::Plain`] and
    /// [`PredictorMode::Interleaved`].
    pub fn encode(&mut self, layout: &FrameLayout, frames: &[u8]) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        self.encode_into(layout, frames, &mut out)?;
        Ok(out)
    }

    /// [`encode`](Self::encode), appending the chunk to `out` instead: a record's chunks go
    /// straight into its buffer, which the sharder reuses from video to video. After an
    /// error `out` is as it was.
    pub fn encode_into(
        &mut self,
        layout: &FrameLayout,
        frames: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let start = out.len();
        let appended = self.append(layout, frames, out);
        if appended.is_err() {
            out.truncate(start);
        }
        appended
    }

    fn append(
        &mut self,
        layout: &FrameLayout,
        frames: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
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
        match self.mode {
            PredictorMode::Plain => {
                return super::plain::encode(&mut self.compressor, frames, fb, out)
            }
            PredictorMode::Interleaved => {
                return super::interleaved::encode(
                    &mut self.compressor,
                    &self.candidates,
                    &mut self.scratch,
                    &mut self.interleaved,
                    layout,
                    frames,
                    out,
                )
            }
            _ => {}
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
        append_zstd_frame(&mut self.compressor, &self.payload, out)
    }
}

/// Compresses `data` as one zstd frame straight into `out`'s spare capacity: no `Vec` per
/// frame or chunk to allocate, copy and free (each cost the sharder page faults and copies:
/// perf on `cvrl-shard build --predictor plain`).
pub(super) fn append_zstd_frame(
    compressor: &mut zstd::bulk::Compressor<'static>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    out.reserve(zstd::zstd_safe::compress_bound(data.len()));
    let start = out.len();
    let mut tail = std::io::Cursor::new(out);
    tail.set_position(start as u64);
    compressor.compress_to_buffer(data, &mut tail).map_err(CodecError::Zstd)?;
    Ok(())
}
