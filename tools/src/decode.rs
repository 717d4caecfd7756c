//! Decoding one video file into constant-rate, packed frames: the only place cvrl talks to
//! FFmpeg's decoders (through `ffmpeg-next`).
//!
//! [`decode_video`] opens a file, decodes its best video stream and hands each output frame
//! to a callback as packed planes ([`FrameLayout`]: no row padding), so the shard writer
//! never sees FFmpeg's strides, formats or timestamps. [`probe`] describes a file without
//! decoding it (`cvrl-inspect video.mp4`).
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
//!
//! # Threads
//! Each decoder runs on one thread. The caller decodes many videos at once with rayon (one
//! per core); FFmpeg's default of one frame thread per core on top would run cores²
//! threads, each frame thread holding its own copy of the decoder state and reference
//! frames, for no gain in throughput.
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

use std::fmt;
use std::ops::Range;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::Once;

use cvrl_formats::{FrameLayout, PixelFormat};
use ff::codec::threading;
use ff::ffi;
use ff::format::Pixel;
use ff::frame::Video as VideoFrame;
use ff::software::scaling;
use ff::Rescale;
use ffmpeg_next as ff;
use serde::Serialize;

/// The short side stored frames get unless told otherwise (Kinetics practice).
pub const DEFAULT_SHORT_SIDE: u32 = 256;

/// Decoded output must reach this share of the container's duration, else the file is
/// reported as truncated.
const MIN_DECODED_SHARE: f64 = 0.9;

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
}

/// A container and its streams, as [`probe`] finds them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProbeInfo {
    /// FFmpeg's demuxer name, e.g. `mov,mp4,m4a,3gp,3g2,mj2`.
    pub container: String,
    pub container_long_name: String,
    pub duration_s: Option<f64>,
    pub bit_rate: Option<u64>,
    pub streams: Vec<StreamInfo>,
}

/// One stream of a container.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StreamInfo {
    pub index: usize,
    /// `video`, `audio`, `subtitle`, `data`, `attachment` or `unknown`.
    pub kind: String,
    pub codec: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub pixel_format: Option<String>,
    /// Average frame rate of a video stream.
    pub fps: Option<f64>,
    /// Clockwise quarter turns a player applies (video streams).
    pub rotation_deg: Option<i32>,
    /// Frame (or packet) count, when the container states it.
    pub num_frames: Option<u64>,
    pub duration_s: Option<f64>,
    /// A still picture (cover art) stored as a video stream.
    pub cover_art: bool,
}

impl fmt::Display for ProbeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "container: {} ({})", self.container, self.container_long_name)?;
        if let Some(d) = self.duration_s {
            write!(f, ", {d:.2} s")?;
        }
        if let Some(b) = self.bit_rate {
            write!(f, ", {} kb/s", b / 1000)?;
        }
        writeln!(f)?;
        for s in &self.streams {
            write!(f, "stream {}: {} {}", s.index, s.kind, s.codec)?;
            if let (Some(w), Some(h)) = (s.width, s.height) {
                write!(f, " {w}x{h}")?;
            }
            if let Some(p) = &s.pixel_format {
                write!(f, " {p}")?;
            }
            if let Some(fps) = s.fps {
                write!(f, " {fps:.3} fps")?;
            }
            if let Some(n) = s.num_frames {
                write!(f, ", {n} frames")?;
            }
            if let Some(d) = s.duration_s {
                write!(f, ", {d:.2} s")?;
            }
            if let Some(r) = s.rotation_deg.filter(|&r| r != 0) {
                write!(f, ", rotated {r} degrees")?;
            }
            if s.cover_art {
                write!(f, ", cover art")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Initialises FFmpeg once and makes it quiet (errors only). Safe to call from many threads;
/// [`decode_video`] and [`probe`] call it themselves.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // With FFmpeg >= 4 there is nothing to register; init only sets up error strings.
        let _ = ff::init();
        ff::log::set_level(ff::log::Level::Error);
    });
}

/// Describes the container and streams of `path` without decoding.
pub fn probe(path: &Path) -> Result<ProbeInfo, DecodeError> {
    init();
    let input = open(path)?;
    let format = input.format();
    let streams = input
        .streams()
        .map(|s| {
            let params = s.parameters();
            let kind = match params.medium() {
                ff::media::Type::Video => "video",
                ff::media::Type::Audio => "audio",
                ff::media::Type::Subtitle => "subtitle",
                ff::media::Type::Data => "data",
                ff::media::Type::Attachment => "attachment",
                _ => "unknown",
            };
            let video = params.medium() == ff::media::Type::Video;
            // SAFETY: codecpar is owned by `input`, which outlives this closure.
            let (width, height, format) = unsafe {
                let p = params.as_ptr();
                ((*p).width, (*p).height, (*p).format)
            };
            let size = |v: c_int| (video && v > 0).then_some(v as u32);
            StreamInfo {
                index: s.index(),
                kind: kind.to_string(),
                codec: params.id().name().to_string(),
                width: size(width),
                height: size(height),
                pixel_format: if video { pixel_format_name(format) } else { None },
                fps: if video { rational_f64(s.avg_frame_rate()) } else { None },
                rotation_deg: video.then(|| quarter_turns(&s).degrees()),
                num_frames: u64::try_from(s.frames()).ok().filter(|&n| n > 0),
                duration_s: ticks_seconds(s.duration(), s.time_base()),
                cover_art: s.disposition().contains(ff::format::stream::Disposition::ATTACHED_PIC),
            }
        })
        .collect();
    let duration = input.duration();
    Ok(ProbeInfo {
        container: format.name().to_string(),
        container_long_name: format.description().to_string(),
        duration_s: (duration != ffi::AV_NOPTS_VALUE && duration > 0)
            .then(|| duration as f64 / f64::from(ffi::AV_TIME_BASE)),
        bit_rate: u64::try_from(input.bit_rate()).ok().filter(|&b| b > 0),
        streams,
    })
}

/// Decodes `path`, calling `on_frame(layout, frame_bytes)` for each output frame (packed
/// planes, exactly `layout.frame_bytes()` long), in order. Returns the info at the end.
/// See the module documentation for the timing, geometry and error rules.
///
/// Frames are handed over as they are decoded, so an `Err` can follow some calls of
/// `on_frame`: those frames belong to a video that failed and should be dropped.
pub fn decode_video(
    path: &Path,
    opts: &DecodeOptions,
    on_frame: impl FnMut(&FrameLayout, &[u8]) -> anyhow::Result<()>,
) -> Result<VideoInfo, DecodeError> {
    init();
    let window = OutputWindow::from_options(opts)?;
    let mut input = open(path)?;

    // Probe: pick the stream, find its decoder, work out the clock.
    let stream = input
        .streams()
        .best(ff::media::Type::Video)
        .ok_or_else(|| DecodeError::new(Stage::Probe, "no video stream"))?;
    if stream.disposition().contains(ff::format::stream::Disposition::ATTACHED_PIC) {
        return Err(DecodeError::new(Stage::Probe, "no video stream (only a cover picture)"));
    }
    let stream_index = stream.index();
    let time_base = stream.time_base();
    if time_base.numerator() <= 0 || time_base.denominator() <= 0 {
        return Err(DecodeError::new(Stage::Probe, "the video stream has no time base"));
    }
    let codec_id = stream.parameters().id();
    let codec_name = codec_id.name().to_string();
    let rotation = quarter_turns(&stream);
    let source_rate = [stream.avg_frame_rate(), stream.rate()]
        .into_iter()
        .find(|r| r.numerator() > 0 && r.denominator() > 0)
        .ok_or_else(|| DecodeError::new(Stage::Probe, "the video stream has no frame rate"))?;
    let output_rate = match opts.fps {
        Some(fps) => fps_rational(fps)?,
        None => source_rate,
    };
    let declared_ticks = [stream.duration()]
        .into_iter()
        .find(|&d| d > 0 && d != ffi::AV_NOPTS_VALUE)
        .or_else(|| {
            let d = input.duration();
            (d > 0 && d != ffi::AV_NOPTS_VALUE)
                .then(|| d.rescale(ff::rescale::TIME_BASE, time_base))
        });
    let start = stream.start_time();
    let origin = (start != ffi::AV_NOPTS_VALUE).then_some(start);

    let mut context = ff::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| DecodeError::new(Stage::Probe, format!("bad codec parameters: {e}")))?;
    // One thread per decoder: the caller already runs one decode per core (module doc).
    context.set_threading(threading::Config {
        kind: threading::Type::Frame,
        count: 1,
        ..Default::default()
    });
    let mut decoder = context.decoder();
    decoder.set_packet_time_base(time_base);
    let mut decoder = decoder.video().map_err(|e| match e {
        ff::Error::DecoderNotFound => DecodeError::new(
            Stage::Probe,
            format!("unsupported codec {codec_name}: this FFmpeg has no decoder for it"),
        ),
        e => DecodeError::new(Stage::Probe, format!("cannot open the {codec_name} decoder: {e}")),
    })?;
    let (source_width, source_height) = (decoder.width(), decoder.height());

    let clock = Clock::new(time_base, output_rate)?;
    let timeline = Timeline::new(clock, &window);

    // Seek near the trim start instead of decoding everything before it; the key frame
    // before it is decoded too, so the first kept output still has its latest frame.
    let mut seeked_to = None;
    if let (Some(first), Some(origin)) = (window.first_time(&clock), origin) {
        if first > 0.0 {
            let target = origin.rescale(time_base, ff::rescale::TIME_BASE)
                + (first * f64::from(ffi::AV_TIME_BASE)) as i64;
            // A failed seek only costs time: decoding from the start gives the same frames.
            if input.seek(target, ..target).is_ok() {
                decoder.flush();
                seeked_to = Some((first / rational_f64(time_base).unwrap_or(1.0)) as i64);
            }
        }
    }

    let mut frames = Frames {
        sink: Sink::new(opts, rotation, on_frame),
        state: DecodeState {
            origin,
            last_rel: None,
            nominal: frame_ticks(time_base, source_rate),
            vfr: IntervalStats::default(),
        },
        timeline,
        time_base,
        held: VideoFrame::empty(),
        incoming: VideoFrame::empty(),
        have_held: false,
        held_end: 0,
        stopped: false,
        seeked_to,
        // The declared duration with room for rounding and a long last frame.
        max_slots: declared_ticks.map(|d| {
            let declared_s = d as f64 * rational_f64(time_base).unwrap_or(0.0);
            ((declared_s * 1.5 + 2.0) * clock.fps()).ceil() as u64
        }),
    };
    while !frames.stopped {
        let mut packet = ff::Packet::empty();
        match packet.read(&mut input) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(ff::Error::Other { errno }) if errno == ff::error::EAGAIN => continue,
            Err(e) => return Err(frames.damaged(None, &e.to_string())),
        }
        if packet.stream() != stream_index {
            continue;
        }
        if let Err(e) = decoder.send_packet(&packet) {
            return Err(frames.damaged(packet.pts().or(packet.dts()), &e.to_string()));
        }
        frames.receive(&mut decoder)?;
    }
    if !frames.stopped {
        // Drain the frames the decoder still holds back (reordering delay).
        let _ = decoder.send_eof();
        frames.receive(&mut decoder)?;
    }
    if !frames.have_held {
        return Err(DecodeError::new(Stage::Decode, "no frame could be decoded"));
    }
    if !frames.stopped {
        frames.finish()?;
        // A file that stops well before the duration its container declares was cut off.
        if let Some(declared) = declared_ticks {
            let tb = rational_f64(time_base).unwrap_or(0.0);
            let decoded = frames.held_end as f64 * tb;
            let declared = declared as f64 * tb;
            let expected = window.end_time(&clock).map_or(declared, |end| declared.min(end));
            if decoded < MIN_DECODED_SHARE * expected {
                return Err(DecodeError::new(
                    Stage::Decode,
                    format!(
                        "truncated or corrupt data at {decoded:.1} s: frames end there, but the \
                         container declares {declared:.1} s"
                    ),
                ));
            }
        }
    }
    let variable_frame_rate = frames.state.vfr.is_variable();
    let sink = frames.sink;
    let Some(layout) = sink.layout() else {
        return Err(DecodeError::new(
            Stage::Decode,
            "no output frame: the trim window lies outside the decoded video",
        ));
    };
    let num_frames = sink.emitted;
    let (fps_num, fps_den) = (clock.fps_num as u32, clock.fps_den as u32);
    Ok(VideoInfo {
        width: layout.width(),
        height: layout.height(),
        fps_num,
        fps_den,
        num_frames,
        duration_s: f64::from(num_frames) * f64::from(fps_den) / f64::from(fps_num),
        source_width,
        source_height,
        source_codec: codec_name,
        rotation_deg: rotation.degrees(),
        source_fps: rational_f64(source_rate).unwrap_or(0.0),
        variable_frame_rate,
    })
}

/// The decode loop's state: the held frame and where its output slots are.
struct Frames<F> {
    sink: Sink<F>,
    state: DecodeState,
    timeline: Timeline,
    time_base: ff::Rational,
    /// The latest decoded frame, waiting for the next one to know its slots.
    held: VideoFrame,
    /// Where the decoder writes; swapped with `held`, so no frame is allocated per picture.
    incoming: VideoFrame,
    have_held: bool,
    /// End of the held frame (its time plus duration), ticks after the origin.
    held_end: i64,
    /// Every output slot is filled: decoding can stop.
    stopped: bool,
    /// Start of the trim window in ticks, when decoding began with a seek there.
    seeked_to: Option<i64>,
    /// Output slots past this are an error: a timestamp jump (a discontinuity, a wrong
    /// header) must not turn a 10 s clip into hours of repeated frames.
    max_slots: Option<u64>,
}

impl<F: FnMut(&FrameLayout, &[u8]) -> anyhow::Result<()>> Frames<F> {
    /// Takes every frame the decoder has ready.
    fn receive(&mut self, decoder: &mut ff::decoder::Video) -> Result<(), DecodeError> {
        while !self.stopped {
            match decoder.receive_frame(&mut self.incoming) {
                Ok(()) => {}
                Err(ff::Error::Eof) => return Ok(()),
                Err(ff::Error::Other { errno }) if errno == ff::error::EAGAIN => return Ok(()),
                Err(e) => return Err(self.damaged(None, &e.to_string())),
            }
            let ts = self.incoming.timestamp();
            if self.incoming.is_corrupt() || self.incoming.has_decode_errors() {
                // Pictures before the window of a seek may miss references the seek skipped
                // (open GOPs); they are never shown, so they are not the file's fault.
                let origin = self.state.origin.unwrap_or(0);
                if self.seeked_to.zip(ts).is_some_and(|(start, t)| t - origin < start) {
                    continue;
                }
                return Err(self.damaged(ts, "the decoder had to conceal damaged pictures"));
            }
            if self.incoming.width() == 0 || self.incoming.height() == 0 {
                return Err(self.damaged(ts, "the decoder returned an empty picture"));
            }
            let rel = self.state.place(ts);
            if self.have_held {
                let slots = self.timeline.advance(rel);
                self.check_slots(&slots, ts)?;
                self.sink.emit(&self.held, slots)?;
            }
            std::mem::swap(&mut self.held, &mut self.incoming);
            self.have_held = true;
            self.sink.new_frame();
            self.held_end = rel + frame_duration(&self.held, &self.state);
            self.stopped = self.timeline.done();
        }
        Ok(())
    }

    /// The stream ended: the held frame fills the slots up to its end.
    fn finish(&mut self) -> Result<(), DecodeError> {
        let slots = self.timeline.finish(self.held_end);
        self.check_slots(&slots, None)?;
        self.sink.emit(&self.held, slots)
    }

    fn check_slots(&self, slots: &Range<u64>, ts: Option<i64>) -> Result<(), DecodeError> {
        match self.max_slots {
            Some(max) if slots.end > max => {
                Err(self
                    .damaged(ts, "timestamps jump far past the duration the container declares"))
            }
            _ => Ok(()),
        }
    }

    /// A [`Stage::Decode`] error at stream time `ts` (else at the end of what was decoded).
    fn damaged(&self, ts: Option<i64>, why: &str) -> DecodeError {
        let rel = match ts {
            Some(t) => t - self.state.origin.unwrap_or(0),
            None => self.held_end,
        };
        let at = rel as f64 * rational_f64(self.time_base).unwrap_or(0.0);
        DecodeError::new(Stage::Decode, format!("truncated or corrupt data at {at:.1} s: {why}"))
    }
}

/// Opens and reads the stream headers (`avformat_open_input` + `avformat_find_stream_info`).
fn open(path: &Path) -> Result<ff::format::context::Input, DecodeError> {
    match std::fs::metadata(path) {
        Err(e) => return Err(DecodeError::new(Stage::Open, format!("cannot read the file: {e}"))),
        Ok(m) if m.is_dir() => {
            return Err(DecodeError::new(Stage::Open, "is a folder, not a file"))
        }
        Ok(m) if m.len() == 0 => return Err(DecodeError::new(Stage::Open, "the file is empty")),
        Ok(_) => {}
    }
    ff::format::input(path).map_err(|e| {
        let why = match e {
            ff::Error::InvalidData => {
                "not a video FFmpeg can read (unknown, damaged or truncated container)".to_string()
            }
            e => e.to_string(),
        };
        DecodeError::new(Stage::Open, why)
    })
}

/// How long `frame` lasts, in stream ticks: its packet duration, else the last interval
/// between frames, else one nominal frame.
fn frame_duration(frame: &VideoFrame, state: &DecodeState) -> i64 {
    let d = frame.packet().duration;
    if d > 0 {
        d
    } else {
        state.vfr.last.filter(|&i| i > 0).unwrap_or(state.nominal)
    }
}

/// Per-stream bookkeeping of frame times.
struct DecodeState {
    /// Stream start time; `None` until known (then the first frame's time).
    origin: Option<i64>,
    /// Time of the previous frame, ticks after `origin`.
    last_rel: Option<i64>,
    /// One frame at the source rate, in ticks (for frames without a timestamp).
    nominal: i64,
    vfr: IntervalStats,
}

impl DecodeState {
    /// The time of a decoded frame in ticks after the origin, made monotonic.
    fn place(&mut self, ts: Option<i64>) -> i64 {
        let rel = match (ts, self.last_rel) {
            (Some(t), last) => {
                let origin = *self.origin.get_or_insert(t);
                let rel = t.saturating_sub(origin).max(0);
                last.map_or(rel, |l| rel.max(l))
            }
            (None, Some(l)) => l + self.nominal,
            (None, None) => 0,
        };
        if let Some(l) = self.last_rel {
            self.vfr.add(rel - l);
        }
        self.last_rel = Some(rel);
        rel
    }
}

/// Smallest and largest interval between consecutive frames, to tell VFR from CFR.
#[derive(Default)]
struct IntervalStats {
    min: Option<i64>,
    max: Option<i64>,
    last: Option<i64>,
}

impl IntervalStats {
    fn add(&mut self, interval: i64) {
        // Equal timestamps (clamped, out-of-order frames) say nothing about the rate.
        if interval <= 0 {
            return;
        }
        self.min = Some(self.min.map_or(interval, |m| m.min(interval)));
        self.max = Some(self.max.map_or(interval, |m| m.max(interval)));
        self.last = Some(interval);
    }

    /// Constant-rate streams in a coarse time base still alternate between two tick counts
    /// (30000/1001 fps in milliseconds: 33, 33, 34), so one tick plus 5% is not a change.
    fn is_variable(&self) -> bool {
        match (self.min, self.max) {
            (Some(min), Some(max)) => (max - min) as f64 > 1.0 + 0.05 * min as f64,
            _ => false,
        }
    }
}

/// Exact comparison of stream times with output times.
#[derive(Clone, Copy, Debug)]
struct Clock {
    tb_num: i128,
    tb_den: i128,
    fps_num: i128,
    fps_den: i128,
}

impl Clock {
    fn new(tb: ff::Rational, fps: ff::Rational) -> Result<Self, DecodeError> {
        let (fps_num, fps_den) = (fps.numerator(), fps.denominator());
        if fps_num <= 0 || fps_den <= 0 {
            return Err(DecodeError::new(
                Stage::Probe,
                format!("invalid frame rate {fps_num}/{fps_den}"),
            ));
        }
        Ok(Clock {
            tb_num: i128::from(tb.numerator()),
            tb_den: i128::from(tb.denominator()),
            fps_num: i128::from(fps_num),
            fps_den: i128::from(fps_den),
        })
    }

    /// Does output slot `k` come before a frame at stream time `ticks`, i.e. is
    /// `t_k + tolerance < ticks`? The tolerance, one tick but at most a quarter of an output
    /// frame, absorbs timestamps rounded to their time base: matroska stores milliseconds,
    /// so a 30000/1001 fps frame due at 66.73 ms is stamped 67 ms and must still fill slot 2.
    fn slot_before(&self, k: u64, ticks: i64) -> bool {
        // In units of 1 / (4 * fps_num * tb_den) seconds everything is an integer.
        let slot = 4 * i128::from(k) * self.fps_den * self.tb_den;
        let tick = 4 * self.tb_num * self.fps_num;
        let quarter_frame = self.fps_den * self.tb_den;
        slot + tick.min(quarter_frame) < i128::from(ticks) * tick
    }

    fn fps(&self) -> f64 {
        self.fps_num as f64 / self.fps_den as f64
    }
}

/// The output slots `[first, end)` that `trim` and `max_frames` keep, in frame numbers.
#[derive(Clone, Copy, Debug)]
struct OutputWindow {
    trim: Option<(f64, f64)>,
    max_frames: Option<u32>,
}

impl OutputWindow {
    fn from_options(opts: &DecodeOptions) -> Result<Self, DecodeError> {
        if let Some((a, b)) = opts.trim {
            if !(a.is_finite() && b.is_finite() && a >= 0.0 && b > a) {
                return Err(DecodeError::new(
                    Stage::Probe,
                    format!("invalid trim window {a}..{b} s (need 0 <= start < end)"),
                ));
            }
        }
        if opts.short_side == Some(0) {
            return Err(DecodeError::new(
                Stage::Probe,
                "invalid short side 0 (use None to keep the size)",
            ));
        }
        Ok(OutputWindow { trim: opts.trim, max_frames: opts.max_frames })
    }

    /// Smallest `k` with `k / fps >= t`. The tolerance absorbs `t` itself having been
    /// computed as `k / fps` in floating point.
    fn first_slot_at(clock: &Clock, t: f64) -> u64 {
        let k = t * clock.fps() - 1e-6;
        if k <= 0.0 {
            0
        } else {
            k.ceil() as u64
        }
    }

    fn slots(&self, clock: &Clock) -> Range<u64> {
        let (first, end) = match self.trim {
            Some((a, b)) => (Self::first_slot_at(clock, a), Self::first_slot_at(clock, b)),
            None => (0, u64::MAX),
        };
        let end = match self.max_frames {
            Some(n) => end.min(first.saturating_add(u64::from(n))),
            None => end,
        };
        first..end.max(first)
    }

    fn first_time(&self, clock: &Clock) -> Option<f64> {
        self.trim.map(|_| self.slots(clock).start as f64 / clock.fps())
    }

    fn end_time(&self, clock: &Clock) -> Option<f64> {
        self.trim
            .map(|(_, b)| b)
            .or_else(|| self.max_frames.map(|_| self.slots(clock).end as f64 / clock.fps()))
    }
}

/// Which output slots each decoded frame fills (the resampling rule of the module doc).
#[derive(Debug)]
struct Timeline {
    clock: Clock,
    next: u64,
    end: u64,
}

impl Timeline {
    fn new(clock: Clock, window: &OutputWindow) -> Self {
        let slots = window.slots(&clock);
        Timeline { clock, next: slots.start, end: slots.end }
    }

    /// A frame at `ticks` arrived: the previous frame fills every open slot before it.
    fn advance(&mut self, ticks: i64) -> Range<u64> {
        let start = self.next;
        while self.next < self.end && self.clock.slot_before(self.next, ticks) {
            self.next += 1;
        }
        start..self.next
    }

    /// The stream ended at `end_ticks`: the last frame fills every open slot before it.
    fn finish(&mut self, end_ticks: i64) -> Range<u64> {
        self.advance(end_ticks)
    }

    fn done(&self) -> bool {
        self.next >= self.end
    }
}

/// Quarter turns (clockwise) that show a stream's pictures upright.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rotation {
    None,
    Cw90,
    Cw180,
    Cw270,
}

impl Rotation {
    fn degrees(self) -> i32 {
        match self {
            Rotation::None => 0,
            Rotation::Cw90 => 90,
            Rotation::Cw180 => 180,
            Rotation::Cw270 => 270,
        }
    }

    fn swaps_sides(self) -> bool {
        matches!(self, Rotation::Cw90 | Rotation::Cw270)
    }

    /// From `av_display_rotation_get` (counter-clockwise degrees), as the CLI does:
    /// theta = -angle, wrapped into [0, 360), then the nearest quarter turn.
    fn from_display_angle(ccw: f64) -> Self {
        if !ccw.is_finite() {
            return Rotation::None;
        }
        let theta = (-ccw.round()).rem_euclid(360.0);
        match ((theta / 90.0).round() as i64).rem_euclid(4) {
            1 => Rotation::Cw90,
            2 => Rotation::Cw180,
            3 => Rotation::Cw270,
            _ => Rotation::None,
        }
    }
}

/// Reads the stream's display matrix (mp4 `tkhd`, or the legacy `rotate` tag).
fn quarter_turns(stream: &ff::Stream<'_>) -> Rotation {
    for side in stream.side_data() {
        if side.kind() != ff::codec::packet::side_data::Type::DisplayMatrix {
            continue;
        }
        let data = side.data();
        if data.len() < 36 {
            continue;
        }
        let mut matrix = [0i32; 9];
        for (m, b) in matrix.iter_mut().zip(data.chunks_exact(4)) {
            *m = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        }
        // SAFETY: reads exactly the nine i32 of our own aligned array.
        let ccw = unsafe { ffi::av_display_rotation_get(matrix.as_ptr()) };
        return Rotation::from_display_angle(ccw);
    }
    Rotation::None
}

/// Output geometry, fixed by the first decoded picture.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    layout: FrameLayout,
    format: Pixel,
}

/// Stored size for a picture shown as `shown_w x shown_h` (see the module doc).
fn output_size(shown: (u32, u32), short_side: Option<u32>, format: PixelFormat) -> (u32, u32) {
    let even = format == PixelFormat::Yuv420p;
    let (w, h) = shown;
    match short_side {
        None if even => (w & !1, h & !1),
        None => (w, h),
        Some(s) => {
            let round = |x: f64| {
                if even {
                    ((x / 2.0).round() * 2.0).max(2.0) as u32
                } else {
                    x.round().max(1.0) as u32
                }
            };
            let (short, long) = (w.min(h) as f64, w.max(h) as f64);
            let long = round(long * f64::from(s) / short.max(1.0));
            let short = round(f64::from(s));
            if w <= h {
                (short, long)
            } else {
                (long, short)
            }
        }
    }
}

/// A swscale context and the source it was made for (format, width, height).
type Scaler = Option<(scaling::Context, (Pixel, u32, u32))>;

/// Turns decoded pictures into packed output frames and hands them to the callback.
/// Every buffer here is allocated for the first frame and reused for the rest.
struct Sink<F> {
    short_side: Option<u32>,
    format: PixelFormat,
    rotation: Rotation,
    callback: F,
    geometry: Option<Geometry>,
    /// Source format to 4:4:4, for turning pictures that are not 4:2:0.
    widen: Scaler,
    widened: VideoFrame,
    /// The picture turned upright, before scaling.
    turned: VideoFrame,
    scaler: Scaler,
    scaled: VideoFrame,
    /// The packed output frame.
    buf: Vec<u8>,
    /// Whether `buf` holds the currently held frame already (repeated output slots).
    converted: bool,
    emitted: u32,
}

impl<F: FnMut(&FrameLayout, &[u8]) -> anyhow::Result<()>> Sink<F> {
    fn new(opts: &DecodeOptions, rotation: Rotation, callback: F) -> Self {
        Sink {
            short_side: opts.short_side,
            format: opts.pixel_format,
            rotation,
            callback,
            geometry: None,
            widen: None,
            widened: VideoFrame::empty(),
            turned: VideoFrame::empty(),
            scaler: None,
            scaled: VideoFrame::empty(),
            buf: Vec::new(),
            converted: false,
            emitted: 0,
        }
    }

    fn layout(&self) -> Option<FrameLayout> {
        (self.emitted > 0).then(|| self.geometry.map(|g| g.layout)).flatten()
    }

    fn new_frame(&mut self) {
        self.converted = false;
    }

    /// Hands `frame` to the callback once per slot.
    fn emit(&mut self, frame: &VideoFrame, slots: Range<u64>) -> Result<(), DecodeError> {
        for _ in slots {
            if !self.converted {
                self.convert(frame)?;
                self.converted = true;
            }
            let layout = self.geometry.expect("set by convert").layout;
            (self.callback)(&layout, &self.buf).map_err(|e| {
                DecodeError::new(Stage::Decode, format!("frame callback failed: {e:#}"))
            })?;
            self.emitted += 1;
        }
        Ok(())
    }

    fn geometry(&mut self, frame: &VideoFrame) -> Result<Geometry, DecodeError> {
        if let Some(g) = self.geometry {
            return Ok(g);
        }
        let (fw, fh) = (frame.width(), frame.height());
        let shown = if self.rotation.swaps_sides() { (fh, fw) } else { (fw, fh) };
        let (w, h) = output_size(shown, self.short_side, self.format);
        let layout = FrameLayout::new(w, h, self.format).map_err(|e| {
            DecodeError::new(Stage::Scale, format!("cannot store {fw}x{fh} pictures: {e}"))
        })?;
        let format = match self.format {
            PixelFormat::Yuv420p => Pixel::YUV420P,
            PixelFormat::Rgb24 => Pixel::RGB24,
        };
        let g = Geometry { layout, format };
        self.buf = vec![0; layout.frame_bytes()];
        self.geometry = Some(g);
        Ok(g)
    }

    /// Turns, scales (or crops) `frame` and packs it into `buf`.
    fn convert(&mut self, frame: &VideoFrame) -> Result<(), DecodeError> {
        let g = self.geometry(frame)?;
        let Sink { short_side, rotation, widen, widened, turned, scaler, scaled, buf, .. } = self;
        // Turn first, as the CLI does: turning 4:2:0 is exact, and scaling the upright
        // picture puts rounding and chroma interpolation where the CLI puts them.
        let src = if *rotation == Rotation::None {
            frame
        } else {
            turn(frame, *rotation, widen, widened, turned)?;
            &*turned
        };
        let (fw, fh) = (src.width(), src.height());
        let (ow, oh) = (g.layout.width(), g.layout.height());
        // Without a target size, an odd side loses its last row or column (module doc).
        let crop = short_side.is_none() && fw >= ow && fh >= oh && fw - ow <= 1 && fh - oh <= 1;
        let (cw, ch) = if crop { (ow, oh) } else { (fw, fh) };
        if src.format() == g.format && (cw, ch) == (ow, oh) && positive_strides(src) {
            pack(src, g, buf);
            return Ok(());
        }
        scale(src, (cw, ch), g.format, (ow, oh), scaler, scaled)?;
        pack(scaled, g, buf);
        Ok(())
    }
}

fn positive_strides(frame: &VideoFrame) -> bool {
    // SAFETY: linesize is plain data of a frame the decoder or we filled.
    unsafe { (*frame.as_ptr()).linesize.iter().all(|&l| l >= 0) }
}

/// Scales the top-left `crop` pixels of `src` into `dst` (made `format`, `size` once),
/// with a bicubic swscale context kept in `scaler` while the source stays the same.
fn scale(
    src: &VideoFrame,
    crop: (u32, u32),
    format: Pixel,
    size: (u32, u32),
    scaler: &mut Scaler,
    dst: &mut VideoFrame,
) -> Result<(), DecodeError> {
    let (cw, ch) = crop;
    let (w, h) = size;
    let key = (src.format(), cw, ch);
    if scaler.as_ref().is_none_or(|(_, k)| *k != key) {
        let ctx = scaling::Context::get(key.0, cw, ch, format, w, h, scaling::Flags::BICUBIC)
            .map_err(|_| {
                DecodeError::new(
                    Stage::Scale,
                    format!(
                        "swscale cannot convert {:?} {cw}x{ch} pictures to {format:?} {w}x{h}",
                        key.0
                    ),
                )
            })?;
        *scaler = Some((ctx, key));
    }
    if dst.width() != w || dst.height() != h || dst.format() != format {
        *dst = VideoFrame::new(format, w, h);
        // SAFETY: reading the data pointer of a frame we own.
        if unsafe { (*dst.as_ptr()).data[0].is_null() } {
            return Err(DecodeError::new(Stage::Scale, format!("cannot allocate a {w}x{h} frame")));
        }
    }
    let (ctx, _) = scaler.as_mut().expect("created above");
    // SAFETY: the context was made for this source format and the cropped size, which is at
    // most the frame's size, and `dst` was allocated with the context's output format and
    // size; sws_scale reads `ch` rows through the source frame's own strides.
    let rows = unsafe {
        let s = src.as_ptr();
        let d = dst.as_mut_ptr();
        ffi::sws_scale(
            ctx.as_mut_ptr(),
            (*s).data.as_ptr() as *const *const u8,
            (*s).linesize.as_ptr(),
            0,
            ch as c_int,
            (*d).data.as_ptr(),
            (*d).linesize.as_ptr(),
        )
    };
    if rows != h as c_int {
        return Err(DecodeError::new(Stage::Scale, format!("swscale produced {rows} of {h} rows")));
    }
    Ok(())
}

/// Turns `frame` by `rotation` into `turned`, keeping its 4:2:0 format (the transpose,
/// hflip and vflip the CLI inserts). Other formats are widened to 4:4:4 first, so that
/// every plane turns the same way.
fn turn(
    frame: &VideoFrame,
    rotation: Rotation,
    widen: &mut Scaler,
    widened: &mut VideoFrame,
    turned: &mut VideoFrame,
) -> Result<(), DecodeError> {
    let src =
        if matches!(frame.format(), Pixel::YUV420P | Pixel::YUVJ420P) && positive_strides(frame) {
            frame
        } else {
            let size = (frame.width(), frame.height());
            scale(frame, size, Pixel::YUV444P, size, widen, widened)?;
            &*widened
        };
    let (w, h) = (src.width(), src.height());
    let (tw, th) = if rotation.swaps_sides() { (h, w) } else { (w, h) };
    if turned.width() != tw || turned.height() != th || turned.format() != src.format() {
        *turned = VideoFrame::new(src.format(), tw, th);
        // SAFETY: reading the data pointer of a frame we own.
        if unsafe { (*turned.as_ptr()).data[0].is_null() } {
            return Err(DecodeError::new(
                Stage::Scale,
                format!("cannot allocate a {tw}x{th} frame"),
            ));
        }
    }
    for i in 0..3 {
        let size = (src.plane_width(i) as usize, src.plane_height(i) as usize);
        let stride = turned.stride(i);
        copy_plane(src.data(i), src.stride(i), size, 1, rotation, turned.data_mut(i), stride);
    }
    Ok(())
}

/// Copies the planes of `frame` (its top-left `g.layout` pixels, through its strides) into
/// `out`, packed.
fn pack(frame: &VideoFrame, g: Geometry, out: &mut [u8]) {
    let mut offset = 0;
    for (i, plane) in g.layout.planes().iter().enumerate() {
        let len = plane.len();
        let bpp = if g.layout.format() == PixelFormat::Rgb24 { 3 } else { 1 };
        let size = (plane.width / bpp, plane.height);
        let dst = &mut out[offset..offset + len];
        copy_plane(frame.data(i), frame.stride(i), size, bpp, Rotation::None, dst, plane.width);
        offset += len;
    }
}

/// One plane: `w x h` pixels of `bpp` bytes, rows `stride` apart in `src`, turned by
/// `rotation` into `dst` with rows `dst_stride` apart.
fn copy_plane(
    src: &[u8],
    stride: usize,
    (w, h): (usize, usize),
    bpp: usize,
    rotation: Rotation,
    dst: &mut [u8],
    dst_stride: usize,
) {
    let (out_w, out_h) = if rotation.swaps_sides() { (h, w) } else { (w, h) };
    for y in 0..out_h {
        let d = &mut dst[y * dst_stride..y * dst_stride + out_w * bpp];
        match rotation {
            Rotation::None => d.copy_from_slice(&src[y * stride..y * stride + w * bpp]),
            Rotation::Cw180 => {
                let s = &src[(h - 1 - y) * stride..];
                for (x, px) in d.chunks_exact_mut(bpp).enumerate() {
                    let at = (w - 1 - x) * bpp;
                    px.copy_from_slice(&s[at..at + bpp]);
                }
            }
            // Clockwise, the output's first row is the input's first column read bottom
            // to top: out(x, y) = in(y, h - 1 - x). Counter-clockwise is the mirror image.
            Rotation::Cw90 | Rotation::Cw270 => {
                for (x, px) in d.chunks_exact_mut(bpp).enumerate() {
                    let (sx, sy) =
                        if rotation == Rotation::Cw90 { (y, h - 1 - x) } else { (w - 1 - y, x) };
                    let at = sy * stride + sx * bpp;
                    px.copy_from_slice(&src[at..at + bpp]);
                }
            }
        }
    }
}

/// One frame at `rate`, in ticks of `tb` (at least 1).
fn frame_ticks(tb: ff::Rational, rate: ff::Rational) -> i64 {
    let num = i128::from(rate.denominator()) * i128::from(tb.denominator());
    let den = i128::from(rate.numerator()) * i128::from(tb.numerator());
    i64::try_from(num / den.max(1)).unwrap_or(i64::MAX).max(1)
}

/// `fps` as a rational (29.97 becomes 2997/100, 30000.0/1001.0 becomes 30000/1001).
fn fps_rational(fps: f64) -> Result<ff::Rational, DecodeError> {
    if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) {
        return Err(DecodeError::new(
            Stage::Probe,
            format!("invalid output frame rate {fps} (need 0 < fps <= 1000)"),
        ));
    }
    // SAFETY: a pure function of two numbers.
    let r = unsafe { ffi::av_d2q(fps, 1_000_000) };
    Ok(ff::Rational::new(r.num, r.den))
}

fn rational_f64(r: ff::Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0)
        .then(|| f64::from(r.numerator()) / f64::from(r.denominator()))
}

fn ticks_seconds(ticks: i64, tb: ff::Rational) -> Option<f64> {
    (ticks > 0 && ticks != ffi::AV_NOPTS_VALUE)
        .then(|| ticks as f64 * rational_f64(tb).unwrap_or(0.0))
}

fn pixel_format_name(format: c_int) -> Option<String> {
    // Walk the descriptor table rather than cast the number into the Rust enum, which would
    // be undefined behaviour for a value the bindings do not list.
    let mut desc = std::ptr::null();
    loop {
        // SAFETY: av_pix_fmt_desc_next walks a static table and returns NULL at its end;
        // descriptors and their names are static.
        unsafe {
            desc = ffi::av_pix_fmt_desc_next(desc);
            if desc.is_null() {
                return None;
            }
            if ffi::av_pix_fmt_desc_get_id(desc) as c_int == format && !(*desc).name.is_null() {
                return Some(std::ffi::CStr::from_ptr((*desc).name).to_string_lossy().into_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::sync::OnceLock;

    /// The generated test videos, made once per test process (the script itself skips the
    /// work when an unchanged copy already ran into this folder).
    fn videos() -> &'static Path {
        static DIR: OnceLock<PathBuf> = OnceLock::new();
        DIR.get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
            let out = root.join("target").join("test-videos");
            let status = Command::new("bash")
                .arg(root.join("scripts").join("make-test-videos.sh"))
                .arg(&out)
                .stdout(Stdio::null())
                .status()
                .expect("bash runs");
            assert!(status.success(), "scripts/make-test-videos.sh failed");
            out
        })
    }

    fn video(rel: &str) -> PathBuf {
        videos().join(rel)
    }

    fn decode_all(
        path: &Path,
        opts: &DecodeOptions,
    ) -> Result<(VideoInfo, Vec<Vec<u8>>), DecodeError> {
        let mut frames = Vec::new();
        let info = decode_video(path, opts, |layout, bytes| {
            assert_eq!(bytes.len(), layout.frame_bytes());
            frames.push(bytes.to_vec());
            Ok(())
        })?;
        assert_eq!(info.num_frames as usize, frames.len());
        Ok((info, frames))
    }

    fn keep_size(format: PixelFormat) -> DecodeOptions {
        DecodeOptions { short_side: None, pixel_format: format, ..DecodeOptions::default() }
    }

    /// Raw frames from the ffmpeg CLI (default autorotate; `-vf` filters such as a bicubic
    /// `scale=W:H`), every decoded frame once.
    fn cli_raw(path: &Path, vf: Option<&str>, format: PixelFormat) -> Vec<u8> {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-v", "error", "-nostdin", "-i"]).arg(path);
        if let Some(vf) = vf {
            cmd.args(["-vf", vf]);
        }
        cmd.args(["-fps_mode", "passthrough", "-pix_fmt", format.as_str(), "-f", "rawvideo", "-"]);
        let out = cmd.stderr(Stdio::inherit()).output().expect("ffmpeg runs");
        assert!(out.status.success(), "ffmpeg failed on {}", path.display());
        out.stdout
    }

    fn psnr(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        let se: f64 = a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum();
        if se == 0.0 {
            return f64::INFINITY;
        }
        10.0 * (255.0f64.powi(2) / (se / a.len() as f64)).log10()
    }

    /// Worst per-frame PSNR of our frames against the CLI's, after checking the counts.
    fn worst_psnr_against_cli(frames: &[Vec<u8>], cli: &[u8]) -> f64 {
        let n = frames[0].len();
        assert_eq!(cli.len(), n * frames.len(), "frame count differs from the CLI's");
        frames
            .iter()
            .zip(cli.chunks_exact(n))
            .map(|(a, b)| psnr(a, b))
            .fold(f64::INFINITY, f64::min)
    }

    const H264: &str = "videos/archery/testsrc2_h264.mp4";
    const VP9: &str = "videos/archery/mandelbrot_vp9.webm";
    const MPEG4: &str = "videos/bowling/smptebars_mpeg4.avi";
    const ODD: &str = "videos/bowling/odd_161x97.webm";
    const VFR: &str = "videos/juggling/vfr_15_30.mp4";
    const LONG: &str = "videos/juggling/long_640x360.mp4";

    #[test]
    fn good_files_give_duration_times_fps_frames_of_the_expected_size() {
        use PixelFormat::{Rgb24, Yuv420p};
        let cases: &[(&str, DecodeOptions, (u32, u32), u32)] = &[
            (H264, keep_size(Yuv420p), (160, 120), 50),
            (VP9, keep_size(Yuv420p), (160, 120), 50),
            (MPEG4, keep_size(Yuv420p), (160, 120), 50),
            (ODD, keep_size(Yuv420p), (160, 96), 50),
            (ODD, keep_size(Rgb24), (161, 97), 50),
            ("videos/juggling/rotated_90.mp4", keep_size(Yuv420p), (120, 160), 50),
            ("videos/juggling/rotated_180.mp4", keep_size(Yuv420p), (160, 120), 50),
            (LONG, keep_size(Yuv420p), (640, 360), 100),
            // 640 * 256 / 360 = 455.1, rounded to the nearest even width.
            (LONG, DecodeOptions::default(), (456, 256), 100),
            // Upscaling too: 160 * 256 / 120 = 341.3 -> 342.
            (H264, DecodeOptions::default(), (342, 256), 50),
            (
                ODD,
                DecodeOptions { pixel_format: Rgb24, ..DecodeOptions::default() },
                (425, 256),
                50,
            ),
        ];
        for (rel, opts, (w, h), n) in cases {
            let (info, frames) =
                decode_all(&video(rel), opts).unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert_eq!((info.width, info.height, info.num_frames), (*w, *h, *n), "{rel} {opts:?}");
            assert_eq!((info.fps_num, info.fps_den), (25, 1), "{rel}");
            assert_eq!(info.duration_s, f64::from(*n) / 25.0, "{rel}");
            assert!(!info.variable_frame_rate, "{rel}");
            // Consecutive frames differ: the moving square makes every frame new.
            assert!(frames.windows(2).all(|p| p[0] != p[1]), "{rel}: repeated frames");
        }
    }

    #[test]
    fn constant_rate_files_give_every_frame_once_exactly_as_the_cli_decodes_them() {
        for rel in [H264, VP9, MPEG4] {
            let (_, frames) = decode_all(&video(rel), &keep_size(PixelFormat::Yuv420p)).unwrap();
            let cli = cli_raw(&video(rel), None, PixelFormat::Yuv420p);
            assert_eq!(frames.concat(), cli, "{rel}");
        }
        // An odd size loses its last column and row; in rgb24 it is kept whole.
        let (_, frames) = decode_all(&video(ODD), &keep_size(PixelFormat::Yuv420p)).unwrap();
        assert_eq!(
            frames.concat(),
            cli_raw(&video(ODD), Some("crop=160:96:0:0"), PixelFormat::Yuv420p)
        );
        let (_, frames) = decode_all(&video(ODD), &keep_size(PixelFormat::Rgb24)).unwrap();
        assert_eq!(frames.concat(), cli_raw(&video(ODD), None, PixelFormat::Rgb24));
    }

    #[test]
    fn scaled_frames_match_the_cli_scale_filter() {
        let cases = [
            (LONG, PixelFormat::Yuv420p, (456, 256)),
            (LONG, PixelFormat::Rgb24, (455, 256)),
            (H264, PixelFormat::Yuv420p, (342, 256)),
            (ODD, PixelFormat::Rgb24, (425, 256)),
        ];
        for (rel, format, (w, h)) in cases {
            let opts = DecodeOptions { pixel_format: format, ..DecodeOptions::default() };
            let (info, frames) = decode_all(&video(rel), &opts).unwrap();
            assert_eq!((info.width, info.height), (w, h), "{rel} {format}");
            let cli = cli_raw(&video(rel), Some(&format!("scale={w}:{h}")), format);
            let worst = worst_psnr_against_cli(&frames, &cli);
            eprintln!(
                "{rel} {format} {w}x{h}: worst frame PSNR vs ffmpeg -vf scale: {worst:.1} dB"
            );
            assert!(worst > 50.0, "{rel} {format}: PSNR {worst:.1} dB");
        }
    }

    #[test]
    fn rotated_files_come_out_as_the_cli_autorotates_them() {
        for (deg, turned, size) in
            [(90, 270, (120, 160)), (180, 180, (160, 120)), (270, 90, (120, 160))]
        {
            let path = video(&format!("videos/juggling/rotated_{deg}.mp4"));
            let (info, frames) = decode_all(&path, &keep_size(PixelFormat::Yuv420p)).unwrap();
            assert_eq!(info.rotation_deg, turned, "rotate={deg}");
            assert_eq!((info.width, info.height), size, "rotate={deg}");
            assert_eq!((info.source_width, info.source_height), (160, 120));
            let cli = cli_raw(&path, None, PixelFormat::Yuv420p);
            assert_eq!(frames.concat(), cli, "rotate={deg}: differs from the CLI's autorotate");
            // Scaled, we turn after scaling and the CLI before: equal up to rounding.
            for format in [PixelFormat::Yuv420p, PixelFormat::Rgb24] {
                let opts = DecodeOptions {
                    short_side: Some(96),
                    pixel_format: format,
                    ..DecodeOptions::default()
                };
                let (info, frames) = decode_all(&path, &opts).unwrap();
                let (w, h) = (info.width, info.height);
                assert_eq!(w.min(h), 96);
                let cli = cli_raw(&path, Some(&format!("scale={w}:{h}")), format);
                let worst = worst_psnr_against_cli(&frames, &cli);
                eprintln!("rotate={deg} {format} {w}x{h}: worst frame PSNR vs CLI: {worst:.1} dB");
                assert!(worst > 50.0, "rotate={deg} {format}: PSNR {worst:.1} dB");
            }
        }
    }

    #[test]
    fn variable_rate_is_resampled_to_constant_rate() {
        let path = video(VFR);
        // The 45 source frames, in order: 15 at 15 fps, then 30 at 30 fps.
        let source = cli_raw(&path, None, PixelFormat::Yuv420p);
        let n = 160 * 120 * 3 / 2;
        let source: Vec<&[u8]> = source.chunks_exact(n).collect();
        assert_eq!(source.len(), 45);

        // At 30 fps the first second shows each frame twice, the second each frame once.
        let opts = DecodeOptions { fps: Some(30.0), ..keep_size(PixelFormat::Yuv420p) };
        let (info, frames) = decode_all(&path, &opts).unwrap();
        assert!(info.variable_frame_rate);
        assert_eq!((info.fps_num, info.fps_den, info.num_frames), (30, 1, 60));
        for (k, f) in frames.iter().enumerate() {
            let want = if k < 30 { k / 2 } else { k - 15 };
            assert!(f == source[want], "output {k} should be source frame {want}");
        }
        // At 15 fps the first second is kept, the second loses every other frame.
        let opts = DecodeOptions { fps: Some(15.0), ..keep_size(PixelFormat::Yuv420p) };
        let (_, frames) = decode_all(&path, &opts).unwrap();
        assert_eq!(frames.len(), 30);
        for (k, f) in frames.iter().enumerate() {
            let want = if k < 15 { k } else { 15 + 2 * (k - 15) };
            assert!(f == source[want], "output {k} should be source frame {want}");
        }
        // At the source's average rate the frames cover its 2 s, one slot at most beyond.
        let (info, frames) = decode_all(&path, &keep_size(PixelFormat::Yuv420p)).unwrap();
        let fps = f64::from(info.fps_num) / f64::from(info.fps_den);
        assert!((fps - info.source_fps).abs() < 1e-9);
        assert!(info.duration_s >= 2.0 && info.duration_s < 2.0 + 1.0 / fps, "{info:?}");
        assert_eq!(frames.first().map(Vec::as_slice), Some(source[0]));
        assert_eq!(frames.last().map(Vec::as_slice), Some(source[44]));
    }

    #[test]
    fn trim_and_max_frames_keep_the_slots_of_the_window() {
        let path = video(LONG);
        let base = DecodeOptions { short_side: Some(64), ..DecodeOptions::default() };
        let (_, all) = decode_all(&path, &base).unwrap();
        assert_eq!(all.len(), 100);
        let cases = [
            ((1.0, 2.0), None, 25..50),
            // ceil(1.02 * 25) = 26 up to ceil(1.5 * 25) = 38.
            ((1.02, 1.5), None, 26..38),
            ((1.0, 2.0), Some(10), 25..35),
            ((3.5, 10.0), None, 88..100),
        ];
        for (trim, max_frames, want) in cases {
            let opts = DecodeOptions { trim: Some(trim), max_frames, ..base.clone() };
            let (info, frames) = decode_all(&path, &opts).unwrap();
            assert_eq!(info.num_frames as usize, want.len(), "{trim:?}");
            assert!(frames == all[want.clone()], "{trim:?} {max_frames:?}: not frames {want:?}");
        }
        let opts = DecodeOptions { max_frames: Some(7), ..base.clone() };
        assert!(decode_all(&path, &opts).unwrap().1 == all[..7]);
        let past_end = DecodeOptions { trim: Some((5.0, 6.0)), ..base.clone() };
        assert_eq!(decode_all(&path, &past_end).unwrap_err().stage, Stage::Decode);
        for bad in [(2.0, 1.0), (-1.0, 1.0), (0.0, f64::NAN)] {
            let opts = DecodeOptions { trim: Some(bad), ..base.clone() };
            assert_eq!(decode_all(&path, &opts).unwrap_err().stage, Stage::Probe, "{bad:?}");
        }
    }

    #[test]
    fn broken_files_fail_at_the_stage_the_manifest_names() {
        let manifest = std::fs::read_to_string(videos().join("manifest.tsv")).unwrap();
        let mut broken = 0;
        for line in manifest.lines().skip(1) {
            let (rel, expect) = line.split_once('\t').unwrap();
            let result = decode_all(&video(rel), &DecodeOptions::default());
            match (expect, result) {
                ("ok", Ok(_)) => {}
                ("ok", Err(e)) => panic!("{rel}: {e}"),
                (stage, Ok(_)) => panic!("{rel}: decoded, expected a {stage} error"),
                (stage, Err(e)) => {
                    eprintln!("{rel}: {e}");
                    assert_eq!(e.stage.to_string(), stage, "{rel}: {e}");
                    assert!(!e.message.is_empty());
                    broken += 1;
                }
            }
        }
        assert_eq!(broken, 9);
        // Each of the three ways of noticing damage is exercised.
        let message =
            |rel: &str| decode_all(&video(rel), &DecodeOptions::default()).unwrap_err().message;
        assert!(message("broken/corrupt.mp4").contains("Invalid data"));
        assert!(message("broken/corrupt_mpeg4.avi").contains("conceal"));
        assert!(message("broken/truncated_vp9.webm").contains("declares 2.0 s"));
        // Mixed folders: every file decodes or fails cleanly.
        for class in std::fs::read_dir(videos().join("mixed")).unwrap() {
            for file in std::fs::read_dir(class.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                let broken = path.file_name().unwrap().to_string_lossy().starts_with("broken_");
                assert_eq!(
                    decode_all(&path, &DecodeOptions::default()).is_err(),
                    broken,
                    "{}",
                    path.display()
                );
            }
        }
        let missing = decode_all(&videos().join("no/such/file.mp4"), &DecodeOptions::default());
        assert_eq!(missing.unwrap_err().stage, Stage::Open);
        for bad in [
            DecodeOptions { fps: Some(0.0), ..DecodeOptions::default() },
            DecodeOptions { fps: Some(f64::INFINITY), ..DecodeOptions::default() },
            DecodeOptions { short_side: Some(0), ..DecodeOptions::default() },
        ] {
            assert_eq!(decode_all(&video(H264), &bad).unwrap_err().stage, Stage::Probe, "{bad:?}");
        }
    }

    #[test]
    fn probe_lists_streams_rotation_and_counts() {
        let info = probe(&video("videos/juggling/rotated_90.mp4")).unwrap();
        assert!(info.container.contains("mp4"));
        assert_eq!(info.duration_s, Some(2.0));
        let s = &info.streams[0];
        assert_eq!((s.kind.as_str(), s.codec.as_str()), ("video", "h264"));
        assert_eq!((s.width, s.height, s.rotation_deg), (Some(160), Some(120), Some(270)));
        assert_eq!(
            (s.num_frames, s.fps, s.pixel_format.as_deref()),
            (Some(50), Some(25.0), Some("yuv420p"))
        );
        assert!(info.to_string().contains("rotated 270 degrees"), "{info}");

        let audio = probe(&video("broken/audio_only.mp4")).unwrap();
        assert_eq!(audio.streams.len(), 1);
        assert_eq!(
            (audio.streams[0].kind.as_str(), audio.streams[0].codec.as_str()),
            ("audio", "aac")
        );
        assert_eq!(probe(&video("broken/empty.mp4")).unwrap_err().stage, Stage::Open);
        assert_eq!(probe(&video("broken/not_a_video.mp4")).unwrap_err().stage, Stage::Open);
    }

    fn clock(tb: (i32, i32), fps: (i32, i32)) -> Clock {
        Clock::new(ff::Rational::new(tb.0, tb.1), ff::Rational::new(fps.0, fps.1)).unwrap()
    }

    fn window(trim: Option<(f64, f64)>, max_frames: Option<u32>) -> OutputWindow {
        OutputWindow { trim, max_frames }
    }

    /// Slots each frame fills, given frame times and the end time, in ticks.
    fn fill(clock: Clock, w: OutputWindow, times: &[i64], end: i64) -> Vec<Range<u64>> {
        let mut t = Timeline::new(clock, &w);
        let mut out: Vec<Range<u64>> = times.iter().skip(1).map(|&x| t.advance(x)).collect();
        out.push(t.finish(end));
        out
    }

    #[test]
    fn timeline_gives_each_frame_of_a_same_rate_stream_one_slot() {
        // 25 fps in 1/12800 (mp4), 30000/1001 in 1/1000 (webm rounding to whole ms).
        let times: Vec<i64> = (0..50).map(|i| i * 512).collect();
        let slots = fill(clock((1, 12800), (25, 1)), window(None, None), &times, 50 * 512);
        assert!(slots.iter().enumerate().all(|(i, r)| *r == (i as u64..i as u64 + 1)));
        let times: Vec<i64> = (0..300).map(|i| (i * 1001 + 15) / 30).collect();
        let slots = fill(clock((1, 1000), (30000, 1001)), window(None, None), &times, 10_010);
        assert!(slots.iter().enumerate().all(|(i, r)| *r == (i as u64..i as u64 + 1)), "{slots:?}");
    }

    #[test]
    fn timeline_repeats_and_drops_frames_and_shows_the_first_frame_early() {
        // 10 fps source (ticks of 1/10 s) into 20 fps: two slots each.
        let slots = fill(clock((1, 10), (20, 1)), window(None, None), &[0, 1, 2], 3);
        assert_eq!(slots, vec![0..2, 2..4, 4..6]);
        // Into 5 fps: every other frame is dropped (fills no slot).
        let slots = fill(clock((1, 10), (5, 1)), window(None, None), &[0, 1, 2, 3], 4);
        assert_eq!(slots, vec![0..1, 1..1, 1..2, 2..2]);
        // A first frame at 0.25 s still fills the slots before it.
        let slots = fill(clock((1, 100), (10, 1)), window(None, None), &[25, 50], 60);
        assert_eq!(slots, vec![0..5, 5..6]);
        // A frame exactly on a slot time belongs to that slot.
        let slots = fill(clock((1, 30), (10, 1)), window(None, None), &[0, 3], 6);
        assert_eq!(slots, vec![0..1, 1..2]);
    }

    #[test]
    fn timeline_window_keeps_trimmed_and_capped_slots() {
        let c = clock((1, 10), (10, 1));
        let times: Vec<i64> = (0..20).collect();
        let kept = |w| fill(c, w, &times, 20).into_iter().flatten().collect::<Vec<u64>>();
        assert_eq!(kept(window(Some((0.5, 0.8)), None)), vec![5, 6, 7]);
        assert_eq!(kept(window(Some((0.5, 10.0)), Some(2))), vec![5, 6]);
        assert_eq!(kept(window(None, Some(3))), vec![0, 1, 2]);
        // 0.3 as a float times 10 fps is not quite 3; slot 3 still starts at 0.3 s.
        assert_eq!(OutputWindow::first_slot_at(&c, 0.1 * 3.0), 3);
    }

    #[test]
    fn rotation_follows_the_cli_reading_of_the_display_matrix() {
        assert_eq!(Rotation::from_display_angle(90.0), Rotation::Cw270);
        assert_eq!(Rotation::from_display_angle(-90.0), Rotation::Cw90);
        assert_eq!(Rotation::from_display_angle(180.0), Rotation::Cw180);
        assert_eq!(Rotation::from_display_angle(-180.0), Rotation::Cw180);
        assert_eq!(Rotation::from_display_angle(0.0), Rotation::None);
        assert_eq!(Rotation::from_display_angle(-89.6), Rotation::Cw90);
        assert_eq!(Rotation::from_display_angle(f64::NAN), Rotation::None);
    }

    #[test]
    fn turning_a_plane_moves_pixels_where_a_player_shows_them() {
        // 3x2 plane with 4 bytes of row padding:  a b c
        //                                          d e f
        let src = b"abc....def....";
        let turned = |r| {
            let mut d = vec![0; 6];
            let stride = if r == Rotation::Cw90 || r == Rotation::Cw270 { 2 } else { 3 };
            copy_plane(src, 7, (3, 2), 1, r, &mut d, stride);
            String::from_utf8(d).unwrap()
        };
        assert_eq!(turned(Rotation::None), "abcdef");
        assert_eq!(turned(Rotation::Cw90), "daebfc");
        assert_eq!(turned(Rotation::Cw180), "fedcba");
        assert_eq!(turned(Rotation::Cw270), "cfbead");
    }

    #[test]
    fn output_size_rounds_the_long_side_and_keeps_yuv_even() {
        use PixelFormat::{Rgb24, Yuv420p};
        assert_eq!(output_size((640, 360), Some(256), Yuv420p), (456, 256));
        assert_eq!(output_size((640, 360), Some(256), Rgb24), (455, 256));
        assert_eq!(output_size((360, 640), Some(256), Yuv420p), (256, 456));
        assert_eq!(output_size((161, 97), None, Yuv420p), (160, 96));
        assert_eq!(output_size((161, 97), None, Rgb24), (161, 97));
        assert_eq!(output_size((100, 100), Some(255), Yuv420p), (256, 256));
    }

    #[test]
    fn frame_rate_is_variable_only_beyond_timestamp_rounding() {
        let stats = |intervals: &[i64]| {
            let mut s = IntervalStats::default();
            intervals.iter().for_each(|&i| s.add(i));
            s.is_variable()
        };
        assert!(!stats(&[33, 33, 34, 33, 34]));
        assert!(!stats(&[512; 10]));
        assert!(stats(&[6000, 6000, 3000, 3000]));
        assert!(!stats(&[]));
    }

    /// `cargo test --release -p cvrl-tools decode_speed -- --ignored --nocapture`
    #[test]
    #[ignore = "timing, run on demand in release"]
    fn decode_speed_640x360() {
        let path = video(LONG);
        for (name, opts) in [
            ("scaled to 456x256 yuv420p", DecodeOptions::default()),
            ("kept 640x360 yuv420p", keep_size(PixelFormat::Yuv420p)),
            (
                "scaled to 455x256 rgb24",
                DecodeOptions { pixel_format: PixelFormat::Rgb24, ..DecodeOptions::default() },
            ),
        ] {
            let _ = decode_video(&path, &opts, |_, _| Ok(())).unwrap();
            let runs = 10;
            let start = std::time::Instant::now();
            for _ in 0..runs {
                decode_video(&path, &opts, |_, b| {
                    std::hint::black_box(b);
                    Ok(())
                })
                .unwrap();
            }
            let per = start.elapsed().as_secs_f64() / f64::from(runs);
            eprintln!("{name}: {:.1} ms per 4 s video, {:.0} frames/s", per * 1e3, 100.0 / per);
        }
    }
}
