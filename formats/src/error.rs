//! Errors of the format layer: one variant per way a shard set can be wrong, each naming the
//! file (and the video or chunk) so a user knows what to rebuild or delete.
//!
//! A variant wrapping a lower error shows that error's text in its own message and does not
//! also return it as [`std::error::Error::source`]: anyhow's `{:#}` prints a message and then
//! each source, so a cause in both places was printed twice (`x.tmp: No such file or
//! directory (os error 2): No such file or directory (os error 2)`). The field is named
//! `error`, not `source`, because thiserror makes a field named `source` the source.

use std::path::PathBuf;

/// Everything that can go wrong reading or writing a shard set.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },

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

    #[error("{path}: video {video:?} chunk {chunk}: {error}")]
    ChunkDecode { path: PathBuf, video: String, chunk: usize, error: crate::codec::CodecError },

    #[error("{path}: video {video:?}: record checksum mismatch (index {expected:#010x}, computed {actual:#010x})")]
    RecordChecksum { path: PathBuf, video: String, expected: u32, actual: u32 },

    #[error("video {video:?}: frames {start}..{end} requested but it has {num_frames}")]
    FrameOutOfRange { video: String, start: u64, end: u64, num_frames: u32 },

    /// An index or failures file that is not a readable Parquet file, lacks a column, holds
    /// a wrong type or a null, or has a row that does not match its shard.
    #[error("{path}: bad index: {reason}; {rebuild}", rebuild = REBUILD)]
    BadIndex { path: PathBuf, reason: String },

    /// A `manifest.json` that is not JSON, lacks a field, holds one of the wrong type or
    /// names a file outside the set's folder.
    #[error("{path}: bad manifest: {reason}; {rebuild}", rebuild = REBUILD)]
    BadManifest { path: PathBuf, reason: String },

    #[error("{path}: {error}")]
    Parquet { path: PathBuf, error: parquet::errors::ParquetError },

    #[error("{path}: {error}")]
    Arrow { path: PathBuf, error: arrow::error::ArrowError },

    #[error("{dir}: no manifest.json and no part manifests: not a cvrl shard set (make one with `cvrl-shard build`)")]
    NotAShardSet { dir: PathBuf },

    #[error("{dir}: {reason}")]
    IncompatibleSets { dir: PathBuf, reason: String },

    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },

    #[error("{sets}: no video of split {split:?} (the set's splits: {available})")]
    NoSuchSplit { sets: String, split: String, available: String },
}

impl FormatError {
    /// The operating system's error behind this one, if it is one (an I/O error, or a Parquet
    /// file that could not be written), so a caller can tell a full disk from a bad file.
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            FormatError::Io { error, .. } => Some(error),
            FormatError::Parquet { error: parquet::errors::ParquetError::External(e), .. } => {
                e.downcast_ref()
            }
            _ => None,
        }
    }
}

/// What to do about a damaged manifest or index, shown with the error.
const REBUILD: &str =
    "the set is damaged or not a cvrl shard set: copy it again, or rebuild it with `cvrl-shard build`";

/// Result alias for this crate.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// Attaches a path to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|error| FormatError::Io { path: path.into(), error })
    }
}
