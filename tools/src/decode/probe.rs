//! [`probe`]: what a file holds (container, streams, sizes, rates, rotation) without
//! decoding a picture, for `cvrl-inspect video.mp4`.

use std::fmt;
use std::os::raw::c_int;
use std::path::Path;

use ff::ffi;
use ffmpeg_next as ff;
use serde::Serialize;

use super::decoder::open;
use super::picture::quarter_turns;
use super::timeline::rational_f64;
use super::{ffmpeg_log, init, DecodeError};

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

/// Describes the container and streams of `path` without decoding. An error ends with what
/// FFmpeg said about the file, if anything.
pub fn probe(path: &Path) -> Result<ProbeInfo, DecodeError> {
    init();
    let (result, said) = ffmpeg_log::capture(path, || probe_file(path));
    result.map_err(|e| e.with_ffmpeg_log(&said))
}

fn probe_file(path: &Path) -> Result<ProbeInfo, DecodeError> {
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
    use crate::decode::test_videos::video;
    use crate::decode::Stage;

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
}
