//! Errors of the format layer: one variant per way a shard set can be wrong, each naming the
//! file (and the video or chunk) so a user knows what to rebuild or delete.

use std::path::PathBuf;

/// Everything that can go wrong reading or writing a shard set.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{path}: not a cvrl shard file (magic {found:?}, expected \"CVRLSHRD\")")]
    BadShardMagic { path: PathBuf, found: Vec<u8> },

    #[error("{path}: shard format version {found} is not supported (this build reads version {supported}); rebuild the shards or upgrade cvrl")]
    UnsupportedVersion { path: PathBuf, found: u32, supported: u32 },

    #[error("{path}: damaged shard header ({reason})")]
    BadShardHeader { path: PathBuf, reason: String },

    #[error("{path}: video {video:?} at byte {offset}: {reason}")]
    BadRecord { path: PathBuf, video: String, offset: u64, reason: String },

    /// Records that do not tile the shard file: a gap or overlap, non-zero bytes between
    /// records, or bytes after the last record.
    #[error("{path}: at byte {offset}: {reason}")]
    BadShardLayout { path: PathBuf, offset: u64, reason: String },

    #[error("{path}: video {video:?} chunk {chunk}: checksum mismatch (stored {expected:#010x}, computed {actual:#010x}); the shard is damaged, rebuild it")]
    ChunkChecksum { path: PathBuf, video: String, chunk: usize, expected: u32, actual: u32 },

    #[error("{path}: video {video:?} chunk {chunk}: {source}")]
    ChunkDecode {
        path: PathBuf,
        video: String,
        chunk: usize,
        #[source]
        source: crate::codec::CodecError,
    },

    #[error("{path}: video {video:?}: record checksum mismatch (index {expected:#010x}, computed {actual:#010x})")]
    RecordChecksum { path: PathBuf, video: String, expected: u32, actual: u32 },

    #[error("video {video:?}: frames {start}..{end} requested but it has {num_frames}")]
    FrameOutOfRange { video: String, start: u64, end: u64, num_frames: u32 },

    #[error("{path}: bad index: {reason}")]
    BadIndex { path: PathBuf, reason: String },

    #[error("{path}: bad manifest: {reason}")]
    BadManifest { path: PathBuf, reason: String },

    #[error("{path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },

    #[error("{path}: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow::error::ArrowError,
    },

    #[error("{dir}: no manifest.json and no part manifests: not a cvrl shard set (make one with `cvrl-shard build`)")]
    NotAShardSet { dir: PathBuf },

    #[error("{dir}: {reason}")]
    IncompatibleSets { dir: PathBuf, reason: String },

    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },

    #[error("{sets}: no video of split {split:?} (the set's splits: {available})")]
    NoSuchSplit { sets: String, split: String, available: String },
}

/// Result alias for this crate.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// Attaches a path to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| FormatError::Io { path: path.into(), source })
    }
}
