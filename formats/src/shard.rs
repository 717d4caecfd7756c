//! Shard files (`FORMAT.md#2-shard-file`) and their video records
//! (`FORMAT.md#3-video-record`): writing them, and parsing and validating their headers.
//!
//! A record is built whole in memory ([`RecordBuilder`]: frames are compressed chunk by
//! chunk by [`crate::codec`]) because its header, which holds the chunk table, comes before
//! the chunks. Writers append to `<name>.tmp` and rename on [`ShardWriter::finish`], so a
//! file with the final name is always complete.

use crate::atomic::sync_parent;
use crate::atomic::tmp_path;
use crate::codec::{ChunkEncoder, Codec};
use crate::error::{FormatError, IoContext, Result};
use crate::pixel::{FrameLayout, PixelFormat};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Magic bytes at the start of every shard file.
pub const SHARD_MAGIC: &[u8; 8] = b"CVRLSHRD";
/// Magic bytes at the start of every video record.
pub const RECORD_MAGIC: &[u8; 8] = b"CVRLVID1";
/// The shard format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the shard file header.
pub const FILE_HEADER_LEN: usize = 32;
/// Size of the fixed part of a record header (before the video id).
pub const RECORD_FIXED_LEN: usize = 48;
/// Size of one chunk table entry.
pub const CHUNK_ENTRY_LEN: usize = 24;
/// Offset of the codec byte in a record header ([`Codec`]).
pub const CODEC_BYTE: usize = 41;
/// Longest video id accepted, in bytes.
pub const MAX_ID_LEN: usize = 4096;

/// Where one chunk lies in its record and which frames it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChunkEntry {
    /// Byte offset from the start of the record.
    pub offset: u64,
    /// Compressed length in bytes.
    pub length: u32,
    /// Index of the chunk's first frame in the video.
    pub first_frame: u32,
    /// Number of frames in the chunk (at least 1).
    pub num_frames: u32,
    /// CRC-32C of the compressed bytes.
    pub crc32c: u32,
}

/// The decoded header of one video record.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordHeader {
    pub video_id: String,
    pub layout: FrameLayout,
    pub num_frames: u32,
    pub fps_num: u32,
    pub fps_den: u32,
    /// Total bytes of the record, header and chunks.
    pub record_len: u64,
    pub chunks: Vec<ChunkEntry>,
    /// How the chunks are coded.
    pub codec: Codec,
}

/// Metadata of a video about to be encoded.
#[derive(Clone, Debug)]
pub struct VideoSpec {
    pub video_id: String,
    pub layout: FrameLayout,
    pub fps_num: u32,
    pub fps_den: u32,
}

/// A video record encoded in memory, ready to append to a shard: its header's bytes, then
/// its chunks' bytes, which follow the header in the file.
#[derive(Debug)]
pub struct EncodedRecord {
    pub header: RecordHeader,
    /// The record header as stored (`FORMAT.md#3-video-record`).
    pub head: Vec<u8>,
    /// The chunks, back to back, as stored after the header.
    pub data: Vec<u8>,
    /// CRC-32C of the whole record: `head`, then `data`.
    pub checksum: u32,
}

impl EncodedRecord {
    /// The record's bytes in the shard file.
    pub fn stored_len(&self) -> usize {
        self.head.len() + self.data.len()
    }

    /// Gives back the chunks' buffer, for [`RecordBuilder::with_buffer`] to fill again.
    pub fn into_buffer(self) -> Vec<u8> {
        self.data
    }
}

/// Builds one record frame by frame: frames are buffered per chunk and compressed as each
/// chunk fills, so memory is one chunk of raw frames plus the compressed video.
pub struct RecordBuilder<'e> {
    spec: VideoSpec,
    encoder: &'e mut ChunkEncoder,
    chunk_frames: u32,
    pending: Vec<u8>,
    pending_frames: u32,
    num_frames: u32,
    /// First frame, frames and compressed length of each chunk so far.
    chunks: Vec<(u32, u32, usize)>,
    /// The compressed chunks, back to back: the record's `data`.
    data: Vec<u8>,
}

impl<'e> RecordBuilder<'e> {
    /// Starts a record. `chunk_frames` is the number of frames per chunk (the last may be shorter).
    pub fn new(spec: VideoSpec, chunk_frames: u32, encoder: &'e mut ChunkEncoder) -> Result<Self> {
        Self::with_buffer(spec, chunk_frames, encoder, Vec::new())
    }

    /// [`new`](Self::new), compressing into `buffer` (emptied first): the buffer of a record
    /// already written ([`EncodedRecord::into_buffer`]). A sharder that reuses its buffers
    /// does not page-fault every video's compressed bytes in again.
    pub fn with_buffer(
        spec: VideoSpec,
        chunk_frames: u32,
        encoder: &'e mut ChunkEncoder,
        mut buffer: Vec<u8>,
    ) -> Result<Self> {
        if spec.video_id.is_empty() || spec.video_id.len() > MAX_ID_LEN {
            return Err(invalid(&spec.video_id, "video id must be 1..=4096 bytes"));
        }
        if chunk_frames == 0 || spec.fps_num == 0 || spec.fps_den == 0 {
            return Err(invalid(&spec.video_id, "chunk size and fps must be positive"));
        }
        let cap = spec.layout.frame_bytes() * chunk_frames as usize;
        buffer.clear();
        Ok(RecordBuilder {
            spec,
            encoder,
            chunk_frames,
            pending: Vec::with_capacity(cap),
            pending_frames: 0,
            num_frames: 0,
            chunks: Vec::new(),
            data: buffer,
        })
    }

    /// Appends one frame (`layout.frame_bytes()` bytes, planes packed).
    pub fn push_frame(&mut self, frame: &[u8]) -> Result<()> {
        let expected = self.spec.layout.frame_bytes();
        if frame.len() != expected {
            let reason = format!("frame of {} bytes, expected {expected}", frame.len());
            return Err(invalid(&self.spec.video_id, &reason));
        }
        self.pending.extend_from_slice(frame);
        self.pending_frames += 1;
        self.num_frames += 1;
        if self.pending_frames == self.chunk_frames {
            self.flush_chunk()?;
        }
        Ok(())
    }

    /// Sets the frame rate (known to a decoder only once it has looked at the stream).
    pub fn set_fps(&mut self, fps_num: u32, fps_den: u32) {
        self.spec.fps_num = fps_num;
        self.spec.fps_den = fps_den;
    }

    /// Frames pushed so far.
    pub fn num_frames(&self) -> u32 {
        self.num_frames
    }

    fn flush_chunk(&mut self) -> Result<()> {
        if self.pending_frames == 0 {
            return Ok(());
        }
        let start = self.data.len();
        self.encoder
            .encode_into(&self.spec.layout, &self.pending, &mut self.data)
            .map_err(|e| invalid(&self.spec.video_id, &format!("chunk compression failed: {e}")))?;
        let first = self.num_frames - self.pending_frames;
        self.chunks.push((first, self.pending_frames, self.data.len() - start));
        self.pending.clear();
        self.pending_frames = 0;
        Ok(())
    }

    /// Compresses the last partial chunk and lays out the record. A video needs at least one frame.
    pub fn finish(mut self) -> Result<EncodedRecord> {
        self.flush_chunk()?;
        if self.num_frames == 0 {
            return Err(invalid(&self.spec.video_id, "video has no frames"));
        }
        if self.spec.fps_num == 0 || self.spec.fps_den == 0 {
            return Err(invalid(&self.spec.video_id, "frame rate must be positive"));
        }
        let id = self.spec.video_id.as_bytes();
        let header_len = header_len(id.len(), self.chunks.len());
        let record_len = header_len + self.data.len();
        let mut entries = Vec::with_capacity(self.chunks.len());
        let mut at = 0;
        for &(first_frame, num_frames, len) in &self.chunks {
            let length = u32::try_from(len)
                .map_err(|_| invalid(&self.spec.video_id, "chunk larger than 4 GiB"))?;
            entries.push(ChunkEntry {
                offset: (header_len + at) as u64,
                length,
                first_frame,
                num_frames,
                crc32c: crc32c::crc32c(&self.data[at..at + len]),
            });
            at += len;
        }
        let header = RecordHeader {
            video_id: self.spec.video_id.clone(),
            layout: self.spec.layout,
            num_frames: self.num_frames,
            fps_num: self.spec.fps_num,
            fps_den: self.spec.fps_den,
            record_len: record_len as u64,
            chunks: entries,
            codec: self.encoder.mode().codec(),
        };
        let mut head = Vec::with_capacity(header_len);
        write_header(&header, &mut head);
        debug_assert_eq!(head.len(), header_len);
        // The chunks' CRCs extend the header's to the whole record's, without another pass
        // over the chunks.
        let checksum = header.chunks.iter().fold(crc32c::crc32c(&head), |crc, c| {
            crc32c::crc32c_combine(crc, c.crc32c, c.length as usize)
        });
        Ok(EncodedRecord { header, head, data: self.data, checksum })
    }
}

fn invalid(video: &str, reason: &str) -> FormatError {
    FormatError::Invalid { what: format!("video {video:?}"), reason: reason.to_string() }
}

fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Bytes of a record header with an id of `id_len` bytes and `num_chunks` chunks.
pub fn header_len(id_len: usize, num_chunks: usize) -> usize {
    RECORD_FIXED_LEN + pad8(id_len) + CHUNK_ENTRY_LEN * num_chunks + 8
}

fn write_header(h: &RecordHeader, out: &mut Vec<u8>) {
    let id = h.video_id.as_bytes();
    let hlen = header_len(id.len(), h.chunks.len());
    out.extend_from_slice(RECORD_MAGIC);
    out.extend_from_slice(&h.record_len.to_le_bytes());
    for v in [h.layout.width(), h.layout.height(), h.num_frames, h.chunks.len() as u32] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&h.fps_num.to_le_bytes());
    out.extend_from_slice(&h.fps_den.to_le_bytes());
    out.push(h.layout.format().code());
    out.push(h.codec.code());
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(&(hlen as u32).to_le_bytes());
    out.extend_from_slice(id);
    out.resize(RECORD_FIXED_LEN + pad8(id.len()), 0);
    for c in &h.chunks {
        out.extend_from_slice(&c.offset.to_le_bytes());
        for v in [c.length, c.first_frame, c.num_frames, c.crc32c] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses the record starting at `offset` of `file` (`path` names it in errors) and checks
/// everything `FORMAT.md#3-video-record` says a reader must reject, without reading the
/// chunks.
pub fn parse_record(path: &Path, file: &[u8], offset: u64) -> Result<RecordHeader> {
    let bad = |reason: String| FormatError::BadRecord {
        path: path.to_path_buf(),
        video: String::new(),
        offset,
        reason,
    };
    let start = usize::try_from(offset).map_err(|_| bad("offset past the file".into()))?;
    let avail = file.len().saturating_sub(start);
    if avail < RECORD_FIXED_LEN {
        return Err(bad(format!(
            "truncated: {avail} bytes left, a record header needs {RECORD_FIXED_LEN}"
        )));
    }
    let b = &file[start..];
    if &b[..8] != RECORD_MAGIC {
        return Err(bad(format!("bad record magic {:?}", &b[..8])));
    }
    let record_len = u64_at(b, 8);
    let (width, height, num_frames, num_chunks) =
        (u32_at(b, 16), u32_at(b, 20), u32_at(b, 24), u32_at(b, 28));
    let (fps_num, fps_den) = (u32_at(b, 32), u32_at(b, 36));
    let (fmt_code, codec) = (b[40], b[41]);
    let id_len = u16::from_le_bytes([b[42], b[43]]) as usize;
    let stored_hlen = u32_at(b, 44) as usize;
    let hlen = (num_chunks as usize)
        .checked_mul(CHUNK_ENTRY_LEN)
        .and_then(|t| t.checked_add(RECORD_FIXED_LEN + pad8(id_len) + 8))
        .ok_or_else(|| bad("chunk count overflows".into()))?;
    if hlen != stored_hlen {
        return Err(bad(format!(
            "header length {stored_hlen} does not match its contents ({hlen})"
        )));
    }
    if hlen > b.len() {
        return Err(bad(format!("truncated: header needs {hlen} bytes, {} left", b.len())));
    }
    let crc = crc32c::crc32c(&b[..hlen - 8]);
    if crc != u32_at(b, hlen - 8) {
        return Err(bad("record header checksum mismatch".into()));
    }
    let video_id = std::str::from_utf8(&b[RECORD_FIXED_LEN..RECORD_FIXED_LEN + id_len])
        .map_err(|_| bad("video id is not UTF-8".into()))?
        .to_string();
    let bad = |reason: String| FormatError::BadRecord {
        path: path.to_path_buf(),
        video: video_id.clone(),
        offset,
        reason,
    };
    if b[RECORD_FIXED_LEN + id_len..RECORD_FIXED_LEN + pad8(id_len)].iter().any(|&x| x != 0) {
        return Err(bad("video id padding is not zero".into()));
    }
    if b[hlen - 4..hlen].iter().any(|&x| x != 0) {
        return Err(bad("the 4 bytes after the header checksum are not zero".into()));
    }
    let format = PixelFormat::from_code(fmt_code)
        .ok_or_else(|| bad(format!("unknown pixel format code {fmt_code}")))?;
    let codec = Codec::from_code(codec).ok_or_else(|| bad(format!("unknown codec {codec}")))?;
    let layout = FrameLayout::new(width, height, format).map_err(&bad)?;
    if fps_num == 0 || fps_den == 0 {
        return Err(bad(format!("invalid frame rate {fps_num}/{fps_den}")));
    }
    if record_len > b.len() as u64 {
        return Err(bad(format!(
            "truncated: record needs {record_len} bytes, {} left in the file",
            b.len()
        )));
    }
    let table = &b[RECORD_FIXED_LEN + pad8(id_len)..hlen - 8];
    let chunks: Vec<ChunkEntry> = table
        .chunks_exact(CHUNK_ENTRY_LEN)
        .map(|e| ChunkEntry {
            offset: u64_at(e, 0),
            length: u32_at(e, 8),
            first_frame: u32_at(e, 12),
            num_frames: u32_at(e, 16),
            crc32c: u32_at(e, 20),
        })
        .collect();
    check_chunk_table(&chunks, hlen as u64, record_len, num_frames).map_err(bad)?;
    Ok(RecordHeader { video_id, layout, num_frames, fps_num, fps_den, record_len, chunks, codec })
}

/// Checks that `chunks` tile `[data_start, record_len)` and frames `0..num_frames` exactly
/// (`FORMAT.md#3-video-record`).
pub fn check_chunk_table(
    chunks: &[ChunkEntry],
    data_start: u64,
    record_len: u64,
    num_frames: u32,
) -> Result<(), String> {
    if num_frames == 0 || chunks.is_empty() {
        return Err("a record needs at least one frame and one chunk".into());
    }
    let (mut offset, mut frame) = (data_start, 0u64);
    for (i, c) in chunks.iter().enumerate() {
        if c.offset != offset {
            return Err(format!(
                "chunk {i} at byte {} but the previous one ends at {offset}",
                c.offset
            ));
        }
        if u64::from(c.first_frame) != frame || c.num_frames == 0 {
            return Err(format!(
                "chunk {i} holds frames {}+{}, expected to start at {frame}",
                c.first_frame, c.num_frames
            ));
        }
        offset += u64::from(c.length);
        frame += u64::from(c.num_frames);
    }
    if offset != record_len || frame != u64::from(num_frames) {
        return Err(format!(
            "chunks end at byte {offset} / frame {frame}, record says {record_len} / {num_frames}"
        ));
    }
    Ok(())
}

/// Parses and validates a shard file header (`FORMAT.md#2-shard-file`).
pub fn parse_file_header(path: &Path, file: &[u8]) -> Result<()> {
    if file.len() < FILE_HEADER_LEN {
        let reason =
            format!("file is {} bytes, shorter than the {FILE_HEADER_LEN}-byte header", file.len());
        return Err(FormatError::BadShardHeader { path: path.to_path_buf(), reason });
    }
    if &file[..8] != SHARD_MAGIC {
        return Err(FormatError::BadShardMagic {
            path: path.to_path_buf(),
            found: file[..8].to_vec(),
        });
    }
    let version = u32_at(file, 8);
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if u32_at(file, 12) as usize != FILE_HEADER_LEN
        || crc32c::crc32c(&file[..28]) != u32_at(file, 28)
    {
        let reason = "header length or checksum mismatch".to_string();
        return Err(FormatError::BadShardHeader { path: path.to_path_buf(), reason });
    }
    if file[16..28].iter().any(|&b| b != 0) {
        let reason = "reserved bytes 16..28 are not zero".to_string();
        return Err(FormatError::BadShardHeader { path: path.to_path_buf(), reason });
    }
    Ok(())
}

fn file_header() -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..8].copy_from_slice(SHARD_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(FILE_HEADER_LEN as u32).to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Iterates the records of a whole shard file (used by `cvrl-inspect`; the trainer goes
/// through the index instead). Besides each record's own checks, the walk refuses what
/// `FORMAT.md#2-shard-file` says a reader walking a file must: non-zero bytes between
/// records and bytes after the last one. Stops at the first error.
pub fn records<'a>(
    path: &'a Path,
    file: &'a [u8],
) -> Result<impl Iterator<Item = Result<(u64, RecordHeader)>> + 'a> {
    parse_file_header(path, file)?;
    let mut offset = FILE_HEADER_LEN as u64;
    let mut pending: Option<FormatError> = None;
    let mut failed = false;
    Ok(std::iter::from_fn(move || {
        if let Some(e) = pending.take() {
            failed = true;
            return Some(Err(e));
        }
        if failed || offset >= file.len() as u64 {
            return None;
        }
        match parse_record(path, file, offset) {
            Ok(h) => {
                let at = offset;
                // In range: `parse_record` checked that the record lies inside the file.
                let end = (offset + h.record_len) as usize;
                offset = pad8(end) as u64;
                pending = check_after_record(path, file, end).err();
                Some(Ok((at, h)))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    }))
}

/// What follows a record ending at `end`: the end of the file, or zero bytes up to the next
/// multiple of 8 where the next record starts. Fewer bytes than a record header after that
/// are no record: they are bytes after the last one.
fn check_after_record(path: &Path, file: &[u8], end: usize) -> Result<()> {
    let next = pad8(end);
    let bad = |offset: usize, reason: String| FormatError::BadShardLayout {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    if end < file.len() && file.len() < next + RECORD_FIXED_LEN {
        let n = file.len() - end;
        return Err(bad(end, format!("{n} bytes after the last record")));
    }
    match file[end..next.min(file.len())].iter().position(|&b| b != 0) {
        Some(i) => Err(bad(end + i, "non-zero byte between records".into())),
        None => Ok(()),
    }
}

/// Where a record was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLocation {
    pub offset: u64,
    pub length: u64,
}

/// Appends records to a new shard file. Writes go to `<path>.tmp`; [`ShardWriter::finish`]
/// syncs and renames it to `path`, so a reader never sees a half-written shard under its
/// final name. Dropping the writer without `finish` leaves only the `.tmp` file.
pub struct ShardWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    len: u64,
    records: usize,
}

impl ShardWriter {
    /// Creates `<path>.tmp` (replacing a stale one) and writes the file header.
    pub fn create(path: &Path) -> Result<Self> {
        let tmp = tmp_path(path);
        let file = File::create(&tmp).at(&tmp)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&file_header()).at(&tmp)?;
        Ok(ShardWriter {
            path: path.to_path_buf(),
            tmp,
            out,
            len: FILE_HEADER_LEN as u64,
            records: 0,
        })
    }

    /// Bytes written so far (the shard's size if finished now).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Number of records appended.
    pub fn records(&self) -> usize {
        self.records
    }

    /// True before the first record.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Appends a record at the next multiple of 8 and returns where it went.
    pub fn append(&mut self, record: &EncodedRecord) -> Result<RecordLocation> {
        let offset = pad8(self.len as usize) as u64;
        let padding = (offset - self.len) as usize;
        self.out.write_all(&[0u8; 8][..padding]).at(&self.tmp)?;
        self.out.write_all(&record.head).at(&self.tmp)?;
        self.out.write_all(&record.data).at(&self.tmp)?;
        let length = record.stored_len() as u64;
        self.len = offset + length;
        self.records += 1;
        Ok(RecordLocation { offset, length })
    }

    /// Flushes, syncs to disk and renames to the final name. Returns the file size.
    pub fn finish(self) -> Result<u64> {
        let file = self.out.into_inner().map_err(|e| e.into_error()).at(&self.tmp)?;
        file.sync_all().at(&self.tmp)?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).at(&self.path)?;
        sync_parent(&self.path);
        Ok(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::PredictorMode;

    fn spec(layout: FrameLayout) -> VideoSpec {
        VideoSpec { video_id: "v".into(), layout, fps_num: 30, fps_den: 1 }
    }

    fn record(mode: PredictorMode, frames: &[Vec<u8>], buffer: Option<Vec<u8>>) -> EncodedRecord {
        let layout = FrameLayout::new(24, 16, PixelFormat::Yuv420p).unwrap();
        let mut enc = ChunkEncoder::new(1, mode).unwrap();
        let mut b = match buffer {
            Some(buf) => RecordBuilder::with_buffer(spec(layout), 4, &mut enc, buf).unwrap(),
            None => RecordBuilder::new(spec(layout), 4, &mut enc).unwrap(),
        };
        for f in frames {
            b.push_frame(f).unwrap();
        }
        b.finish().unwrap()
    }

    #[test]
    fn a_reused_buffer_gives_the_same_record() {
        let fb = FrameLayout::new(24, 16, PixelFormat::Yuv420p).unwrap().frame_bytes();
        let mut x = 7u32;
        let frames: Vec<Vec<u8>> = (0..11)
            .map(|_| {
                (0..fb)
                    .map(|_| {
                        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        (x >> 24) as u8 & 0x3f
                    })
                    .collect()
            })
            .collect();
        for mode in [PredictorMode::Plain, PredictorMode::Interleaved, PredictorMode::Adaptive] {
            let fresh = record(mode, &frames, None);
            let reused = record(mode, &frames, Some(vec![0xaa; 100_000]));
            assert_eq!(fresh.head, reused.head, "{mode:?}");
            assert_eq!(fresh.data, reused.data, "{mode:?}");
            assert_eq!(fresh.header.chunks.len(), 3);
            // The checksum combined from the chunks' CRCs is the CRC of the stored bytes.
            let stored = [reused.head.as_slice(), reused.data.as_slice()].concat();
            assert_eq!(reused.checksum, crc32c::crc32c(&stored), "{mode:?}");
            assert_eq!(reused.stored_len(), stored.len());
            for c in &reused.header.chunks {
                let at = c.offset as usize;
                assert_eq!(c.crc32c, crc32c::crc32c(&stored[at..at + c.length as usize]));
            }
            // And it parses as a record, header and chunk table.
            let parsed = parse_record(Path::new("mem"), &stored, 0).unwrap();
            assert_eq!(parsed, reused.header);
        }
    }

    #[test]
    fn a_failed_encode_leaves_the_buffer_as_it_was() {
        let layout = FrameLayout::new(24, 16, PixelFormat::Yuv420p).unwrap();
        let mut enc = ChunkEncoder::new(1, PredictorMode::Plain).unwrap();
        let mut out = b"before".to_vec();
        let half_a_frame = vec![0u8; layout.frame_bytes() / 2];
        assert!(enc.encode_into(&layout, &half_a_frame, &mut out).is_err());
        assert_eq!(out, b"before");
    }
}
