//! Test helpers of the decoder: the generated test videos (scripts/make-test-videos.sh) and
//! the ffmpeg CLI's decode of them, the independent reference the tests compare against.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use cvrl_formats::PixelFormat;

use super::{decode_video, DecodeError, DecodeOptions, VideoInfo};

/// The generated test videos, made once per test process (the script itself skips the
/// work when an unchanged copy already ran into this folder).
pub(crate) fn videos() -> &'static Path {
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

pub(crate) fn video(rel: &str) -> PathBuf {
    videos().join(rel)
}

pub(crate) fn decode_all(
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

pub(crate) fn keep_size(format: PixelFormat) -> DecodeOptions {
    DecodeOptions { short_side: None, pixel_format: format, ..DecodeOptions::default() }
}

/// Raw frames from the ffmpeg CLI (default autorotate; `-vf` filters such as a bicubic
/// `scale=W:H`), every decoded frame once.
pub(crate) fn cli_raw(path: &Path, vf: Option<&str>, format: PixelFormat) -> Vec<u8> {
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
pub(crate) fn worst_psnr_against_cli(frames: &[Vec<u8>], cli: &[u8]) -> f64 {
    let n = frames[0].len();
    assert_eq!(cli.len(), n * frames.len(), "frame count differs from the CLI's");
    frames.iter().zip(cli.chunks_exact(n)).map(|(a, b)| psnr(a, b)).fold(f64::INFINITY, f64::min)
}

pub(crate) const H264: &str = "videos/archery/testsrc2_h264.mp4";
pub(crate) const VP9: &str = "videos/archery/mandelbrot_vp9.webm";
pub(crate) const MPEG4: &str = "videos/bowling/smptebars_mpeg4.avi";
pub(crate) const ODD: &str = "videos/bowling/odd_161x97.webm";
pub(crate) const VFR: &str = "videos/juggling/vfr_15_30.mp4";
pub(crate) const LONG: &str = "videos/juggling/long_640x360.mp4";
