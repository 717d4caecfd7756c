//! [`ChunkDecoder`]: one zstd frame in, frames out, every rule of the payload checked
//! (`FORMAT.md#321-payload-layout`, `FORMAT.md#324-zstd-framing-and-size-limits`).

use super::bits::{Fault, Readers};
use super::context::{N_BIT_STREAMS, N_STREAMS};
use super::error::CodecError;
use super::interleaved;
use super::mode::{Codec, Predictor};
use super::plane::{geoms, Geom};
use super::residuals::{decode_residuals, RowScratch};
use super::unpredict::unpredict_plane;
use crate::pixel::FrameLayout;
use std::io;

/// Reusable decoder; one per thread. Holds the decompressed payload and row scratch, so
/// decoding allocates nothing once it has seen the largest chunk.
pub struct ChunkDecoder {
    decompressor: zstd::bulk::Decompressor<'static>,
    payload: Vec<u8>,
    rows: RowScratch,
    refrows: [Vec<u8>; 3],
    runs: Vec<(usize, usize, Predictor)>,
    /// Where each zstd frame of a plain or interleaved chunk starts.
    offsets: Vec<usize>,
    interleaved: interleaved::DecodeScratch,
    /// The CPU has AVX2 and its bit instructions (checked once, [`has_avx2`]): decode with
    /// the AVX2 builds of the residual passes.
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
            offsets: Vec::new(),
            interleaved: interleaved::DecodeScratch::default(),
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
        let Some(sizes) = PayloadSizes::new(&gs, n_frames, fb).filter(|s| s.frames == out.len())
        else {
            let expected = n_frames.saturating_mul(fb);
            return Err(CodecError::BadLength {
                what: "output buffer",
                expected,
                actual: out.len(),
            });
        };
        let got = self.decompress(compressed, sizes.limit)?;
        // Parse and validate everything before touching pixels.
        let data = &self.payload[..];
        let mut rd = stream_readers(data, &sizes, got)?;
        let (vectors, codes) = data[..sizes.header].split_at(n_frames * gs.len() * 2);
        check_vectors_and_codes(&gs, n_frames, vectors, codes)?;

        let mut fault = Fault::default();
        let mut at = 0;
        let np = gs.len();
        for f in 0..upto {
            let (before, rest) = out.split_at_mut(f * fb);
            let frame = &mut rest[..fb];
            for (p, g) in gs.iter().enumerate() {
                let plane = &mut frame[g.off..][..g.len()];
                let prev = (f > 0).then(|| &before[(f - 1) * fb + g.off..][..g.len()]);
                decode_residuals(g, data, &mut rd, &mut self.rows, plane, &mut fault, self.avx2);
                if fault.any() {
                    return Err(fault_error(&fault, f, p));
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

    /// Decodes at least the frames `wanted` (numbers within the chunk) of a chunk stored
    /// with `codec` into `out` (exactly `n_frames * frame_bytes` long; the frames not
    /// decoded hold garbage) and returns how many frames it reconstructed: those of
    /// [`Codec::decodes`]. The predictive codec codes frames in order, so it reconstructs
    /// every frame up to the last wanted one ([`decode_first`](Self::decode_first)); the
    /// interleaved codec each wanted frame's chain (`k`, `k - 2`, ... of the chunk); plain
    /// frames are independent, so exactly the wanted ones. Either way every check that needs
    /// only those frames is made; all of them when every frame is wanted.
    pub fn decode_wanted(
        &mut self,
        codec: Codec,
        layout: &FrameLayout,
        n_frames: usize,
        compressed: &[u8],
        out: &mut [u8],
        wanted: &[usize],
    ) -> Result<usize, CodecError> {
        let fb = layout.frame_bytes();
        if n_frames == 0 {
            return Err(CodecError::NoFrames);
        }
        if out.len() != n_frames.saturating_mul(fb) {
            let expected = n_frames.saturating_mul(fb);
            let actual = out.len();
            return Err(CodecError::BadLength { what: "output buffer", expected, actual });
        }
        let decode = codec.decodes(wanted, n_frames);
        match codec {
            Codec::Predictive => {
                self.decode_first(layout, n_frames, compressed, out, decode.len())?;
            }
            Codec::Interleaved => {
                let parts = n_frames.saturating_mul(interleaved::PARTS);
                super::plain::frame_offsets(compressed, parts, &mut self.offsets)?;
                interleaved::decode(
                    &mut self.decompressor,
                    &mut self.interleaved,
                    &mut self.refrows,
                    &mut self.runs,
                    layout,
                    compressed,
                    &self.offsets,
                    &decode,
                    out,
                    self.avx2,
                )?;
            }
            Codec::Plain => {
                super::plain::frame_offsets(compressed, n_frames, &mut self.offsets)?;
                for &k in &decode {
                    let dst = &mut out[k * fb..(k + 1) * fb];
                    super::plain::decode_frame(
                        &mut self.decompressor,
                        compressed,
                        &self.offsets,
                        k,
                        dst,
                    )?;
                }
            }
        }
        Ok(decode.len())
    }

    /// The frames of a plain chunk (codec 2) of `n_frames` frames, for reading some of them
    /// straight into a caller's buffer ([`PlainFrames::append`]): the reader's path for a
    /// clip's frames. Finds the chunk's frame table and checks that it tiles the chunk.
    pub fn plain_frames<'a>(
        &'a mut self,
        compressed: &'a [u8],
        n_frames: usize,
    ) -> Result<PlainFrames<'a>, CodecError> {
        super::plain::frame_offsets(compressed, n_frames, &mut self.offsets)?;
        Ok(PlainFrames { decompressor: &mut self.decompressor, offsets: &self.offsets, compressed })
    }

    /// Checks that `compressed` is exactly one zstd frame and decompresses it into the
    /// payload buffer, refusing more than `limit` bytes. Returns the payload's length.
    fn decompress(&mut self, compressed: &[u8], limit: usize) -> Result<usize, CodecError> {
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
        self.decompressor
            .decompress_to_buffer(compressed, &mut self.payload[..limit])
            .map_err(CodecError::Zstd)
    }

    /// A decoder that never takes the AVX2 build of the residual pass.
    #[cfg(test)]
    pub(super) fn without_avx2() -> Self {
        ChunkDecoder { avx2: false, ..ChunkDecoder::new().expect("zstd decoder") }
    }
}

/// A plain chunk whose frame table is known ([`ChunkDecoder::plain_frames`]).
pub struct PlainFrames<'a> {
    decompressor: &'a mut zstd::bulk::Decompressor<'static>,
    offsets: &'a [usize],
    compressed: &'a [u8],
}

impl PlainFrames<'_> {
    /// Appends frame `k` (of `frame_bytes` bytes) to `out`, decompressed straight into it; on
    /// error `out` is left as it was.
    pub fn append(
        &mut self,
        k: usize,
        frame_bytes: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        if k + 1 >= self.offsets.len() {
            let (expected, actual) = (self.offsets.len().saturating_sub(1), k);
            return Err(CodecError::BadLength { what: "frame number", expected, actual });
        }
        super::plain::append_frame(
            self.decompressor,
            self.compressed,
            self.offsets,
            k,
            frame_bytes,
            out,
        )
    }
}

/// Where the parts of a chunk's payload end, and how large it may be.
struct PayloadSizes {
    /// Bytes of the decoded frames.
    frames: usize,
    /// End of the motion vectors and block codes (parts 1 and 2).
    header: usize,
    /// End of the stream table (part 3).
    table: usize,
    /// The most a payload of these frames can need: 3 flag bits and one byte per pixel,
    /// plus a partial last byte per bit stream. Decompressing into at most this much bounds
    /// what a bomb can claim.
    limit: usize,
}

impl PayloadSizes {
    /// `None` when a size overflows.
    fn new(gs: &[Geom], n_frames: usize, fb: usize) -> Option<Self> {
        let blocks: usize = gs.iter().map(Geom::blocks).sum();
        let frames = n_frames.checked_mul(fb)?;
        let header = n_frames.checked_mul(gs.len() * 2 + blocks)?;
        let table = header.checked_add(4 * N_STREAMS)?;
        let limit = (frames / 8 + 1)
            .checked_mul(3)?
            .checked_add(frames)?
            .checked_add(table)?
            .checked_add(N_BIT_STREAMS + 8)?;
        Some(PayloadSizes { frames, header, table, limit })
    }
}

/// Reads the stream table of a payload of `got` bytes and points a reader at each stream;
/// the streams must end exactly at the end of the payload.
fn stream_readers(data: &[u8], sizes: &PayloadSizes, got: usize) -> Result<Readers, CodecError> {
    let (header, table) = (sizes.header, sizes.table);
    if got < table {
        return Err(CodecError::SizeMismatch { expected: table, actual: got });
    }
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
    Ok(rd)
}

/// Codec 1's frame 0 has no motion vectors and no temporal predictors; every code is a
/// known one.
fn check_vectors_and_codes(
    gs: &[Geom],
    n_frames: usize,
    vectors: &[u8],
    codes: &[u8],
) -> Result<(), CodecError> {
    let np = gs.len();
    let blocks: usize = gs.iter().map(Geom::blocks).sum();
    for f in 0..n_frames {
        let v = &vectors[f * 2 * np..(f + 1) * 2 * np];
        check_frame(gs, f, f > 0, v, &codes[f * blocks..(f + 1) * blocks])?;
    }
    Ok(())
}

/// Checks one frame's block codes (`codes`, every plane's) are known ones and, when it has
/// no reference frame, that none is temporal and its `vectors` (2 bytes a plane) are zero.
pub(super) fn check_frame(
    gs: &[Geom],
    frame: usize,
    has_reference: bool,
    vectors: &[u8],
    codes: &[u8],
) -> Result<(), CodecError> {
    if !has_reference {
        if let Some(plane) = vectors.chunks(2).position(|v| v.iter().any(|&b| b != 0)) {
            return Err(CodecError::VectorWithoutReference { frame, plane });
        }
    }
    let mut at = 0;
    for (plane, g) in gs.iter().enumerate() {
        for (block, &code) in codes[at..at + g.blocks()].iter().enumerate() {
            match Predictor::from_code(code) {
                None => return Err(CodecError::UnknownPredictor { frame, plane, block, code }),
                Some(p) if !has_reference && p.is_temporal() => {
                    return Err(CodecError::TemporalWithoutReference { frame, plane, block, code })
                }
                Some(_) => {}
            }
        }
        at += g.blocks();
    }
    Ok(())
}

/// The error a fault of the residual pass on plane `plane` of frame `frame` stands for.
pub(super) fn fault_error(fault: &Fault, frame: usize, plane: usize) -> CodecError {
    match (fault.overrun, fault.magnitude) {
        (Some(stream), _) => CodecError::StreamOverrun { stream, frame, plane },
        (None, magnitude) => {
            CodecError::BadMagnitude { magnitude: magnitude.unwrap_or(0), frame, plane }
        }
    }
}

/// AVX2 and the bit instructions every AVX2 CPU also has (BMI1, BMI2, POPCNT, LZCNT): the
/// AVX2 builds of the residual passes are compiled for all of them (the hardware popcount
/// alone gives about 8 % more codec 3 reads per CPU second).
pub(super) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("bmi1")
        && std::is_x86_feature_detected!("bmi2")
        && std::is_x86_feature_detected!("popcnt")
        && std::is_x86_feature_detected!("lzcnt");
    #[cfg(not(target_arch = "x86_64"))]
    false
}
