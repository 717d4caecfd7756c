//! Codec 3, interleaved predicted frames
//! (`FORMAT.md#34-chunk-data-interleaved-predicted-frames`): the predictors of codec 1, but
//! frame `k` of a chunk refers to frame `k - 2`, so the even and the odd frames form two
//! chains, and each frame's residuals are plain bytes in a zstd frame of its own.
//!
//! Why: a training clip takes every second frame (stride 2). Codec 1 reconstructs every
//! frame up to a clip's last one in each chunk, about twice the frames the clip uses, and
//! its context-coded residual streams decode at 130-220 MB/s; here a stride-2 clip
//! decompresses and reconstructs only its own chain, and zstd's Huffman decoder replaces
//! the per-residual bit reads (BENCHMARKS.md, "Sharder" and "Loader").

use super::error::CodecError;
use super::mode::{Predictor, PredictorMode};
use super::plane::{geoms, Geom};
use super::predict::{predict_plane, PredictScratch};
use super::unpredict::unpredict_plane;
use crate::pixel::FrameLayout;
use std::io;

/// How far back a frame's reference is: frame `k` refers to frame `k - REF_DISTANCE`.
pub(super) const REF_DISTANCE: usize = 2;

/// Bytes of one frame's payload: its vectors, its block codes, its residual bytes.
pub(super) fn payload_len(gs: &[Geom], frame_bytes: usize) -> usize {
    2 * gs.len() + gs.iter().map(Geom::blocks).sum::<usize>() + frame_bytes
}

/// The frames a decode of `wanted` (numbers within a chunk of `n` frames) reconstructs:
/// each wanted frame and its chain back to the chunk's start (`k - 2`, `k - 4`, ...).
pub fn chains(wanted: &[usize], n: usize) -> Vec<usize> {
    let mut need = vec![false; n];
    for &k in wanted.iter().filter(|&&k| k < n) {
        // Walk down the chain until a frame already marked: its chain is marked too.
        let mut j = k;
        while !need[j] {
            need[j] = true;
            if j < REF_DISTANCE {
                break;
            }
            j -= REF_DISTANCE;
        }
    }
    (0..n).filter(|&k| need[k]).collect()
}

/// Encodes `frames` (`n` frames of `layout`, back to back) as a codec 3 chunk.
pub(super) fn encode(
    compressor: &mut zstd::bulk::Compressor<'static>,
    candidates: &[Predictor],
    scratch: &mut PredictScratch,
    payload: &mut Vec<u8>,
    layout: &FrameLayout,
    frames: &[u8],
) -> Result<Vec<u8>, CodecError> {
    let fb = layout.frame_bytes();
    let gs = geoms(layout);
    let np = gs.len();
    let blocks: usize = gs.iter().map(Geom::blocks).sum();
    let bound = zstd::zstd_safe::compress_bound(payload_len(&gs, fb));
    let mut out = Vec::with_capacity(frames.len() / 3 + bound);
    for (k, frame) in frames.chunks_exact(fb).enumerate() {
        payload.clear();
        payload.resize(payload_len(&gs, fb), 0);
        let (vectors, rest) = payload.split_at_mut(2 * np);
        let (mut codes, residual) = rest.split_at_mut(blocks);
        for (p, g) in gs.iter().enumerate() {
            let cur = &frame[g.off..][..g.len()];
            let prev = k.checked_sub(REF_DISTANCE).map(|r| &frames[r * fb + g.off..][..g.len()]);
            let (plane_codes, more) = codes.split_at_mut(g.blocks());
            codes = more;
            let v = predict_plane(
                PredictorMode::Interleaved,
                candidates,
                scratch,
                g,
                cur,
                prev,
                plane_codes,
                &mut residual[g.off..][..g.len()],
            );
            vectors[2 * p] = v.0 as u8;
            vectors[2 * p + 1] = v.1 as u8;
        }
        // Straight into the chunk's spare capacity, as plain frames are.
        out.reserve(bound);
        let start = out.len();
        let mut tail = io::Cursor::new(&mut out);
        tail.set_position(start as u64);
        compressor.compress_to_buffer(&payload[..], &mut tail).map_err(CodecError::Zstd)?;
    }
    Ok(out)
}

/// Decodes the frames `decode` (increasing numbers within the chunk, closed under their
/// references: [`chains`]) of a codec 3 chunk whose zstd frames start at `offsets` into
/// `out` (`n * frame_bytes` bytes; the other frames are left as they are).
#[allow(clippy::too_many_arguments)]
pub(super) fn decode(
    decompressor: &mut zstd::bulk::Decompressor<'static>,
    payload: &mut Vec<u8>,
    refrows: &mut [Vec<u8>; 3],
    runs: &mut Vec<(usize, usize, Predictor)>,
    layout: &FrameLayout,
    compressed: &[u8],
    offsets: &[usize],
    decode: &[usize],
    out: &mut [u8],
) -> Result<(), CodecError> {
    let fb = layout.frame_bytes();
    let gs = geoms(layout);
    let np = gs.len();
    let blocks: usize = gs.iter().map(Geom::blocks).sum();
    let len = payload_len(&gs, fb);
    payload.resize(len, 0);
    for &k in decode {
        let src = &compressed[offsets[k]..offsets[k + 1]];
        // A buffer of exactly the payload's size: zstd refuses a frame that holds more.
        let got =
            decompressor.decompress_to_buffer(src, &mut payload[..]).map_err(CodecError::Zstd)?;
        if got != len {
            return Err(CodecError::SizeMismatch { expected: len, actual: got });
        }
        let (vectors, rest) = payload.split_at(2 * np);
        let (codes, residual) = rest.split_at(blocks);
        let has_reference = k >= REF_DISTANCE;
        super::decode::check_frame(&gs, k, has_reference, vectors, codes)?;
        let (before, rest) = out.split_at_mut(k * fb);
        let frame = &mut rest[..fb];
        frame.copy_from_slice(residual);
        let mut at = 0;
        for (p, g) in gs.iter().enumerate() {
            let plane = &mut frame[g.off..][..g.len()];
            let prev = has_reference.then(|| &before[(k - REF_DISTANCE) * fb + g.off..][..g.len()]);
            let v = (vectors[2 * p] as i8, vectors[2 * p + 1] as i8);
            unpredict_plane(g, &codes[at..at + g.blocks()], v, plane, prev, refrows, runs);
            at += g.blocks();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{ChunkDecoder, ChunkEncoder, Codec, PredictorMode};
    use super::chains;
    use crate::pixel::{FrameLayout, PixelFormat};

    /// A textured scene panning by (3, -2) pixels a frame, with some noise.
    fn panning(layout: &FrameLayout, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for f in 0..n as i64 {
            for (p, plane) in layout.planes().iter().enumerate() {
                for y in 0..plane.height as i64 {
                    for x in 0..plane.width as i64 {
                        let (sx, sy) = (x + 3 * f, y - 2 * f);
                        let v = (sx * 7 + sy * 13 + (sx * sy) % 17 + p as i64 * 50) & 0xff;
                        let noise = (x * 31 + y * 17 + f * 7) % 5;
                        out.push(((v + noise) & 0xff) as u8);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_frame_and_every_chain_round_trips() {
        for layout in [
            FrameLayout::new(64, 48, PixelFormat::Yuv420p).unwrap(),
            FrameLayout::new(41, 19, PixelFormat::Rgb24).unwrap(),
            FrameLayout::new(2, 2, PixelFormat::Yuv420p).unwrap(),
        ] {
            let (fb, n) = (layout.frame_bytes(), 7);
            let frames = panning(&layout, n);
            let chunk = ChunkEncoder::new(1, PredictorMode::Interleaved)
                .unwrap()
                .encode(&layout, &frames)
                .unwrap();
            let mut d = ChunkDecoder::new().unwrap();
            let all: Vec<usize> = (0..n).collect();
            let mut out = vec![0xA5; n * fb];
            let done =
                d.decode_wanted(Codec::Interleaved, &layout, n, &chunk, &mut out, &all).unwrap();
            assert_eq!(done, n);
            assert!(out == frames, "{layout:?}: decoded frames differ");
            // The odd chain alone: the even frames are never touched.
            let mut out = vec![0xA5; n * fb];
            let done =
                d.decode_wanted(Codec::Interleaved, &layout, n, &chunk, &mut out, &[5]).unwrap();
            assert_eq!(done, 3);
            for k in 0..n {
                let got = &out[k * fb..(k + 1) * fb];
                if k % 2 == 1 && k <= 5 {
                    assert_eq!(got, &frames[k * fb..(k + 1) * fb], "{layout:?} frame {k}");
                } else {
                    assert!(got.iter().all(|&b| b == 0xA5), "{layout:?}: frame {k} was decoded");
                }
            }
        }
    }

    #[test]
    fn chains_follow_every_second_frame_back_to_the_chunk_start() {
        assert_eq!(chains(&[6], 8), vec![0, 2, 4, 6]);
        assert_eq!(chains(&[5, 1], 8), vec![1, 3, 5]);
        assert_eq!(chains(&[7, 2], 8), vec![0, 1, 2, 3, 5, 7]);
        assert_eq!(chains(&[0], 1), vec![0]);
        assert_eq!(chains(&[1, 9], 4), vec![1], "frames past the chunk are ignored");
        assert_eq!(chains(&[], 4), Vec::<usize>::new());
    }

    /// A chunk of frames given as payloads, each its own zstd frame.
    fn chunk_of(payloads: &[Vec<u8>]) -> Vec<u8> {
        payloads.iter().flat_map(|p| zstd::bulk::compress(p, 1).unwrap()).collect()
    }

    #[test]
    fn frames_without_a_reference_and_payloads_of_another_size_are_refused() {
        use super::super::CodecError;
        let layout = FrameLayout::new(32, 16, PixelFormat::Yuv420p).unwrap();
        let gs = super::geoms(&layout);
        let len = super::payload_len(&gs, layout.frame_bytes());
        // 3 planes: 6 vector bytes, then 2 + 2 + 2 block codes (16x16 luma, 8x8 chroma).
        assert_eq!(len, 6 + 6 + layout.frame_bytes());
        let ok = vec![0u8; len];
        let decode = |payloads: &[Vec<u8>], wanted: &[usize]| {
            let mut out = vec![0; payloads.len() * layout.frame_bytes()];
            let chunk = chunk_of(payloads);
            ChunkDecoder::new().unwrap().decode_wanted(
                Codec::Interleaved,
                &layout,
                payloads.len(),
                &chunk,
                &mut out,
                wanted,
            )
        };
        assert_eq!(decode(&[ok.clone(), ok.clone(), ok.clone()], &[0, 1, 2]).unwrap(), 3);
        let mut temporal = ok.clone();
        temporal[6 + 1] = 1;
        let mut vector = ok.clone();
        vector[2] = 1;
        // Frame 2 refers to frame 0: a temporal code there is fine.
        assert!(decode(&[ok.clone(), ok.clone(), temporal.clone()], &[2]).is_ok());
        assert!(matches!(
            decode(&[ok.clone(), temporal.clone()], &[1]),
            Err(CodecError::TemporalWithoutReference { frame: 1, plane: 0, block: 1, code: 1 })
        ));
        assert!(matches!(
            decode(&[ok.clone(), vector], &[1]),
            Err(CodecError::VectorWithoutReference { frame: 1, plane: 1 })
        ));
        let mut unknown = ok.clone();
        unknown[6 + 4] = 6;
        assert!(matches!(
            decode(&[unknown], &[0]),
            Err(CodecError::UnknownPredictor { frame: 0, plane: 2, block: 0, code: 6 })
        ));
        for bad in [len - 1, len + 1] {
            assert!(decode(&[vec![0; bad]], &[0]).is_err(), "a payload of {bad} bytes");
        }
        // Only the wanted chain is checked: a bad frame 1 does not stop a read of frame 2.
        assert!(decode(&[ok.clone(), temporal, ok.clone()], &[2]).is_ok());
    }
}
