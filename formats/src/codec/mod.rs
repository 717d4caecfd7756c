//! Lossless chunk codec: block-wise spatial/temporal prediction, context-split residual
//! streams, one zstd frame per chunk.
//!
//! A *chunk* is `n >= 1` consecutive frames of one video (one [`FrameLayout`]) compressed as
//! one independent zstd frame (with its content checksum): it decodes without any other
//! chunk. The encoder replaces every pixel by the residual of a predictor chosen per 16x16
//! block, then splits the residuals into streams selected by a context of already-decoded
//! neighbours before zstd sees them.
//!
//! Why not hand zstd the residual bytes: on smooth footage 70-80% of residuals are 0, and
//! zstd's Huffman coder spends at least one bit on every byte; that measured 1.45x the size
//! of FFV1 on a panning clip. Zero flags packed eight to a byte per context cost zstd a
//! fraction of a bit each, and groups in busy areas are stored as plain bytes, which is both
//! the cheapest code there and a `memcpy` for the decoder. Why blocks: moving objects and a
//! static or panning background need different predictors in one frame (per-plane choice
//! was 12% larger on the panning clip). Measurements: `examples/codec_eval.rs`.
//!
//! # Decompressed payload
//!
//! Notation: `F` = frames in the chunk, `P` = planes per frame ([`FrameLayout::planes`]:
//! `yuv420p` Y, U, V; `rgb24` one plane). For one plane: `W` = bytes per row, `H` = rows,
//! `S` = bytes from one pixel to the next pixel of the same channel (3 for `rgb24`, else 1).
//! Integers are little-endian. All division is integer division.
//!
//! The payload is, with nothing between the parts:
//! 1. **Motion vectors**: `F * P` pairs of `i8` `(dx, dy)`, frame-major (frame 0 plane 0,
//!    frame 0 plane 1, ..., frame 1 plane 0, ...). `dx` is in pixels (`dx * S` bytes), `dy`
//!    in rows. Frame 0's vectors MUST be `(0, 0)`.
//! 2. **Block predictor codes**: for each frame and plane (frame-major), the plane is tiled
//!    from its top-left corner with blocks of `BW` bytes by `BH` rows, edge blocks clipped:
//!    Y and `rgb24` 16x16 pixels (`BW = 16 * S`, `BH = 16`), U and V 8x8. One code byte per
//!    block, blocks in raster order: `ceil(W / BW) * ceil(H / BH)` bytes per plane.
//! 3. **Stream table**: 33 `u32` byte lengths, for the streams in this order: `Z0..Z8` (zero
//!    flags), `O0..O6` (magnitude > 1), `S0..S8` (signs), `M0..M3` (magnitudes), `L0..L3`
//!    (literal groups). `Z`, `O`, `S` are bit streams, `M`, `L` byte streams.
//! 4. **Streams**, concatenated in table order.
//!
//! A decoder MUST reject: a payload whose length differs from the sum of parts 1-4
//! (`2FP + codes + 132 + sum of stream lengths`); unknown predictor codes; temporal codes or
//! non-zero vectors in frame 0; a stream read past its end, or not read to its end; non-zero
//! padding bits; an out-of-range magnitude; compressed input that is not exactly one zstd
//! frame. [`ChunkDecoder`] also caps the decompressed size at what `F` frames can need.
//!
//! ## Predictors
//! Pixels are `u8`; the stored residual is `r = x.wrapping_sub(pred)`, and a decoder computes
//! `x = r.wrapping_add(pred)`. Arithmetic inside a prediction is on integers, the result
//! taken modulo 256. `med(a, b, c)` is LOCO-I's median edge detector: `min(a, b)` if
//! `c >= max(a, b)`, `max(a, b)` if `c <= min(a, b)`, else `a + b - c` (that is,
//! `clamp(a + b - c, min(a, b), max(a, b))`). For a plane `X` and the byte at column `x` of
//! row `y`, with `a = X[y][x-S]`, `b = X[y-1][x]`, `c = X[y-1][x-S]`, the spatial rule
//! `sp(X)` is: `0` at `y = 0, x < S`; `a` on the rest of row 0; `b` at `y > 0, x < S`;
//! `med(a, b, c)` elsewhere. Neighbours may lie in other blocks (they are decoded first:
//! blocks are decoded row by row, left to right, like the pixels of an unblocked plane).
//!
//! `prev` is the same plane of the previous frame of the chunk. `R` is `prev` shifted by the
//! plane's vector with edges replicated:
//! `R[y][x] = prev[clamp(y + dy, 0, H-1)][clamp(x / S + dx, 0, W / S - 1) * S + x % S]`.
//!
//! | code | name | prediction |
//! |---|---|---|
//! | 0 | RAW | `0` |
//! | 1 | TEMPORAL | `prev[y][x]` (the vector is not used) |
//! | 2 | MED | `sp(X)` |
//! | 3 | TEMPORAL_MED | `prev[y][x] + sp(X - prev)`: MED applied to the difference to `prev` |
//! | 4 | MOTION | `R[y][x]` |
//! | 5 | MOTION_MED | `R[y][x] + sp(X - R)` |
//!
//! `X - prev` and `X - R` are taken pixel by pixel as integers (-255..=255) before `sp`.
//! Codes 1, 3, 4, 5 MUST NOT appear in frame 0; codes above 5 are invalid.
//!
//! ## Residual streams
//! Residual planes are coded one after another in payload order (frame 0 plane 0, frame 0
//! plane 1, ..., frame 1 plane 0, ...), each row top to bottom, and every stream holds its
//! symbols in that order; how reads from different streams interleave does not matter.
//! `v[y][x]` is a residual byte of the current plane read as `i8` and `|v|` its magnitude
//! (0..=128); outside the plane (`x < 0`, `x >= W`, `y < 0`) `v = 0`. `sgn(v)` is 0, 1, 2
//! for negative, zero, positive. `count(t, T)` is how many of the thresholds `T` are below
//! `t`. A bit stream holds bits least-significant bit first; the unused high bits of its last
//! byte MUST be 0.
//!
//! Each row is cut into groups of 8 bytes from `x0 = 0`, the last one holding
//! `n = min(8, W - x0)` bytes. A group's context is `k = count(g, [0, 1, 2, 3, 4, 6, 8, 11,
//! 15, 20, 28, 40])` with `g = sum of |v[y-1][i]| for i in x0-1..=x0+8` (only the row above).
//! - `k >= 9` (a busy area): the group's `n` residual bytes are the next `n` bytes of
//!   `L[k-9]`.
//! - `k < 9`: the next `n` bits of `Z[k]`; bit `i` set means byte `x0 + i` is non-zero, and
//!   its other bytes are zero. Each non-zero byte at column `x` then takes, with
//!   `s = 2 * [v[y][x-S] != 0] + |v[y-1][x]| + |v[y-1][x-S]| + |v[y-1][x+S]|`:
//!   one bit from `O[count(s, [1, 2, 4, 7, 12, 20])]`, set if its magnitude is > 1; one bit
//!   from `S[3 * sgn(v[y-1][x]) + sgn(v[y-1][x-S])]`, set if it is negative; and, if the
//!   magnitude is > 1, one byte `m` from `M[count(s, [4, 10, 25])]`: magnitude `m + 2`. The
//!   magnitude MUST be at most 127 for a positive and 128 for a negative residual; the
//!   residual byte is the magnitude, negated (two's complement) when negative.
//!
//! Nothing depends on a residual's value in the same row, only on whether it is zero: a
//! decoder reads a row's zero flags first and finds every context of the row up front.
//!
//! # Encoder
//! [`ChunkEncoder`] searches one vector per plane (the shift of the previous frame with the
//! smallest sum of absolute differences on every fourth row, within 8 pixels, 4 in chroma)
//! and picks per block the allowed predictor with the smallest sum of `|v|`. Chunk length,
//! zstd level and the predictor set are the writer's choice; `examples/codec_eval.rs`
//! measures them; `cvrl-shard` defaults to adaptive, zstd level 1, 8 frames (BENCHMARKS.md).

//!
//! # Files
//! `mode` (predictor modes and codes), `plane` (plane geometry), `context` (the
//! context model), `bits` (bit and byte streams), `motion` (vector search and shifted
//! planes), `predict` (the encoder's predictor choice), `residuals` (residual streams,
//! both ways), `unpredict` (the decoder's prediction pass), `encode` and `decode`
//! (the two entry points).

mod bits;
mod context;
mod decode;
mod encode;
mod error;
mod mode;
mod motion;
mod plane;
mod predict;
mod residuals;
mod unpredict;

#[cfg(test)]
mod tests;

pub use decode::ChunkDecoder;
pub use encode::ChunkEncoder;
pub use error::CodecError;
pub use mode::{Predictor, PredictorMode};
