//! cvrl-formats: the on-disk shard format of cvrl and its Parquet index, as FORMAT.md
//! specifies them (the code links to its sections, `FORMAT.md#2-shard-file` and so on).
//!
//! A shard set is a directory: `manifest.json` (build parameters, classes), `index.parquet`
//! (one row per video: where its record is, its chunk table), `failures.parquet` (inputs
//! that could not be stored, and why) and `shard-NNNNN.cvrs` files of video records. This
//! crate writes and reads them and knows nothing of FFmpeg or torch: the sharder in
//! `cvrl-tools` feeds it decoded frames, the trainer reads frames back through [`ShardSet`].
//! [`sampler`] places clips in a video (CVRL's pair sampling, evaluation views): it needs
//! nothing but `rand`, so the trainer and the Python package (`formats/python`) share it.

pub mod atomic;
pub mod codec;
pub mod error;
pub mod index;
pub mod manifest;
mod parquet_guard;
pub mod pixel;
pub mod reader;
pub mod sampler;
pub mod set;
pub mod shard;
pub mod shard_file;
mod thrift;

pub use error::{FormatError, Result};
pub use index::{FailureRow, VideoRow};
pub use manifest::{BuildParams, Manifest, Part, SetFiles};
pub use pixel::{Crop, FrameLayout, PixelFormat, Plane};
pub use set::{merge_parts, write_set, FrameReader, ReaderBuffers, SetPath, ShardSet};
pub use shard::{ChunkEntry, EncodedRecord, RecordBuilder, ShardWriter, VideoSpec};
pub use shard_file::ShardFile;
