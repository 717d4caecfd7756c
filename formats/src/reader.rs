//! Random access to the frames of memory-mapped shards: [`FrameReader`], over the videos a
//! [`ShardSet`](crate::ShardSet) (through its index) or a [`ShardFile`](crate::ShardFile)
//! (by walking the file) has checked against their shards, so that offsets can be trusted.
//!
//! A reader decompresses only the chunks a call needs, into reused buffers, and checks every
//! chunk's CRC-32C before decompressing it. [`FrameReader::read_frames`] and
//! [`FrameReader::read_indices`] know every frame a call needs, so they reconstruct a
//! predictive chunk only up to the last of them (frames are coded in order; the rest of a
//! chunk's decoding is skipped), and of a plain chunk only those frames;
//! [`FrameReader::frame`] decodes whole chunks.

use crate::codec::{ChunkDecoder, Codec, CodecError};
use crate::error::{FormatError, Result};
use crate::index::VideoRow;
use crate::pixel::FrameLayout;
use crate::shard::{ChunkEntry, CODEC_BYTE, RECORD_MAGIC};
use memmap2::Mmap;
use std::path::{Path, PathBuf};

/// A memory-mapped shard file.
pub(crate) struct MappedShard {
    pub(crate) path: PathBuf,
    pub(crate) map: Mmap,
}

/// Videos in memory-mapped shards, each checked against its shard by whoever filled this
/// (record range inside the file, chunk table tiling the record): what a reader reads.
#[derive(Default)]
pub(crate) struct MappedVideos {
    pub(crate) videos: Vec<VideoRow>,
    pub(crate) layouts: Vec<FrameLayout>,
    /// Index into `shards` of each video's shard.
    pub(crate) video_shard: Vec<u32>,
    pub(crate) shards: Vec<MappedShard>,
}

impl MappedVideos {
    /// The path of the shard holding video `i`.
    pub(crate) fn shard_path(&self, i: usize) -> &Path {
        &self.shards[self.video_shard[i] as usize].path
    }

    /// The whole shard file holding video `i`.
    pub(crate) fn shard_map(&self, i: usize) -> &[u8] {
        &self.shards[self.video_shard[i] as usize].map
    }

    /// The bytes of video `i`'s record.
    pub(crate) fn record(&self, i: usize) -> &[u8] {
        let row = &self.videos[i];
        // In range: checked when the video was added.
        &self.shard_map(i)[row.offset as usize..(row.offset + row.length) as usize]
    }
}

/// Random access to frames of a [`ShardSet`](crate::ShardSet) or a
/// [`ShardFile`](crate::ShardFile), with reused buffers. Not `Sync`: one per thread.
pub struct FrameReader<'s> {
    set: &'s MappedVideos,
    decoder: ChunkDecoder,
    chunk: Vec<u8>,
    /// `(video, chunk)` in `chunk`, and which of its frames are decoded.
    cached: Option<(usize, usize)>,
    /// The chunk whose CRC-32C was checked last.
    checked: Option<(usize, usize)>,
    have: Vec<bool>,
    /// The frames of a chunk a call wants (reused).
    wanted: Vec<usize>,
    /// Frames reconstructed so far (what the reader cost, for tests and benchmarks).
    decoded_frames: u64,
}

/// The buffers of a [`FrameReader`] without the set it reads: kept between short-lived
/// readers (one per call of a binding, say), so that each reuses the memory an earlier one
/// grew instead of allocating, and page-faulting in, a chunk's worth of fresh memory.
pub struct ReaderBuffers {
    decoder: ChunkDecoder,
    chunk: Vec<u8>,
    have: Vec<bool>,
    wanted: Vec<usize>,
}

impl ReaderBuffers {
    pub fn new() -> Result<Self> {
        let decoder = ChunkDecoder::new().map_err(|e| FormatError::Invalid {
            what: "zstd decoder".into(),
            reason: e.to_string(),
        })?;
        Ok(ReaderBuffers { decoder, chunk: Vec::new(), have: Vec::new(), wanted: Vec::new() })
    }
}

impl<'s> FrameReader<'s> {
    pub(crate) fn new(set: &'s MappedVideos) -> Result<Self> {
        Ok(Self::with_buffers(set, ReaderBuffers::new()?))
    }

    /// A reader of `set` that decodes into `buffers` (nothing of what they held is reused
    /// as frames: the reader starts with no chunk cached).
    pub(crate) fn with_buffers(set: &'s MappedVideos, buffers: ReaderBuffers) -> Self {
        let ReaderBuffers { decoder, chunk, have, wanted } = buffers;
        FrameReader {
            set,
            decoder,
            chunk,
            cached: None,
            checked: None,
            have,
            wanted,
            decoded_frames: 0,
        }
    }

    /// This reader's buffers, for a later reader ([`ShardSet::reader_with`](crate::ShardSet::reader_with)).
    pub fn into_buffers(self) -> ReaderBuffers {
        let FrameReader { decoder, chunk, have, wanted, .. } = self;
        ReaderBuffers { decoder, chunk, have, wanted }
    }

    /// Appends frames `start, start+stride, ...` (`count` of them) of video `video` to `out`,
    /// each `layout(video).frame_bytes()` bytes, as [`FrameReader::read_indices`] does.
    pub fn read_frames(
        &mut self,
        video: usize,
        start: u32,
        count: u32,
        stride: u32,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let row = self.video_row(video)?;
        let stride = stride.max(1);
        let last = u64::from(start) + u64::from(count.saturating_sub(1)) * u64::from(stride);
        if count > 0 && last >= u64::from(row.num_frames) {
            return Err(FormatError::FrameOutOfRange {
                video: row.video_id.clone(),
                start: u64::from(start),
                end: last + 1,
                num_frames: row.num_frames,
            });
        }
        let indices: Vec<u32> = (0..count).map(|k| start + k * stride).collect();
        self.read_indices(video, &indices, out)
    }

    /// Returns frame `frame` of video `video`, borrowed from the reader's chunk buffer.
    pub fn frame(&mut self, video: usize, frame: u32) -> Result<&[u8]> {
        let row = self.video_row(video)?;
        if frame >= row.num_frames {
            let (start, end, num_frames) = (u64::from(frame), u64::from(frame) + 1, row.num_frames);
            return Err(FormatError::FrameOutOfRange {
                video: row.video_id.clone(),
                start,
                end,
                num_frames,
            });
        }
        let c = chunk_of(&row.chunks, frame);
        // Whole chunks: the next call may want any later frame of this one.
        self.load_chunk(video, c, None)?;
        let frame_bytes = self.set.layouts[video].frame_bytes();
        let at = (frame - row.chunks[c].first_frame) as usize * frame_bytes;
        Ok(&self.chunk[at..at + frame_bytes])
    }

    /// Appends frames `indices` of video `video` to `out`, in that order, each
    /// `layout(video).frame_bytes()` bytes: what a clip sampler's index list needs. Each
    /// chunk is decoded once per run of consecutive indices inside it, and only up to the
    /// last frame of that run.
    pub fn read_indices(&mut self, video: usize, indices: &[u32], out: &mut Vec<u8>) -> Result<()> {
        let row = self.video_row(video)?;
        if let Some(&bad) = indices.iter().find(|&&i| i >= row.num_frames) {
            return Err(FormatError::FrameOutOfRange {
                video: row.video_id.clone(),
                start: u64::from(bad),
                end: u64::from(bad) + 1,
                num_frames: row.num_frames,
            });
        }
        let frame_bytes = self.set.layouts[video].frame_bytes();
        out.reserve(frame_bytes * indices.len());
        let mut k = 0;
        while k < indices.len() {
            let c = chunk_of(&row.chunks, indices[k]);
            let (first, n) = (row.chunks[c].first_frame, row.chunks[c].num_frames);
            let run = indices[k..].iter().take_while(|&&i| i >= first && i - first < n).count();
            self.wanted.clear();
            self.wanted.extend(indices[k..k + run].iter().map(|&i| (i - first) as usize));
            let wanted = std::mem::take(&mut self.wanted);
            let appended = self.append_frames(video, c, &wanted, out);
            self.wanted = wanted;
            appended?;
            k += run;
        }
        Ok(())
    }

    /// Frames this reader has reconstructed since it was made: a chunk kept between calls
    /// is not decoded again, so reading every frame of a video one by one costs each frame
    /// once.
    pub fn decoded_frames(&self) -> u64 {
        self.decoded_frames
    }

    fn video_row(&self, video: usize) -> Result<&'s VideoRow> {
        self.set.videos.get(video).ok_or_else(|| FormatError::Invalid {
            what: format!("video {video}"),
            reason: format!("there are {} videos", self.set.videos.len()),
        })
    }

    /// Decodes every chunk of `video` whole, with every check of the chunk codec: the CRC-32C
    /// of each chunk, then a full decode, so that a damaged chunk is named.
    pub(crate) fn decode_video(&mut self, video: usize) -> Result<()> {
        for c in 0..self.video_row(video)?.chunks.len() {
            self.load_chunk(video, c, None)?;
        }
        Ok(())
    }

    /// The codec of `video`'s record and the bytes of its chunk `c`, whose CRC-32C is
    /// checked unless this reader checked it last.
    fn chunk_data(&mut self, video: usize, c: usize) -> Result<(Codec, &'s [u8])> {
        let set = self.set;
        let row = &set.videos[video];
        let entry = row.chunks[c];
        let record = set.record(video);
        let path = set.shard_path(video);
        let bad_record = |reason: &str| FormatError::BadRecord {
            path: path.into(),
            video: row.video_id.clone(),
            offset: row.offset,
            reason: reason.into(),
        };
        if !record.starts_with(RECORD_MAGIC) {
            return Err(bad_record("no record magic where the index points"));
        }
        let codec = record
            .get(CODEC_BYTE)
            .and_then(|&code| Codec::from_code(code))
            .ok_or_else(|| bad_record("unknown codec"))?;
        let data =
            &record[entry.offset as usize..(entry.offset + u64::from(entry.length)) as usize];
        if self.checked != Some((video, c)) {
            self.checked = None;
            let actual = crc32c::crc32c(data);
            if actual != entry.crc32c {
                return Err(FormatError::ChunkChecksum {
                    path: path.into(),
                    video: row.video_id.clone(),
                    chunk: c,
                    expected: entry.crc32c,
                    actual,
                });
            }
            self.checked = Some((video, c));
        }
        Ok((codec, data))
    }

    /// The error for chunk `c` of `video` that its codec refused.
    fn decode_error(&self, video: usize, c: usize, error: CodecError) -> FormatError {
        FormatError::ChunkDecode {
            path: self.set.shard_path(video).into(),
            video: self.set.videos[video].video_id.clone(),
            chunk: c,
            error,
        }
    }

    /// Appends the frames `frames` (numbers within the chunk) of chunk `c` of `video` to
    /// `out`: plain frames are decompressed straight into it, the predictive codecs' through
    /// the chunk buffer ([`FrameReader::load_chunk`]).
    fn append_frames(
        &mut self,
        video: usize,
        c: usize,
        frames: &[usize],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let fb = self.set.layouts[video].frame_bytes();
        let (codec, data) = self.chunk_data(video, c)?;
        if codec != Codec::Plain || self.cached == Some((video, c)) {
            self.load_chunk(video, c, Some(frames))?;
            for &k in frames {
                out.extend_from_slice(&self.chunk[k * fb..(k + 1) * fb]);
            }
            return Ok(());
        }
        let n = self.set.videos[video].chunks[c].num_frames as usize;
        let result = self
            .decoder
            .plain_frames(data, n)
            .and_then(|mut plain| frames.iter().try_for_each(|&k| plain.append(k, fb, out)));
        result.map_err(|e| self.decode_error(video, c, e))?;
        self.decoded_frames += frames.len() as u64;
        Ok(())
    }

    /// Decodes chunk `c` of `video` into the chunk buffer, at least its frames `wanted`
    /// (numbers within the chunk; `None`: all, with every check of the codec), unless they
    /// are already there. The predictive codec reconstructs every frame up to the last one
    /// wanted, the interleaved one each wanted frame's chain, plain frames exactly the wanted
    /// ones ([`Codec::decodes`]).
    fn load_chunk(&mut self, video: usize, c: usize, wanted: Option<&[usize]>) -> Result<()> {
        let n = self.set.videos[video].chunks[c].num_frames as usize;
        let all: Vec<usize>;
        let wanted = match wanted {
            Some(w) => w,
            None => {
                all = (0..n).collect();
                &all
            }
        };
        let cached = self.cached == Some((video, c));
        if cached && wanted.iter().all(|&k| self.have.get(k).copied().unwrap_or(false)) {
            return Ok(());
        }
        let (codec, data) = self.chunk_data(video, c)?;
        let layout = self.set.layouts[video];
        if !cached {
            self.cached = None;
            self.chunk.resize(layout.frame_bytes() * n, 0);
            self.have.clear();
            self.have.resize(n, false);
        }
        // Frames already decoded are kept, except by the predictive codec, which starts over.
        let missing: Vec<usize> = match codec {
            Codec::Predictive => wanted.to_vec(),
            Codec::Plain | Codec::Interleaved => {
                wanted.iter().copied().filter(|&k| !self.have[k]).collect()
            }
        };
        let decoded =
            match self.decoder.decode_wanted(codec, &layout, n, data, &mut self.chunk, &missing) {
                Ok(decoded) => decoded,
                Err(e) => {
                    self.cached = None;
                    return Err(self.decode_error(video, c, e));
                }
            };
        for k in codec.decodes(&missing, n) {
            self.have[k] = true;
        }
        self.cached = Some((video, c));
        self.decoded_frames += decoded as u64;
        Ok(())
    }
}

/// Index of the chunk holding `frame` (chunks are contiguous and sorted by first frame).
fn chunk_of(chunks: &[ChunkEntry], frame: u32) -> usize {
    chunks.partition_point(|c| c.first_frame <= frame) - 1
}
