//! Errors of the chunk codec: one variant per way a chunk can be wrong.

use std::io;

/// Everything that can go wrong encoding or decoding a chunk.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("zstd: {0}")]
    Zstd(#[source] io::Error),

    #[error("{what} is {actual} bytes, expected {expected}")]
    BadLength { what: &'static str, expected: usize, actual: usize },

    #[error("a chunk holds at least one frame")]
    NoFrames,

    #[error("compressed chunk is not exactly one zstd frame ({frame} of {total} bytes)")]
    NotOneFrame { frame: usize, total: usize },

    #[error("a chunk of {expected} plain frames ends after {found}")]
    MissingFrames { expected: usize, found: usize },

    #[error("decompressed payload is {actual} bytes, its header implies {expected}")]
    SizeMismatch { expected: usize, actual: usize },

    #[error("unknown predictor code {code} in frame {frame}, plane {plane}, block {block}")]
    UnknownPredictor { frame: usize, plane: usize, block: usize, code: u8 },

    #[error(
        "temporal predictor {code} in frame {frame}, which has no reference frame (plane \
         {plane}, block {block})"
    )]
    TemporalWithoutReference { frame: usize, plane: usize, block: usize, code: u8 },

    #[error(
        "non-zero motion vector in frame {frame}, which has no reference frame (plane {plane})"
    )]
    VectorWithoutReference { frame: usize, plane: usize },

    #[error("residual stream {stream} ends early (frame {frame}, plane {plane})")]
    StreamOverrun { stream: usize, frame: usize, plane: usize },

    #[error("residual stream {stream} has unread bytes or non-zero padding")]
    StreamTrailing { stream: usize },

    #[error("residual magnitude {magnitude} out of range (frame {frame}, plane {plane})")]
    BadMagnitude { magnitude: u32, frame: usize, plane: usize },
}
