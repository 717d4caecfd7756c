//! What the fuzz targets and the seed writer share: how a target reads its input bytes (a
//! small header in front of a chunk or of raw frames, the three files of a set in one input,
//! a mode byte in front of a shard file) and the checks applied to whatever a reader accepts.
//! The seed writer (`examples/seeds.rs`) builds inputs with the same functions the targets
//! parse them with, so seeds from real shards land exactly where the targets look.

use cvrl_formats::codec::{ChunkDecoder, Codec};
use cvrl_formats::shard::{header_len, RecordHeader, FILE_HEADER_LEN, RECORD_FIXED_LEN};
use cvrl_formats::{FrameLayout, PixelFormat};

/// Largest chunk a target decodes, in decoded bytes. A valid record may claim 8192x8192
/// frames and millions of them per chunk; decoding those would only measure the allocator.
pub const MAX_DECODE_BYTES: usize = 4 << 20;

/// Bytes of the header in front of a `chunk_decode` or `codec_roundtrip` input.
pub const CASE_HEADER_LEN: usize = 8;
/// Largest width and height a chunk case may name (keeps one execution short).
pub const MAX_CASE_DIM: u32 = 256;
/// Most frames a chunk case may name.
pub const MAX_CASE_FRAMES: usize = 16;

/// The header of a chunk input: `[flags, pixel format code, frames, upto, width u16 LE,
/// height u16 LE]`, followed by the body (compressed chunk, payload or frames).
#[derive(Clone, Copy, Debug)]
pub struct ChunkCase {
    /// Target-specific switches (see each target).
    pub flags: u8,
    pub layout: FrameLayout,
    /// Frames in the chunk, `0..=MAX_CASE_FRAMES` (0 tests the decoder's refusal).
    pub n_frames: usize,
    /// Frames to reconstruct (`decode_first`), at most `n_frames`.
    pub upto: usize,
}

impl ChunkCase {
    /// Splits an input into its case and body; `None` for a header naming an invalid or
    /// oversized layout (the fuzzer learns quickly not to go there).
    pub fn parse(data: &[u8]) -> Option<(ChunkCase, &[u8])> {
        let (h, body) = data.split_first_chunk::<CASE_HEADER_LEN>()?;
        let format = PixelFormat::from_code(h[1])?;
        let width = u32::from(u16::from_le_bytes([h[4], h[5]]));
        let height = u32::from(u16::from_le_bytes([h[6], h[7]]));
        if width > MAX_CASE_DIM || height > MAX_CASE_DIM || usize::from(h[2]) > MAX_CASE_FRAMES {
            return None;
        }
        let layout = FrameLayout::new(width, height, format).ok()?;
        let n_frames = usize::from(h[2]);
        let upto = usize::from(h[3]).min(n_frames);
        Some((ChunkCase { flags: h[0], layout, n_frames, upto }, body))
    }

    /// The header bytes that [`ChunkCase::parse`] reads back as `self`.
    pub fn header(&self) -> [u8; CASE_HEADER_LEN] {
        let (w, h) = (self.layout.width() as u16, self.layout.height() as u16);
        let [w0, w1] = w.to_le_bytes();
        let [h0, h1] = h.to_le_bytes();
        [
            self.flags,
            self.layout.format().code(),
            self.n_frames as u8,
            self.upto as u8,
            w0,
            w1,
            h0,
            h1,
        ]
    }

    /// Bytes of the whole chunk once decoded.
    pub fn decoded_len(&self) -> usize {
        self.n_frames * self.layout.frame_bytes()
    }
}

/// Decodes the first `upto` of `n_frames` frames of a `codec` chunk `compressed` twice, into a buffer of
/// zeros and one of 0xFF, and checks the two agree: the same result, and on success the same
/// `upto` frames, so every byte of a decoded frame comes from the input and none is left
/// from the buffer. Returns the decoded chunk (its first `upto` frames are meaningful).
pub fn decode_twice(
    decoder: &mut ChunkDecoder,
    codec: Codec,
    layout: &FrameLayout,
    n_frames: usize,
    compressed: &[u8],
    upto: usize,
) -> Option<Vec<u8>> {
    let len = n_frames * layout.frame_bytes();
    let mut zeros = vec![0u8; len];
    let mut ones = vec![0xFFu8; len];
    let wanted: Vec<usize> = (0..upto.min(n_frames)).collect();
    let a = decoder.decode_wanted(codec, layout, n_frames, compressed, &mut zeros, &wanted);
    let b = decoder.decode_wanted(codec, layout, n_frames, compressed, &mut ones, &wanted);
    assert_eq!(a.is_ok(), b.is_ok(), "the decoder's verdict depends on the output buffer");
    a.ok()?;
    let n = upto.min(n_frames) * layout.frame_bytes();
    assert!(zeros[..n] == ones[..n], "decoded frames depend on the output buffer's old bytes");
    Some(zeros)
}

/// Checks what the format guarantees about a record that `parse_record` accepted at
/// `offset` of a file of `file_len` bytes (FORMAT.md §3), independently of how the parser
/// checked it.
pub fn check_record(file_len: usize, offset: u64, h: &RecordHeader) {
    assert!(offset + h.record_len <= file_len as u64, "record past the end of the file");
    let data_start = header_len(h.video_id.len(), h.chunks.len()) as u64;
    assert!(data_start >= RECORD_FIXED_LEN as u64 && !h.chunks.is_empty());
    let (mut at, mut frame) = (data_start, 0u64);
    for c in &h.chunks {
        assert_eq!((c.offset, u64::from(c.first_frame)), (at, frame), "chunks do not tile");
        assert!(c.num_frames > 0, "empty chunk accepted");
        at += u64::from(c.length);
        frame += u64::from(c.num_frames);
    }
    assert_eq!((at, frame), (h.record_len, u64::from(h.num_frames)), "chunks do not tile");
}

/// Decodes every chunk of an accepted record whose CRC-32C matches (as a reader must check
/// first) and that is small enough, with [`decode_twice`].
pub fn decode_record(decoder: &mut ChunkDecoder, record: &[u8], h: &RecordHeader) {
    for c in &h.chunks {
        let n = c.num_frames as usize;
        if n.saturating_mul(h.layout.frame_bytes()) > MAX_DECODE_BYTES {
            continue;
        }
        let data = &record[c.offset as usize..(c.offset + u64::from(c.length)) as usize];
        if crc32c::crc32c(data) == c.crc32c {
            decode_twice(decoder, h.codec, &h.layout, n, data, n);
        }
    }
}

/// First byte of a `shard_file` input: the rest is a shard file, taken as it is.
pub const SHARD_AS_IS: u8 = 0;
/// First byte of a `shard_file` input: the target rewrites the file header CRC and every
/// record header CRC before parsing, so the fuzzer reaches the checks behind them.
pub const SHARD_FIX_CRCS: u8 = 1;

/// Rewrites the CRC-32C of the file header and of each record header it can find (records
/// followed by their stored `record_len`, as a reader walks them), so mutated fields pass
/// the checksum and meet the checks after it.
pub fn fix_crcs(file: &mut [u8]) {
    if file.len() < FILE_HEADER_LEN {
        return;
    }
    let crc = crc32c::crc32c(&file[..28]);
    file[28..32].copy_from_slice(&crc.to_le_bytes());
    let mut at = FILE_HEADER_LEN;
    for _ in 0..64 {
        let Some(rec) = file.get_mut(at..) else { return };
        if rec.len() < RECORD_FIXED_LEN {
            return;
        }
        let hlen = u32::from_le_bytes(rec[44..48].try_into().expect("4 bytes")) as usize;
        if hlen < RECORD_FIXED_LEN + 8 || hlen > rec.len() {
            return;
        }
        let crc = crc32c::crc32c(&rec[..hlen - 8]);
        rec[hlen - 8..hlen - 4].copy_from_slice(&crc.to_le_bytes());
        let len = u64::from_le_bytes(rec[8..16].try_into().expect("8 bytes"));
        match usize::try_from(len).ok().filter(|&l| l > 0).and_then(|l| at.checked_add(l)) {
            Some(end) => at = end.div_ceil(8) * 8,
            None => return,
        }
    }
}

/// Splits a `set_open` input into `manifest.json`, `index.parquet` and the shard file:
/// `u32 LE length, manifest, u32 LE length, index, shard`. Lengths past the end are cut.
pub fn split_set(data: &[u8]) -> [&[u8]; 3] {
    let take = |d: &[u8]| -> (usize, usize) {
        let n = d.first_chunk::<4>().map_or(0, |b| u32::from_le_bytes(*b) as usize);
        let start = d.len().min(4);
        (start, (start + n).min(d.len()))
    };
    let (s, e) = take(data);
    let (manifest, rest) = (&data[s..e], &data[e..]);
    let (s, e) = take(rest);
    [manifest, &rest[s..e], &rest[e..]]
}

/// The input that [`split_set`] splits into these three files.
pub fn join_set(manifest: &[u8], index: &[u8], shard: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + manifest.len() + index.len() + shard.len());
    for part in [manifest, index] {
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(part);
    }
    out.extend_from_slice(shard);
    out
}

/// A scratch directory for targets that must hand the library a path: under /dev/shm when
/// it exists (no disk writes per execution), else the system temporary directory.
pub fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cvrl-fuzz-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("a temporary directory")
}

/// For targets whose inputs reach the Parquet reader. `cvrl_formats` catches the panics of
/// the parquet and arrow crates on malformed files and returns an error (FUZZING.md,
/// Findings), but libfuzzer-sys's panic hook aborts on every panic, caught or not. This hook
/// aborts on nothing: a panic that escapes the target still aborts the run (libfuzzer-sys
/// catches it at the top and aborts), while one the library catches is an error like any
/// other. Panics in dependencies print nothing (a caught one is expected, and frequent);
/// reproduce a crash from its artifact to see its message.
pub fn let_the_library_catch_panics() {
    std::panic::set_hook(Box::new(|info| {
        let dependency = info.location().is_some_and(|l| l.file().contains("/.cargo/registry/"));
        if !dependency {
            eprintln!("{info}");
        }
    }));
}
