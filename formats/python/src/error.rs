//! How `cvrl-formats` errors reach Python: one exception class, `cvrl.ShardError`, whose
//! message names the shard file and the video (and the chunk, where one is damaged), and
//! the built-in exceptions where Python code expects them (a missing directory, an index out
//! of range).

use std::path::Path;

use cvrl_formats::FormatError;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyIndexError};
use pyo3::PyErr;

pyo3::create_exception!(
    cvrl,
    ShardError,
    PyException,
    "A shard set that cannot be opened or read: a damaged or missing shard file, a chunk \
     whose checksum fails, an index that does not match its shards. The message names the \
     file, and the video and chunk where there is one."
);

/// An error of opening a set.
pub fn open_error(e: FormatError) -> PyErr {
    if e.io_error().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) {
        return PyFileNotFoundError::new_err(e.to_string());
    }
    ShardError::new_err(e.to_string())
}

/// An error of reading video `video_id` from `shard`; the message names both.
pub fn read_error(e: FormatError, shard: &Path, video_id: &str) -> PyErr {
    let shard = shard.display();
    match &e {
        // These messages start with the shard's path and name the video already.
        FormatError::ChunkChecksum { .. }
        | FormatError::ChunkDecode { .. }
        | FormatError::BadRecord { .. }
        | FormatError::RecordChecksum { .. } => ShardError::new_err(e.to_string()),
        // Names the video, not the shard.
        FormatError::FrameOutOfRange { .. } => PyIndexError::new_err(format!("{shard}: {e}")),
        _ => ShardError::new_err(format!("{shard}: video {video_id:?}: {e}")),
    }
}
