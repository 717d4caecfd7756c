//! The lossless chunk codec: block-wise spatial/temporal prediction, context-split residual
//! streams, one zstd frame per chunk. What a chunk holds is specified in FORMAT.md and
//! only there: `FORMAT.md#32-chunk-data-predictive-zstd` (payload layout
//! `FORMAT.md#321-payload-layout`, predictors `FORMAT.md#322-predictors`, residual streams
//! `FORMAT.md#323-residual-streams`, framing and limits
//! `FORMAT.md#324-zstd-framing-and-size-limits`, the encoder's choices
//! `FORMAT.md#325-encoder-informative`). The files here implement it and hold
//! implementation notes only.
//!
//! A second codec, plain zstd frames (`FORMAT.md#33-chunk-data-plain-zstd-frames`,
//! `plain.rs`), stores each frame as its own zstd frame: [`PredictorMode::Plain`] selects
//! it, and the same encoder and decoder handle it. A third, interleaved predicted frames
//! (`FORMAT.md#34-chunk-data-interleaved-predicted-frames`, `interleaved.rs`, `sparse.rs`,
//! [`PredictorMode::Interleaved`]), predicts as codec 1 does but from the frame two before,
//! so stride-2 clips decode only the frames they use, and codes residuals as zero flags and
//! non-zero bytes that decode a group of 8 at a time.
//!
//! [`ChunkEncoder`] turns `n >= 1` frames of one [`FrameLayout`](crate::FrameLayout) into one
//! zstd frame; [`ChunkDecoder`] turns it back, rejecting every payload the specification
//! rejects, without panicking on any input.
//!
//! Why not hand zstd the residual bytes: on smooth footage 70-80% of residuals are 0, and
//! zstd's Huffman coder spends at least one bit on every byte; that measured 1.45x the size
//! of FFV1 on a panning clip. Zero flags packed eight to a byte per context cost zstd a
//! fraction of a bit each, and groups in busy areas are stored as plain bytes, which is both
//! the cheapest code there and a `memcpy` for the decoder. Why blocks: moving objects and a
//! static or panning background need different predictors in one frame (per-plane choice
//! was 12% larger on the panning clip). Measurements: `examples/codec_eval.rs` and
//! BENCHMARKS.md.
//!
//! The decoder runs two passes per plane: `residuals` reads the streams into a residual
//! plane (every context depends on residuals only, never on pixels), then `unpredict` adds
//! the predictions in place. The encoder knows every pixel up front, so its prediction
//! (`predict`, `motion`) works on whole planes and vectorises.
//!
//! # Files
//! `mode` (predictor modes and codes), `plane` (plane geometry), `context` (the context
//! model), `bits` (bit and byte streams), `motion` (vector search and shifted planes),
//! `predict` (the encoder's predictor choice), `residuals` (residual streams, both ways),
//! `unpredict` (the decoder's prediction pass), `encode` and `decode` (the two entry
//! points), `plain` and `interleaved` (codecs 2 and 3; `sparse`, codec 3's residual
//! streams), `tests` (whole chunks through both).

mod bits;
mod context;
mod decode;
mod encode;
mod error;
mod interleaved;
mod mode;
mod motion;
mod plain;
mod plane;
mod predict;
mod residuals;
mod sparse;
mod sums;
mod unpredict;

#[cfg(test)]
mod tests;

pub use decode::{ChunkDecoder, PlainFrames};
pub use encode::ChunkEncoder;
pub use error::CodecError;
pub use mode::{Codec, Predictor, PredictorMode};
