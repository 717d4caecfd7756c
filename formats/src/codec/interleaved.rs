//! Codec 3, interleaved predicted frames
//! (`FORMAT.md#34-chunk-data-interleaved-predicted-frames`): the predictors of codec 1, but
//! frame `k` of a chunk refers to frame `k - 2`, so the even and the odd frames form two
//! chains; each frame is a header (vectors and block codes) and its residual streams
//! (`sparse.rs`), each its own zstd frame.
//!
//! Why: a training clip takes every second frame (stride 2). Codec 1 reconstructs every
//! frame up to a clip's last one in each chunk, about twice the frames the clip uses, and
//! its residual streams decode at 130-220 MB/s; here a stride-2 clip decompresses and
//! reconstructs only its own chain, and the residual pass reads a flag group per 8
//! residuals instead of bits per residual (BENCHMARKS.md, "Loader").

use super::bits::Fault;
use super::decode::{check_frame, fault_error};
use super::encode::append_zstd_frame;
use super::error::CodecError;
use super::mode::{Predictor, PredictorMode};
use super::plane::{geoms, Geom};
use super::predict::{predict_plane, PredictScratch};
use super::sparse::{self, Streams, N_STREAMS};
use super::unpredict::unpredict_plane;
use crate::pixel::FrameLayout;

/// How far back a frame's reference is: frame `k` refers to frame `k - REF_DISTANCE`.
pub(super) const REF_DISTANCE: usize = 2;
/// zstd frames per video frame: the header, then each residual stream.
pub(super) const PARTS: usize = 1 + N_STREAMS;

/// Bytes of one frame's header: its vectors and its block codes.
fn header_len(gs: &[Geom]) -> usize {
    2 * gs.len() + gs.iter().map(Geom::blocks).sum::<usize>()
}

/// The most a frame's streams can hold together: a byte per residual (non-zero or literal),
/// a flag bit per residual, and a partial last byte per flag stream.
fn streams_limit(frame_bytes: usize) -> usize {
    frame_bytes + frame_bytes / 8 + N_STREAMS
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

/// The encoder's buffers.
pub(super) struct Scratch {
    header: Vec<u8>,
    residual: Vec<u8>,
    streams: Streams,
}

impl Scratch {
    pub(super) fn new() -> Self {
        Scratch { header: Vec::new(), residual: Vec::new(), streams: Streams::new() }
    }
}

/// Appends `frames` (`n` frames of `layout`, back to back) to `out` as a codec 3 chunk, with
/// a `compressor` set up by [`configure`].
pub(super) fn encode(
    compressor: &mut zstd::bulk::Compressor<'static>,
    candidates: &[Predictor],
    predict: &mut PredictScratch,
    sc: &mut Scratch,
    layout: &FrameLayout,
    frames: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let fb = layout.frame_bytes();
    let gs = geoms(layout);
    let np = gs.len();
    for (k, frame) in frames.chunks_exact(fb).enumerate() {
        sc.header.clear();
        sc.header.resize(header_len(&gs), 0);
        sc.residual.resize(fb, 0);
        let (vectors, mut codes) = sc.header.split_at_mut(2 * np);
        for (p, g) in gs.iter().enumerate() {
            let cur = &frame[g.off..][..g.len()];
            let prev = k.checked_sub(REF_DISTANCE).map(|r| &frames[r * fb + g.off..][..g.len()]);
            let (plane_codes, more) = codes.split_at_mut(g.blocks());
            codes = more;
            let v = predict_plane(
                PredictorMode::Interleaved,
                candidates,
                predict,
                g,
                cur,
                prev,
                plane_codes,
                &mut sc.residual[g.off..][..g.len()],
            );
            vectors[2 * p] = v.0 as u8;
            vectors[2 * p + 1] = v.1 as u8;
        }
        sc.streams.clear();
        for g in &gs {
            sc.streams.encode_plane(g, &sc.residual[g.off..][..g.len()]);
        }
        sc.streams.finish();
        append_zstd_frame(compressor, &sc.header, out)?;
        for s in 0..N_STREAMS {
            append_zstd_frame(compressor, sc.streams.get(s), out)?;
        }
    }
    Ok(())
}

/// The zstd settings of every codec 3 zstd frame, set once on a codec 3 encoder's
/// compressor (`ChunkEncoder::new`). No content checksum: the chunk's CRC-32C already
/// covers every byte, and zstd's checksums would cost the reader a hash of every stream.
/// zstd's longest minimum match (7): the streams are context-split symbols with few long
/// repeats, and shorter matches cost more than the literals they replace (1.9 % fewer
/// bytes on bikes than level 1's 5, BENCHMARKS.md "Sharder").
pub(super) fn configure(
    compressor: &mut zstd::bulk::Compressor<'static>,
) -> Result<(), CodecError> {
    use zstd::zstd_safe::CParameter::{ChecksumFlag, MinMatch};
    compressor.set_parameter(ChecksumFlag(false)).map_err(CodecError::Zstd)?;
    compressor.set_parameter(MinMatch(7)).map_err(CodecError::Zstd)
}

/// The decoder's buffers.
#[derive(Default)]
pub(super) struct DecodeScratch {
    header: Vec<u8>,
    /// Every stream of a frame back to back, and 8 bytes of slack for the readers.
    streams: Vec<u8>,
    readers: sparse::Readers,
    rows: sparse::Rows,
}

/// Decodes the frames `decode` (increasing numbers within the chunk, closed under their
/// references: [`chains`]) of a codec 3 chunk whose zstd frames start at `offsets` into
/// `out` (`n * frame_bytes` bytes; the other frames are left as they are).
#[allow(clippy::too_many_arguments)]
pub(super) fn decode(
    decompressor: &mut zstd::bulk::Decompressor<'static>,
    sc: &mut DecodeScratch,
    refrows: &mut [Vec<u8>; 3],
    runs: &mut Vec<(usize, usize, Predictor)>,
    layout: &FrameLayout,
    compressed: &[u8],
    offsets: &[usize],
    decode: &[usize],
    out: &mut [u8],
    avx2: bool,
) -> Result<(), CodecError> {
    let fb = layout.frame_bytes();
    let gs = geoms(layout);
    let np = gs.len();
    let limit = streams_limit(fb);
    sc.header.resize(header_len(&gs), 0);
    sc.streams.resize(limit + 8, 0);
    let part = |k: usize, i: usize| &compressed[offsets[k * PARTS + i]..offsets[k * PARTS + i + 1]];
    for &k in decode {
        // The header into a buffer of exactly its size: zstd refuses a frame that holds more.
        let got = decompressor
            .decompress_to_buffer(part(k, 0), &mut sc.header[..])
            .map_err(CodecError::Zstd)?;
        if got != sc.header.len() {
            return Err(CodecError::SizeMismatch { expected: sc.header.len(), actual: got });
        }
        let mut pos = 0;
        for s in 0..N_STREAMS {
            let n = decompressor
                .decompress_to_buffer(part(k, 1 + s), &mut sc.streams[pos..limit])
                .map_err(CodecError::Zstd)?;
            sc.readers.init(s, pos, pos + n);
            pos += n;
        }
        let (vectors, codes) = sc.header.split_at(2 * np);
        let has_reference = k >= REF_DISTANCE;
        check_frame(&gs, k, has_reference, vectors, codes)?;
        let (before, rest) = out.split_at_mut(k * fb);
        let frame = &mut rest[..fb];
        let mut at = 0;
        let mut fault = Fault::default();
        for (p, g) in gs.iter().enumerate() {
            let plane = &mut frame[g.off..][..g.len()];
            sparse::decode_plane(
                g,
                &sc.streams,
                &mut sc.readers,
                &mut sc.rows,
                plane,
                &mut fault,
                avx2,
            );
            if fault.any() {
                return Err(fault_error(&fault, k, p));
            }
            let prev = has_reference.then(|| &before[(k - REF_DISTANCE) * fb + g.off..][..g.len()]);
            let v = (vectors[2 * p] as i8, vectors[2 * p + 1] as i8);
            unpredict_plane(g, &codes[at..at + g.blocks()], v, plane, prev, refrows, runs);
            at += g.blocks();
        }
        if let Some(stream) = sc.readers.unfinished() {
            return Err(CodecError::StreamTrailing { stream });
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

    #[test]
    fn noise_flat_and_panning_frames_round_trip_on_both_builds() {
        for layout in [
            FrameLayout::new(48, 32, PixelFormat::Yuv420p).unwrap(),
            FrameLayout::new(23, 9, PixelFormat::Rgb24).unwrap(),
        ] {
            let fb = layout.frame_bytes();
            let mut state = 0x9E37_79B9_7F4A_7C15u64;
            let noise: Vec<u8> = (0..5 * fb)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            let gradient: Vec<u8> = (0..4 * fb).map(|i| (i % 251) as u8).collect();
            for frames in [noise, gradient, panning(&layout, 6), vec![0; 3 * fb], vec![255; 2 * fb]]
            {
                let n = frames.len() / fb;
                let chunk = ChunkEncoder::new(3, PredictorMode::Interleaved)
                    .unwrap()
                    .encode(&layout, &frames)
                    .unwrap();
                let all: Vec<usize> = (0..n).collect();
                for mut d in [ChunkDecoder::new().unwrap(), ChunkDecoder::without_avx2()] {
                    let mut out = vec![0xA5; n * fb];
                    d.decode_wanted(Codec::Interleaved, &layout, n, &chunk, &mut out, &all)
                        .unwrap();
                    assert!(out == frames, "{layout:?}: {n} frames differ");
                }
            }
        }
    }

    /// The decompressed zstd frames of a chunk, in order.
    fn parts(chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < chunk.len() {
            let n = zstd::zstd_safe::find_frame_compressed_size(&chunk[at..]).unwrap();
            out.push(zstd::stream::decode_all(&chunk[at..at + n]).unwrap());
            at += n;
        }
        out
    }

    /// A chunk of the given zstd frames' contents.
    fn chunk_of(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.iter().flat_map(|p| zstd::bulk::compress(p, 1).unwrap()).collect()
    }

    #[test]
    fn damaged_frames_are_refused_and_only_the_wanted_chains_are_checked() {
        use super::super::CodecError;
        use super::{N_STREAMS, PARTS};
        let layout = FrameLayout::new(32, 16, PixelFormat::Yuv420p).unwrap();
        let fb = layout.frame_bytes();
        // Flat frames with one bright pixel: a few small non-zero residuals in quiet groups.
        let mut frames = vec![100u8; 3 * fb];
        for k in 0..3 {
            frames[k * fb + 5 * 32 + 9] = 104;
        }
        let chunk = ChunkEncoder::new(1, PredictorMode::Interleaved)
            .unwrap()
            .encode(&layout, &frames)
            .unwrap();
        let good = parts(&chunk);
        assert_eq!(good.len(), 3 * PARTS);
        // The header: 6 vector bytes, then 2 + 2 + 2 block codes (16x16 luma, 8x8 chroma).
        assert_eq!(good[0].len(), 12);
        let decode = |parts: &[Vec<u8>], n: usize, wanted: &[usize]| {
            let mut out = vec![0; n * fb];
            let chunk = chunk_of(parts);
            let r = ChunkDecoder::new().unwrap().decode_wanted(
                Codec::Interleaved,
                &layout,
                n,
                &chunk,
                &mut out,
                wanted,
            );
            r.map(|_| out)
        };
        assert_eq!(decode(&good, 3, &[0, 1, 2]).unwrap(), frames);
        let with = |part: usize, f: &dyn Fn(&mut Vec<u8>)| {
            let mut p = good.clone();
            f(&mut p[part]);
            p
        };
        let (f1, f2) = (PARTS, 2 * PARTS);
        let temporal = with(f1, &|h| h[6 + 1] = 1);
        assert!(matches!(
            decode(&temporal, 3, &[1]),
            Err(CodecError::TemporalWithoutReference { frame: 1, plane: 0, block: 1, code: 1 })
        ));
        // Frame 2 refers to frame 0, and a damaged frame 1 is not on its chain.
        assert_eq!(decode(&temporal, 3, &[2]).unwrap()[2 * fb..], frames[2 * fb..]);
        assert!(decode(&with(f2, &|h| h[6 + 1] = 1), 3, &[2]).is_ok());
        assert!(matches!(
            decode(&with(f1, &|h| h[2] = 1), 3, &[1]),
            Err(CodecError::VectorWithoutReference { frame: 1, plane: 1 })
        ));
        assert!(matches!(
            decode(&with(0, &|h| h[6 + 4] = 6), 3, &[0]),
            Err(CodecError::UnknownPredictor { frame: 0, plane: 2, block: 0, code: 6 })
        ));
        assert!(decode(&with(0, &|h| h.push(0)), 3, &[0]).is_err(), "a long header");
        assert!(
            decode(
                &with(0, &|h| {
                    h.pop();
                }),
                3,
                &[0]
            )
            .is_err(),
            "a short header"
        );
        let l = N_STREAMS; // the literal stream of frame 0
        assert!(matches!(
            decode(&with(l, &|s| s.push(7)), 3, &[0]),
            Err(CodecError::StreamTrailing { stream: 12 })
        ));
        // Z0 holds the flags of the quiet groups of every plane, V's last.
        let z0 = 1;
        assert!(matches!(
            decode(&with(z0, &|s| s.truncate(s.len() - 1)), 3, &[0]),
            Err(CodecError::StreamOverrun { stream: 0, frame: 0, plane: 2 })
        ));
        let n0 = 1 + super::sparse::N_FLAG;
        assert!(!good[n0].is_empty(), "the bright pixel's residuals are in N0");
        assert!(matches!(
            decode(&with(n0, &|s| s[0] = 0), 3, &[0]),
            Err(CodecError::BadMagnitude { magnitude: 0, frame: 0, .. })
        ));
        assert!(decode(&good[..3 * PARTS - 1], 3, &[0]).is_err(), "a missing zstd frame");
        assert!(decode(&good, 2, &[0]).is_err(), "zstd frames left over");
    }
}
