//! `cvrl-inspect`: show what is in a shard set, a shard file or a video file.

use anyhow::{bail, Context, Result};
use clap::Parser;
use cvrl_formats::ShardSet;
use cvrl_tools::inspect;
use std::path::PathBuf;
use std::process::ExitCode;

/// Show what is in a shard set (a folder), a shard file (.cvrs) or a source video.
///
/// Exit status: 0; 3 when --verify found damage; 1 on an error; 2 on bad usage.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// A shard set folder, a .cvrs shard file, or a video file.
    path: PathBuf,
    /// In a set: show this video's metadata and chunk table (its video_id).
    #[arg(long)]
    video: Option<String>,
    /// Recompute every checksum and decode every chunk.
    #[arg(long)]
    verify: bool,
    /// Write frames of --video as PNG files into this folder.
    #[arg(long, requires = "video")]
    export_frames: Option<PathBuf>,
    /// Frames to export, START..END (default: all).
    #[arg(long, requires = "export_frames", value_parser = parse_range)]
    frames: Option<std::ops::Range<u32>>,
    /// Write a contact sheet (a grid of evenly spaced frames) of --video to this PNG file.
    #[arg(long, requires = "video")]
    contact_sheet: Option<PathBuf>,
    /// Frames on the contact sheet.
    #[arg(long, default_value_t = 16)]
    sheet_frames: u32,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_range(s: &str) -> Result<std::ops::Range<u32>, String> {
    let err = || format!("{s:?}: expected START..END, e.g. 0..16");
    let (a, b) = s.split_once("..").ok_or_else(err)?;
    let (a, b) = (a.parse().map_err(|_| err())?, b.parse().map_err(|_| err())?);
    if a >= b {
        return Err(err());
    }
    Ok(a..b)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cvrl-inspect: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn print<T: serde::Serialize + std::fmt::Display>(json: bool, report: &T) {
    if json {
        print!("{}", inspect::to_json(report));
    } else {
        print!("{report}");
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let meta = std::fs::metadata(&cli.path)
        .with_context(|| format!("cannot read {}", cli.path.display()))?;
    if meta.is_dir() {
        return run_set(&cli);
    }
    if cli.video.is_some() {
        bail!("--video needs a shard set folder, not the file {}", cli.path.display());
    }
    if cli.path.extension().is_some_and(|e| e == "cvrs") {
        let report = inspect::shard_report(&cli.path, cli.verify)?;
        print(cli.json, &report);
        let damaged = report.error.is_some() || report.records.iter().any(|r| r.error.is_some());
        return Ok(if damaged { ExitCode::from(3) } else { ExitCode::SUCCESS });
    }
    cvrl_tools::decode::init();
    let info = cvrl_tools::decode::probe(&cli.path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cli.path.display()))?;
    print(cli.json, &info);
    Ok(ExitCode::SUCCESS)
}

fn run_set(cli: &Cli) -> Result<ExitCode> {
    let set = ShardSet::open(&cli.path)?;
    let Some(id) = &cli.video else {
        if cli.verify {
            let report = inspect::verify_set(&set)?;
            print(cli.json, &report);
            return Ok(if report.damaged.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            });
        }
        print(cli.json, &inspect::set_report(&cli.path, &set));
        return Ok(ExitCode::SUCCESS);
    };
    let video = set.find(id).with_context(|| {
        format!("no video {id:?} in {} (list them with --json)", cli.path.display())
    })?;
    if cli.verify {
        let mut reader = set.reader()?;
        set.verify_video(video, &mut reader)?;
        eprintln!("{id}: all checksums match");
    }
    if let Some(dir) = &cli.export_frames {
        let range = cli.frames.clone().unwrap_or(0..set.videos()[video].num_frames);
        let n = inspect::export_frames(&set, video, range, dir)?;
        eprintln!("wrote {n} frames to {}", dir.display());
    }
    if let Some(path) = &cli.contact_sheet {
        inspect::contact_sheet(&set, video, cli.sheet_frames, 4, path)?;
        eprintln!("wrote {}", path.display());
    }
    print(cli.json, &inspect::VideoReport { row: &set.videos()[video] });
    Ok(ExitCode::SUCCESS)
}
