//! Measures how fast [`decode_video`] turns one video into stored frames, at the settings
//! `cvrl-shard build` uses (scaled to short side 256, yuv420p), at the source size, and
//! scaled to rgb24. Best of `runs` decodes, after one untimed warm-up decode.
//!
//! ```text
//! cargo run --release -p cvrl-tools --example decode_speed -- [VIDEO] [runs=10]
//! ```
//!
//! Without VIDEO it decodes `juggling/long_640x360.mp4` (4 s of 640x360 H.264 at 25 fps) of
//! the generated test videos, making them first with `scripts/make-test-videos.sh` into
//! `target/test-videos` (the folder the unit tests use).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use cvrl_formats::PixelFormat;
use cvrl_tools::decode::{decode_video, init, DecodeOptions};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("decode_speed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut video = None;
    let mut runs = 10u32;
    for arg in std::env::args().skip(1) {
        match arg.strip_prefix("runs=") {
            Some(n) => runs = n.parse().map_err(|_| format!("runs={n}: not a count"))?,
            None => video = Some(PathBuf::from(arg)),
        }
    }
    let runs = runs.max(1);
    let video = match video {
        Some(v) => v,
        None => test_video()?,
    };
    init();
    let cases = [
        ("scaled to short side 256, yuv420p", DecodeOptions::default()),
        ("source size, yuv420p", DecodeOptions { short_side: None, ..DecodeOptions::default() }),
        (
            "scaled to short side 256, rgb24",
            DecodeOptions { pixel_format: PixelFormat::Rgb24, ..DecodeOptions::default() },
        ),
    ];
    println!("{} ({runs} runs each, best kept)", video.display());
    for (name, opts) in cases {
        let decode = || {
            decode_video(&video, &opts, |_, bytes| {
                std::hint::black_box(bytes);
                Ok(())
            })
            .map_err(|e| format!("{}: {e}", video.display()))
        };
        let info = decode()?;
        let mut best = f64::INFINITY;
        for _ in 0..runs {
            let start = Instant::now();
            decode()?;
            best = best.min(start.elapsed().as_secs_f64());
        }
        println!(
            "{name} ({}x{}): {:.1} ms per {:.1} s video, {:.0} frames/s",
            info.width,
            info.height,
            best * 1e3,
            info.duration_s,
            f64::from(info.num_frames) / best
        );
    }
    Ok(())
}

/// The generated 640x360 test video, made if needed.
fn test_video() -> Result<PathBuf, String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().ok_or("the crate has no parent folder")?;
    let out = root.join("target").join("test-videos");
    let status = Command::new("bash")
        .arg(root.join("scripts").join("make-test-videos.sh"))
        .arg(&out)
        .status()
        .map_err(|e| format!("cannot run bash: {e}"))?;
    if !status.success() {
        return Err("scripts/make-test-videos.sh failed".into());
    }
    Ok(out.join("videos/juggling/long_640x360.mp4"))
}
