//! Decoding one video file into constant-rate, packed frames: the only place cvrl talks to
//! FFmpeg's decoders (through `ffmpeg-next`).
//!
//! [`decode_video`] opens a file, decodes its best video stream and hands each output frame
//! to a callback as packed planes ([`FrameLayout`](cvrl_formats::FrameLayout): no row
//! padding), so the shard writer never sees FFmpeg's strides, formats or timestamps.
//! [`probe`] describes a file without decoding it (`cvrl-inspect video.mp4`).
//!
//! # Timestamps: the resampling rule
//! Output is constant-rate at `fps` (default: the stream's average frame rate). Each decoded
//! frame gets a time in seconds: its best-effort timestamp minus the stream's start time.
//! Output frame `k` has time `t_k = k / fps`, and shows **the latest decoded frame whose time
//! is `<= t_k`**; output times before the first decoded frame show the first frame. Output
//! frames exist for every `t_k` before the end of the last decoded frame (its time plus its
//! duration). So a variable-rate stream is resampled by repeating and dropping frames, and a
//! constant-rate stream decoded at its own rate yields every frame exactly once. Times are
//! compared exactly, in integers (stream ticks against `k * fps_den / fps_num`), so no frame
//! is lost or doubled by floating-point rounding; "`<= t_k`" allows one tick of the stream's
//! time base (at most a quarter output frame) of lateness, because containers round
//! timestamps: webm stores milliseconds, so the third frame of a 30000/1001 fps video, due
//! at 66.73 ms, is stamped 67 ms. Frames whose timestamp goes backwards are
//! treated as arriving at the previous frame's time (they replace it); a missing timestamp is
//! taken as one nominal frame after the previous one. `trim = (a, b)` keeps output frames
//! with `a <= t_k < b` (their numbering, and so their times, still count from the start of
//! the video; the decoder seeks to the key frame before `a`), then `max_frames` caps the count.
//!
//! # Geometry
//! Pictures are first turned the way a player shows them (the stream's display matrix, as
//! the `ffmpeg` CLI's default autorotate does: quarter turns only; other angles snap to the
//! nearest quarter turn and mirroring is ignored), then scaled with swscale's bicubic filter
//! (the CLI's default) so that the short side is `short_side`; the long side keeps the
//! aspect ratio, rounded to the nearest integer. Both up- and downscaling happen, so every
//! stored video has the same short side. For `yuv420p` both sides are rounded to the nearest
//! even number (FORMAT.md stores only even 4:2:0 frames); with `short_side: None` an odd
//! width or height loses its last column or row instead of being resampled. The turn comes
//! before the scale, as in the CLI's filter graph: turning after would be cheaper, but
//! swscale treats rows and columns differently (packed RGB output shares one chroma sample
//! between two neighbours in a row), so only this order gives the CLI's pictures. With
//! 4:2:0 sources the output equals `ffmpeg -i IN -vf scale=W:H -pix_fmt F -f rawvideo`
//! byte for byte (the tests check this).
//!
//! # Errors
//! Every failure is a [`DecodeError`] naming the [`Stage`] it happened in; bad input never
//! panics. Damaged data is not tolerated: any packet the decoder rejects, any frame it
//! reports as concealed or corrupt, and any read error fails the video with
//! [`Stage::Decode`] and the time of the damage. The alternative, keeping frames the decoder
//! patched up, silently trains on smeared garbage; a dataset can afford to lose a damaged
//! clip, and the failure is listed. (One exception: after seeking to a trim start, damaged
//! pictures before the window are skipped; they can lack references the seek jumped over.)
//! A file whose decoded frames end before 90% of the duration its container declares (a
//! truncated download) fails the same way. Some damage cannot be seen: FFmpeg's VP9 decoder
//! reports nothing for garbage inside a frame, so such a file decodes "fine".
//! Every error ends with what FFmpeg logged about the file, if anything (`...; FFmpeg said:
//! [h264] error while decoding MB 3 4, bytestream -5`); FFmpeg itself prints nothing.
//!
//! # Threads
//! Each decoder runs on one thread. The caller decodes many videos at once with rayon (one
//! per core); FFmpeg's default of one frame thread per core on top would run cores²
//! threads, each frame thread holding its own copy of the decoder state and reference
//! frames, for no gain in throughput.
//!
//! # Layout
//! `timeline.rs` holds the timestamp rules above as pure integer logic (which output frame
//! shows which decoded frame, the trim window); `picture.rs` turns, scales and packs a
//! decoded picture into the stored layout; `decoder.rs` is the FFmpeg read-and-decode loop
//! that feeds one into the other; `probe.rs` describes a file without decoding it;
//! `ffmpeg_log.rs` keeps FFmpeg's log lines per file (silent unless asked) so that errors
//! can quote them.
//!
//! ```no_run
//! use cvrl_tools::decode::{decode_video, init, DecodeOptions};
//! init();
//! let mut frames = 0;
//! let info = decode_video("clip.mp4".as_ref(), &DecodeOptions::default(), |layout, bytes| {
//!     assert_eq!(bytes.len(), layout.frame_bytes());
//!     frames += 1;
//!     Ok(())
//! })?;
//! assert_eq!(frames, info.num_frames);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod decoder;
pub mod ffmpeg_log;
mod picture;
mod probe;
#[cfg(test)]
mod test_videos;
mod timeline;

pub use decoder::decode_video;
pub use probe::{probe, ProbeInfo, StreamInfo};

use std::fmt;
use std::sync::Once;

use cvrl_formats::PixelFormat;
use ffmpeg_next as ff;
use serde::Serialize;

/// The short side stored frames get unless told otherwise (Kinetics practice).
pub const DEFAULT_SHORT_SIDE: u32 = 256;

/// What to make of a video.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeOptions {
    /// Short side of stored frames after rotation (default 256); `None` keeps the size.
    pub short_side: Option<u32>,
    /// Output frame rate; `None` is the source's average frame rate.
    pub fps: Option<f64>,
    pub pixel_format: PixelFormat,
    /// Seconds from the start of the video: keep output frames with `start <= t < end`.
    pub trim: Option<(f64, f64)>,
    /// Stop after this many output frames.
    pub max_frames: Option<u32>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            short_side: Some(DEFAULT_SHORT_SIDE),
            fps: None,
            pixel_format: PixelFormat::Yuv420p,
            trim: None,
            max_frames: None,
        }
    }
}

/// What [`decode_video`] produced and what it decoded it from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VideoInfo {
    /// Size of the stored frames (after rotation and scaling).
    pub width: u32,
    pub height: u32,
    /// Output frame rate, `fps_num / fps_den` frames per second.
    pub fps_num: u32,
    pub fps_den: u32,
    /// Frames handed to the callback.
    pub num_frames: u32,
    /// Duration of the frames handed over: `num_frames * fps_den / fps_num`.
    pub duration_s: f64,
    /// Coded size of the source pictures (before rotation).
    pub source_width: u32,
    pub source_height: u32,
    /// FFmpeg's codec name, e.g. `h264`.
    pub source_codec: String,
    /// Clockwise quarter turns applied to show pictures upright: 0, 90, 180 or 270.
    pub rotation_deg: i32,
    /// The stream's average frame rate.
    pub source_fps: f64,
    /// Whether the intervals between decoded frames varied (more than timestamp rounding).
    pub variable_frame_rate: bool,
}

/// Where decoding failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The file could not be read or is not a container FFmpeg knows.
    Open,
    /// No usable video stream, no decoder for its codec, or unusable options.
    Probe,
    /// Reading or decoding packets failed, or the data ends early.
    Decode,
    /// The frames cannot be converted to the requested size or format.
    Scale,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Open => "open",
            Stage::Probe => "probe",
            Stage::Decode => "decode",
            Stage::Scale => "scale",
        })
    }
}

/// Why a video could not be decoded. The message is meant for people ("no video stream",
/// "truncated or corrupt data at 1.2 s: ..."); the caller adds the path.
///
/// An error returned by the frame callback ends decoding as [`Stage::Decode`] with a message
/// starting "frame callback failed"; callers that must tell their own failures apart from
/// bad videos record them in the closure (as the shard builder does).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{stage}: {message}")]
pub struct DecodeError {
    pub stage: Stage,
    pub message: String,
}

impl DecodeError {
    fn new(stage: Stage, message: impl Into<String>) -> Self {
        DecodeError { stage, message: message.into() }
    }

    /// This error with what FFmpeg said about the file appended ([`ffmpeg_log::fold`]).
    fn with_ffmpeg_log(self, said: &ffmpeg_log::Said) -> Self {
        DecodeError { message: ffmpeg_log::fold(&self.message, said), ..self }
    }
}

/// Initialises FFmpeg once: errors only, and its log goes to [`ffmpeg_log`] (silent; each
/// decode keeps the lines of its file) instead of stderr. Safe to call from many threads;
/// [`decode_video`] and [`probe`] call it themselves.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // With FFmpeg >= 4 there is nothing to register; init only sets up error strings.
        let _ = ff::init();
        ff::log::set_level(ff::log::Level::Error);
        ffmpeg_log::install();
    });
}
