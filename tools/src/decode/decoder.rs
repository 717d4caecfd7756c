//! [`decode_video`]: FFmpeg's read-and-decode loop. It opens the best video stream, seeks
//! to the trim window, reads packets, and passes each decoded frame with its output slots
//! (`timeline.rs`) to the [`Sink`] that converts and hands them over (`picture.rs`); then it
//! checks that the file was whole. The rules are in the module documentation of
//! [`crate::decode`].

use std::ops::Range;
use std::path::Path;

use cvrl_formats::FrameLayout;
use ff::codec::threading;
use ff::ffi;
use ff::format::context::Input;
use ff::frame::Video as VideoFrame;
use ff::Rescale;
use ffmpeg_next as ff;

use super::picture::{quarter_turns, Rotation, Sink};
use super::timeline::{
    fps_rational, frame_ticks, rational_f64, Clock, DecodeState, OutputWindow, Timeline,
};
use super::{ffmpeg_log, init, DecodeError, DecodeOptions, Stage, VideoInfo};

/// Decoded output must reach this share of the container's duration, else the file is
/// reported as truncated.
const MIN_DECODED_SHARE: f64 = 0.9;

/// Decodes `path`, calling `on_frame(layout, frame_bytes)` for each output frame (packed
/// planes, exactly `layout.frame_bytes()` long), in order. Returns the info at the end.
/// See the module documentation for the timing, geometry and error rules.
///
/// Frames are handed over as they are decoded, so an `Err` can follow some calls of
/// `on_frame`: those frames belong to a video that failed and should be dropped.
///
/// FFmpeg's log lines about the file are kept (silent unless a live sink is set:
/// [`set_live`](super::ffmpeg_log::set_live)); an error ends with them.
pub fn decode_video(
    path: &Path,
    opts: &DecodeOptions,
    on_frame: impl FnMut(&FrameLayout, &[u8]) -> anyhow::Result<()>,
) -> Result<VideoInfo, DecodeError> {
    init();
    let (result, said) = ffmpeg_log::capture(path, || decode_file(path, opts, on_frame));
    result.map_err(|e| e.with_ffmpeg_log(&said))
}

fn decode_file(
    path: &Path,
    opts: &DecodeOptions,
    on_frame: impl FnMut(&FrameLayout, &[u8]) -> anyhow::Result<()>,
) -> Result<VideoInfo, DecodeError> {
    let window = OutputWindow::from_options(opts)?;
    let mut input = open(path)?;
    let (stream, mut decoder) = VideoStream::open(&input, opts)?;
    let (source_width, source_height) = (decoder.width(), decoder.height());
    let clock = Clock::new(stream.time_base, stream.output_rate)?;
    let seeked_to = seek_to_window(&mut input, &mut decoder, &stream, &window, &clock);

    let sink = Sink::new(opts, stream.rotation, on_frame);
    let mut frames = Frames::new(sink, &stream, clock, &window, seeked_to);
    frames.run(&mut input, &mut decoder, stream.index)?;
    if !frames.have_held {
        return Err(DecodeError::new(Stage::Decode, "no frame could be decoded"));
    }
    if !frames.stopped {
        frames.finish()?;
        check_not_truncated(frames.held_end, &stream, &window, &clock)?;
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
        source_codec: stream.codec_name,
        rotation_deg: stream.rotation.degrees(),
        source_fps: rational_f64(stream.rate).unwrap_or(0.0),
        variable_frame_rate,
    })
}

/// The video stream being decoded: what the container says about it.
struct VideoStream {
    index: usize,
    time_base: ff::Rational,
    /// FFmpeg's codec name, e.g. `h264`.
    codec_name: String,
    rotation: Rotation,
    /// The stream's average frame rate (else its base rate).
    rate: ff::Rational,
    /// The output frame rate: the requested one, else `rate`.
    output_rate: ff::Rational,
    /// The duration the stream (else the container) declares, in ticks.
    declared_ticks: Option<i64>,
    /// The stream's start time in ticks, when the container states it.
    origin: Option<i64>,
}

impl VideoStream {
    /// Picks the best video stream of `input`, works out its clock and opens its decoder.
    fn open(
        input: &Input,
        opts: &DecodeOptions,
    ) -> Result<(VideoStream, ff::decoder::Video), DecodeError> {
        let stream = input
            .streams()
            .best(ff::media::Type::Video)
            .ok_or_else(|| DecodeError::new(Stage::Probe, "no video stream"))?;
        if stream.disposition().contains(ff::format::stream::Disposition::ATTACHED_PIC) {
            return Err(DecodeError::new(Stage::Probe, "no video stream (only a cover picture)"));
        }
        let time_base = stream.time_base();
        if time_base.numerator() <= 0 || time_base.denominator() <= 0 {
            return Err(DecodeError::new(Stage::Probe, "the video stream has no time base"));
        }
        let codec_name = stream.parameters().id().name().to_string();
        let rotation = quarter_turns(&stream);
        let rate = [stream.avg_frame_rate(), stream.rate()]
            .into_iter()
            .find(|r| r.numerator() > 0 && r.denominator() > 0)
            .ok_or_else(|| DecodeError::new(Stage::Probe, "the video stream has no frame rate"))?;
        let output_rate = match opts.fps {
            Some(fps) => fps_rational(fps)?,
            None => rate,
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
        let decoder = open_decoder(&stream, &codec_name)?;
        let index = stream.index();
        let found = VideoStream {
            index,
            time_base,
            codec_name,
            rotation,
            rate,
            output_rate,
            declared_ticks,
            origin,
        };
        Ok((found, decoder))
    }
}

/// Opens `stream`'s decoder on one thread (the caller already runs one decode per core:
/// module doc, Threads).
fn open_decoder(
    stream: &ff::Stream<'_>,
    codec_name: &str,
) -> Result<ff::decoder::Video, DecodeError> {
    let mut context = ff::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| DecodeError::new(Stage::Probe, format!("bad codec parameters: {e}")))?;
    context.set_threading(threading::Config {
        kind: threading::Type::Frame,
        count: 1,
        ..Default::default()
    });
    let mut decoder = context.decoder();
    decoder.set_packet_time_base(stream.time_base());
    decoder.video().map_err(|e| match e {
        ff::Error::DecoderNotFound => DecodeError::new(
            Stage::Probe,
            format!("unsupported codec {codec_name}: this FFmpeg has no decoder for it"),
        ),
        e => DecodeError::new(Stage::Probe, format!("cannot open the {codec_name} decoder: {e}")),
    })
}

/// Seeks near the trim start instead of decoding everything before it; the key frame before
/// it is decoded too, so the first kept output still has its latest frame. Returns the
/// window's start in ticks after the origin when the seek happened.
fn seek_to_window(
    input: &mut Input,
    decoder: &mut ff::decoder::Video,
    stream: &VideoStream,
    window: &OutputWindow,
    clock: &Clock,
) -> Option<i64> {
    let (first, origin) = (window.first_time(clock)?, stream.origin?);
    if first <= 0.0 {
        return None;
    }
    let time_base = stream.time_base;
    let target = origin.rescale(time_base, ff::rescale::TIME_BASE)
        + (first * f64::from(ffi::AV_TIME_BASE)) as i64;
    // A failed seek only costs time: decoding from the start gives the same frames.
    input.seek(target, ..target).ok()?;
    decoder.flush();
    Some((first / rational_f64(time_base).unwrap_or(1.0)) as i64)
}

/// A file that stops well before the duration its container declares was cut off:
/// `decoded_end` (ticks after the origin) must reach [`MIN_DECODED_SHARE`] of it, or of the
/// window's end when that comes first.
fn check_not_truncated(
    decoded_end: i64,
    stream: &VideoStream,
    window: &OutputWindow,
    clock: &Clock,
) -> Result<(), DecodeError> {
    let Some(declared) = stream.declared_ticks else { return Ok(()) };
    let tb = rational_f64(stream.time_base).unwrap_or(0.0);
    let decoded = decoded_end as f64 * tb;
    let declared = declared as f64 * tb;
    let expected = window.end_time(clock).map_or(declared, |end| declared.min(end));
    if decoded < MIN_DECODED_SHARE * expected {
        return Err(DecodeError::new(
            Stage::Decode,
            format!(
                "truncated or corrupt data at {decoded:.1} s: frames end there, but the \
                 container declares {declared:.1} s"
            ),
        ));
    }
    Ok(())
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
    fn new(
        sink: Sink<F>,
        stream: &VideoStream,
        clock: Clock,
        window: &OutputWindow,
        seeked_to: Option<i64>,
    ) -> Self {
        let tb = rational_f64(stream.time_base).unwrap_or(0.0);
        Frames {
            sink,
            state: DecodeState::new(stream.origin, frame_ticks(stream.time_base, stream.rate)),
            timeline: Timeline::new(clock, window),
            time_base: stream.time_base,
            held: VideoFrame::empty(),
            incoming: VideoFrame::empty(),
            have_held: false,
            held_end: 0,
            stopped: false,
            seeked_to,
            // The declared duration with room for rounding and a long last frame.
            max_slots: stream.declared_ticks.map(|d| {
                let declared_s = d as f64 * tb;
                ((declared_s * 1.5 + 2.0) * clock.fps()).ceil() as u64
            }),
        }
    }

    /// Reads and decodes packets of stream `index` until the input ends or every output
    /// slot is filled, then drains the frames the decoder still holds back.
    fn run(
        &mut self,
        input: &mut Input,
        decoder: &mut ff::decoder::Video,
        index: usize,
    ) -> Result<(), DecodeError> {
        while !self.stopped {
            let mut packet = ff::Packet::empty();
            match packet.read(input) {
                Ok(()) => {}
                Err(ff::Error::Eof) => break,
                Err(ff::Error::Other { errno }) if errno == ff::error::EAGAIN => continue,
                Err(e) => return Err(self.damaged(None, &e.to_string())),
            }
            if packet.stream() != index {
                continue;
            }
            if let Err(e) = decoder.send_packet(&packet) {
                return Err(self.damaged(packet.pts().or(packet.dts()), &e.to_string()));
            }
            self.receive(decoder)?;
        }
        if !self.stopped {
            // Drain the frames the decoder still holds back (reordering delay).
            let _ = decoder.send_eof();
            self.receive(decoder)?;
        }
        Ok(())
    }

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
            self.held_end = rel + self.state.frame_duration(self.held.packet().duration);
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
pub(super) fn open(path: &Path) -> Result<ff::format::context::Input, DecodeError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::test_videos::*;
    use cvrl_formats::PixelFormat;

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
            // Scaled: equal to the CLI up to swscale rounding.
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
}
