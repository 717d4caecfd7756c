//! One shard file opened on its own, without a set's index: what `cvrl-inspect FILE.cvrs`
//! reads. Its records are found by walking the file (`FORMAT.md#2-shard-file`), each header
//! checked as `FORMAT.md#3-video-record` says; frames are then read, and records verified,
//! through the same [`FrameReader`] a [`ShardSet`](crate::ShardSet) uses.

use crate::error::{FormatError, IoContext, Result};
use crate::index::VideoRow;
use crate::reader::{FrameReader, MappedShard, MappedVideos};
use crate::shard::{records, RecordLocation};
use memmap2::Mmap;
use std::fs::File;
use std::path::Path;

/// A memory-mapped shard file and the records a walk found in it.
pub struct ShardFile {
    store: MappedVideos,
    /// Why the walk stopped before the end of the file, if it did.
    damage: Option<FormatError>,
}

impl ShardFile {
    /// Maps `path` and walks its records. A bad file header is an error; a damaged record,
    /// or bytes between or after records that should not be there, stop the walk and are
    /// kept as [`ShardFile::damage`], with the records before them still readable.
    pub fn open(path: &Path) -> Result<ShardFile> {
        let file = File::open(path).at(path)?;
        // SAFETY: shards are immutable once renamed into place; cvrl never rewrites one. A
        // file truncated by another process under the map would fault, as with any mmap.
        let map = unsafe { Mmap::map(&file) }.at(path)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut store = MappedVideos::default();
        let mut damage = None;
        for rec in records(path, &map)? {
            match rec {
                Ok((offset, h)) => {
                    let loc = RecordLocation { offset, length: h.record_len };
                    // In range: the walk checked that the record lies inside the file.
                    let bytes = &map[offset as usize..(offset + h.record_len) as usize];
                    let checksum = crc32c::crc32c(bytes);
                    store.layouts.push(h.layout);
                    store.video_shard.push(0);
                    store.videos.push(VideoRow::for_header(
                        &h,
                        checksum,
                        &name,
                        loc,
                        String::new(),
                    ));
                }
                Err(e) => damage = Some(e),
            }
        }
        store.shards.push(MappedShard { path: path.to_path_buf(), map });
        Ok(ShardFile { store, damage })
    }

    /// The records found, in file order, as index rows (no source metadata; `checksum` is
    /// computed from the record as it is).
    pub fn videos(&self) -> &[VideoRow] {
        &self.store.videos
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.store.shards[0].map.len() as u64
    }

    /// Why the walk stopped before the end of the file, if it did.
    pub fn damage(&self) -> Option<&FormatError> {
        self.damage.as_ref()
    }

    /// A reader of this file's records; make one per thread.
    pub fn reader(&self) -> Result<FrameReader<'_>> {
        FrameReader::new(&self.store)
    }

    /// Decodes every chunk of record `i` whole: each chunk's CRC-32C, then every check of
    /// the chunk codec. (Without an index there is no record checksum to compare.)
    pub fn verify_video(&self, i: usize, reader: &mut FrameReader<'_>) -> Result<()> {
        reader.decode_video(i)
    }
}
