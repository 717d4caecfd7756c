//! Whole chunks through the encoder and the decoder: every mode round-trips, and every rule
//! of `FORMAT.md#32-chunk-data-predictive-zstd` that a payload can break is refused.

use super::context::{om_code, NO, NZ, N_BIT_STREAMS, N_STREAMS};
use super::plane::{geoms, Geom};
use super::{ChunkDecoder, ChunkEncoder, CodecError, Predictor, PredictorMode};
use crate::pixel::{FrameLayout, PixelFormat};
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
    ChunkDecoder::without_avx2()
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
                Err(CodecError::TemporalWithoutReference { frame: 0, plane: 0, block: 1, .. })
            ),
            "{p:?}"
        );
    }
    let mut payload = payload_of(&layout, &frames);
    payload[3] = 1; // dy of frame 0, plane 1
    assert!(matches!(
        decode_payload(&layout, 3, &payload),
        Err(CodecError::VectorWithoutReference { frame: 0, plane: 1 })
    ));
}

#[test]
fn rejects_payloads_of_the_wrong_size() {
    let (layout, frames) = test_clip();
    let payload = payload_of(&layout, &frames);
    let mut longer = payload.clone();
    longer.push(0);
    assert!(matches!(decode_payload(&layout, 3, &longer), Err(CodecError::SizeMismatch { .. })));
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
    let chunk =
        ChunkEncoder::new(3, PredictorMode::Adaptive).unwrap().encode(&layout, &frames).unwrap();
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
    let chunk =
        ChunkEncoder::new(3, PredictorMode::Adaptive).unwrap().encode(&layout, &frames).unwrap();
    let fb = layout.frame_bytes();
    let mut dec = ChunkDecoder::new().unwrap();
    for n in [1, 2, 4, 16] {
        let mut out = vec![0; n * fb];
        assert!(dec.decode(&layout, n, &chunk, &mut out).is_err(), "{n} frames");
    }
    let mut out = vec![0; 3 * fb + 1];
    assert!(matches!(dec.decode(&layout, 3, &chunk, &mut out), Err(CodecError::BadLength { .. })));
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

/// What RFC 8878 says of one zstd frame: its content checksum flag, and the literals
/// section type (0 raw, 1 RLE, 2 Huffman, 3 Huffman with the previous table) of each
/// compressed block. Returns those and the frame's length.
fn zstd_frame_facts(frame: &[u8]) -> (bool, Vec<u8>, usize) {
    assert_eq!(frame[..4], 0xFD2F_B528u32.to_le_bytes(), "zstd magic number");
    let fhd = frame[4];
    let (fcs_flag, single_segment, checksum, dict_flag) =
        (fhd >> 6, fhd & 0x20 != 0, fhd & 0x04 != 0, fhd & 0x03);
    let window = usize::from(!single_segment);
    let dict = [0, 1, 2, 4][usize::from(dict_flag)];
    let fcs = [usize::from(single_segment), 2, 4, 8][usize::from(fcs_flag)];
    let mut at = 5 + window + dict + fcs;
    let mut literals = Vec::new();
    loop {
        let h = u32::from_le_bytes([frame[at], frame[at + 1], frame[at + 2], 0]);
        let (last, kind, size) = (h & 1 == 1, (h >> 1) & 3, (h >> 3) as usize);
        at += 3;
        match kind {
            0 => at += size,
            1 => at += 1,
            2 => {
                literals.push(frame[at] & 3);
                at += size;
            }
            _ => panic!("reserved block type"),
        }
        if last {
            break;
        }
    }
    (checksum, literals, at + if checksum { 4 } else { 0 })
}

#[test]
fn plain_frames_store_literals_raw_and_no_checksum() {
    // Several 128 KiB blocks a frame, each with part of a black bar (a letterboxed film):
    // zstd codes the bar as matches, so every block is a compressed one with literals. The
    // rest holds 16 grey levels, which Huffman codes would halve.
    let layout = FrameLayout::new(512, 384, PixelFormat::Yuv420p).unwrap();
    let fb = layout.frame_bytes();
    let mut frames = clip(&layout, 3, 2, 1, 4);
    for (i, b) in frames.iter_mut().enumerate() {
        *b = if (i % fb) % (64 << 10) < (16 << 10) { 16 } else { 100 + *b % 16 };
    }
    let chunk =
        ChunkEncoder::new(1, PredictorMode::Plain).unwrap().encode(&layout, &frames).unwrap();
    let mut at = 0;
    let mut blocks = 0;
    for _ in 0..3 {
        let (checksum, literals, len) = zstd_frame_facts(&chunk[at..]);
        assert!(!checksum, "codec 2 frames carry no content checksum");
        assert!(literals.iter().all(|&t| t <= 1), "Huffman-coded literals: {literals:?}");
        blocks += literals.len();
        at += len;
    }
    assert_eq!(at, chunk.len(), "three frames tile the chunk");
    assert!(blocks >= 6, "{blocks} compressed blocks");
    assert!(chunk.len() < frames.len() * 9 / 10, "zstd found matches: {} bytes", chunk.len());
    let mut out = vec![0; frames.len()];
    let n = ChunkDecoder::new()
        .unwrap()
        .decode_wanted(super::Codec::Plain, &layout, 3, &chunk, &mut out, &[0, 1, 2])
        .unwrap();
    assert_eq!(n, 3);
    assert!(out == frames);
    // The other codecs' encoders keep zstd's defaults: Huffman-coded literals.
    let chunk = ChunkEncoder::new(1, PredictorMode::Raw).unwrap().encode(&layout, &frames).unwrap();
    let (checksum, literals, len) = zstd_frame_facts(&chunk);
    assert!(checksum && len == chunk.len());
    assert!(literals.contains(&2), "{literals:?}");
}
