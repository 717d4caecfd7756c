//! Codec 2, plain zstd frames (`FORMAT.md#33-chunk-data-plain-zstd-frames`): a chunk is one
//! zstd frame per video frame, back to back, each the frame's bytes as they are. It trades
//! about twice the disk of the predictive codec for a read path that is zstd alone, and for
//! random access inside a chunk: no frame depends on another, so a reader decompresses
//! exactly the frames a clip uses (a stride-2 clip reads half of each chunk).

use super::encode::append_zstd_frame;
use super::error::CodecError;
use std::io;

/// The zstd settings of every codec 2 frame, set once on a codec 2 encoder's compressor
/// (`ChunkEncoder::new`). Both make reads cheaper, which is what codec 2 is for:
/// - Literals are stored raw, not Huffman-coded: zstd then copies them out at memcpy speed.
/// - No content checksum: the chunk's CRC-32C, which a reader checks first, already covers
///   every byte, and zstd's checksum would cost the reader a hash of every frame it reads.
///
/// Together, on `just bench-loader`'s `plain-c8` shards: 7 % more bytes, decoded at 1.58x
/// the MB/s (BENCHMARKS.md, "Loader"); and the sharder compresses 1.25x faster.
pub(super) fn configure(
    compressor: &mut zstd::bulk::Compressor<'static>,
) -> Result<(), CodecError> {
    use zstd::zstd_safe::{
        CParameter::ChecksumFlag, CParameter::LiteralCompressionMode, ParamSwitch,
    };
    compressor.set_parameter(ChecksumFlag(false)).map_err(CodecError::Zstd)?;
    compressor.set_parameter(LiteralCompressionMode(ParamSwitch::Disable)).map_err(CodecError::Zstd)
}

/// Appends `frames` (whole frames of `fb` bytes each) to `out` as a chunk: one zstd frame
/// each.
pub(super) fn encode(
    compressor: &mut zstd::bulk::Compressor<'static>,
    frames: &[u8],
    fb: usize,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    for frame in frames.chunks_exact(fb) {
        append_zstd_frame(compressor, frame, out)?;
    }
    Ok(())
}

/// Finds where each of the `n_frames` zstd frames of a chunk starts (and, last, where the
/// chunk ends), checking that they tile `compressed` exactly.
pub(super) fn frame_offsets(
    compressed: &[u8],
    n_frames: usize,
    offsets: &mut Vec<usize>,
) -> Result<(), CodecError> {
    offsets.clear();
    let mut at = 0;
    for _ in 0..n_frames {
        offsets.push(at);
        if at == compressed.len() {
            return Err(CodecError::MissingFrames { expected: n_frames, found: offsets.len() - 1 });
        }
        at += zstd::zstd_safe::find_frame_compressed_size(&compressed[at..]).map_err(|code| {
            CodecError::Zstd(io::Error::other(zstd::zstd_safe::get_error_name(code)))
        })?;
    }
    if at != compressed.len() {
        return Err(CodecError::NotOneFrame { frame: at, total: compressed.len() });
    }
    offsets.push(at);
    Ok(())
}

/// Decompresses frame `k` of a chunk whose frames start at `offsets` into `out` (exactly one
/// frame's bytes), refusing a frame that holds more or fewer.
pub(super) fn decode_frame(
    decompressor: &mut zstd::bulk::Decompressor<'static>,
    compressed: &[u8],
    offsets: &[usize],
    k: usize,
    out: &mut [u8],
) -> Result<(), CodecError> {
    let fb = out.len();
    decompress_frame(decompressor, compressed, offsets, k, out, fb)
}

/// Appends frame `k` of a chunk whose frames start at `offsets` to `out`, decompressing
/// straight into its spare capacity (no zero fill, no copy), and refuses a frame that does
/// not hold exactly `fb` bytes (leaving `out` as it was).
pub(super) fn append_frame(
    decompressor: &mut zstd::bulk::Decompressor<'static>,
    compressed: &[u8],
    offsets: &[usize],
    k: usize,
    fb: usize,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let start = out.len();
    out.reserve(fb);
    let mut tail = io::Cursor::new(&mut *out);
    tail.set_position(start as u64);
    let done = decompress_frame(decompressor, compressed, offsets, k, &mut tail, fb);
    if done.is_err() {
        out.truncate(start);
    }
    done
}

/// Decompresses frame `k` into `out` and refuses a frame that does not hold exactly `fb`
/// bytes (one larger than `out`'s room already fails in zstd).
fn decompress_frame<B: zstd::zstd_safe::WriteBuf + ?Sized>(
    decompressor: &mut zstd::bulk::Decompressor<'static>,
    compressed: &[u8],
    offsets: &[usize],
    k: usize,
    out: &mut B,
    fb: usize,
) -> Result<(), CodecError> {
    let src = &compressed[offsets[k]..offsets[k + 1]];
    let n = decompressor.decompress_to_buffer(src, out).map_err(CodecError::Zstd)?;
    if n != fb {
        return Err(CodecError::SizeMismatch { expected: fb, actual: n });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{ChunkDecoder, ChunkEncoder, Codec, PredictorMode};
    use crate::pixel::{FrameLayout, PixelFormat};

    fn frames(layout: &FrameLayout, n: usize) -> Vec<u8> {
        (0..n * layout.frame_bytes()).map(|i| ((i * 7) ^ (i >> 5)) as u8).collect()
    }

    fn encode(layout: &FrameLayout, frames: &[u8]) -> Vec<u8> {
        ChunkEncoder::new(1, PredictorMode::Plain).unwrap().encode(layout, frames).unwrap()
    }

    #[test]
    fn a_plain_chunk_is_standard_zstd_frames_and_any_subset_decodes_alone() {
        for layout in [
            FrameLayout::new(64, 48, PixelFormat::Yuv420p).unwrap(),
            FrameLayout::new(41, 19, PixelFormat::Rgb24).unwrap(),
            FrameLayout::new(2, 2, PixelFormat::Yuv420p).unwrap(),
        ] {
            let (fb, n) = (layout.frame_bytes(), 5);
            let frames = frames(&layout, n);
            let chunk = encode(&layout, &frames);
            // zstd's own streaming decoder reads concatenated frames: the reference.
            assert_eq!(zstd::stream::decode_all(&chunk[..]).unwrap(), frames);
            let mut d = ChunkDecoder::new().unwrap();
            let mut out = vec![0xA5; n * fb];
            let done =
                d.decode_wanted(Codec::Plain, &layout, n, &chunk, &mut out, &[3, 1]).unwrap();
            assert_eq!(done, 2);
            for k in 0..n {
                let got = &out[k * fb..(k + 1) * fb];
                if k == 1 || k == 3 {
                    assert_eq!(got, &frames[k * fb..(k + 1) * fb]);
                } else {
                    assert!(got.iter().all(|&b| b == 0xA5), "frame {k} was decoded");
                }
            }
            let all: Vec<usize> = (0..n).collect();
            assert_eq!(
                d.decode_wanted(Codec::Plain, &layout, n, &chunk, &mut out, &all).unwrap(),
                n
            );
            assert_eq!(out, frames);
        }
    }

    #[test]
    fn damaged_plain_chunks_are_refused() {
        let layout = FrameLayout::new(16, 8, PixelFormat::Yuv420p).unwrap();
        let (fb, n) = (layout.frame_bytes(), 3);
        let chunk = encode(&layout, &frames(&layout, n));
        let other = FrameLayout::new(16, 10, PixelFormat::Yuv420p).unwrap();
        let bigger = encode(&other, &frames(&other, n));
        let mut d = ChunkDecoder::new().unwrap();
        let mut out = vec![0; n * fb];
        let all = [0, 1, 2];
        let mut try_decode = |data: &[u8], frames: usize, out: &mut Vec<u8>| {
            out.resize(frames * fb, 0);
            d.decode_wanted(Codec::Plain, &layout, frames, data, out, &all[..frames.min(3)])
        };
        assert!(try_decode(&chunk, n, &mut out).is_ok());
        let mut longer = chunk.clone();
        longer.push(0);
        let mut flipped = chunk.clone();
        flipped[chunk.len() / 2] ^= 0x40;
        for (what, data, frames) in [
            ("truncated", &chunk[..chunk.len() - 3], n),
            ("a trailing byte", &longer[..], n),
            ("fewer frames than the table says", &chunk[..], n + 1),
            ("more frames than the table says", &chunk[..], n - 1),
            ("frames of another size", &bigger[..], n),
            ("garbage", &[0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3][..], 1),
        ] {
            assert!(try_decode(data, frames, &mut out).is_err(), "{what} was accepted");
        }
        // A flipped byte among a frame's raw literals is refused by the chunk's CRC-32C,
        // which the reader checks first (FORMAT.md §3.3; set_roundtrip.rs tests it), not
        // here: the frames carry no zstd checksum of their own.
        assert!(try_decode(&flipped, n, &mut out).is_ok());
        assert_ne!(out, frames(&layout, n));
    }
}
