//! `cvrl-shard`: decode a video dataset once into memory-mappable frame shards.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use cvrl_formats::{BuildParams, Part, PixelFormat};
use cvrl_tools::build::{build, describe_failure, BuildConfig, BuildSummary};
use cvrl_tools::inputs::{Inputs, FACTORS_FILE};
use cvrl_tools::lock::OutputLock;
use cvrl_tools::synth::{synth, Photos, Preset, SynthConfig};
use std::path::PathBuf;
use std::process::ExitCode;

/// Decode a video dataset once into zstd-compressed, memory-mapped frame shards plus a
/// Parquet index, for `cvrl-train`.
///
/// Exit status: 0 when every video was stored, 3 when the set was built but some inputs
/// failed (listed, and kept in failures.parquet), 1 on an error that stopped the build, 2
/// on bad usage.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a shard set from a class-folder tree (`<class>/<video>.mp4`) or a Kinetics CSV.
    ///
    /// Rerunning after an interruption (even kill -9, or a full disk) keeps the shards
    /// already committed and redoes only the rest; rerunning a finished build does nothing.
    /// One build at a time writes a folder (or one --part of it): a second one refuses at
    /// once, naming the first. Inputs that cannot be stored (broken files, bad CSV rows, each
    /// named by its line) are listed in failures.parquet and the summary; files that are not
    /// videos are named in the summary.
    Build(BuildArgs),
    /// Generate the synthetic proxy dataset: H.264 mp4s in the Kinetics class-folder layout
    /// (OUT/train/<class>/*.mp4, OUT/val/<class>/*.mp4), to shard with `cvrl-shard build
    /// OUT/train ...` like any dataset. Each video's object, motion and colour go to
    /// factors.csv (in OUT and in each split folder), which `build` stores as index columns.
    ///
    /// A class is an object kind doing a motion pattern (`disc_horizontal`, `square_spin`...),
    /// chosen so that each object and each motion appear in several classes: neither alone
    /// names the class. Colour, size, speed, phase, position, background texture and
    /// distractors vary per video, and the background drifts within a video (pans,
    /// cross-fades, turns hue). The same --seed and sizes give the same videos.
    Synth(SynthArgs),
    /// Join the part files of a `--part I/N` build into index.parquet and manifest.json.
    ///
    /// Refuses, writing nothing, when a part is missing or the parts were built with
    /// different parameters or class lists, naming the parts and what differs.
    Merge {
        /// The output folder all parts were built into.
        out: PathBuf,
    },
}

#[derive(Args)]
struct BuildArgs {
    /// A folder of class folders, or a Kinetics CSV (label,youtube_id,time_start,time_end,split).
    input: PathBuf,
    /// Output folder for shards, index.parquet, failures.parquet and manifest.json.
    out: PathBuf,
    /// Where the videos of a CSV are (searched recursively). Default: the CSV's folder.
    #[arg(long)]
    video_root: Option<PathBuf>,
    /// A CSV labelling videos with factors of variation: header `path,<factor>...`, one row
    /// per video, paths relative to INPUT (or to the video root of a CSV input). Each factor
    /// becomes an index column `factor_<name>` (FORMAT.md §4). Default: INPUT/factors.csv
    /// when INPUT is a folder holding one (as `cvrl-shard synth` writes).
    #[arg(long)]
    factors: Option<PathBuf>,
    /// Scale frames so the shorter side has this many pixels (0 keeps the source size).
    #[arg(long, default_value_t = 256)]
    short_side: u32,
    /// Resample every video to this constant frame rate (default: each video's own rate).
    #[arg(long)]
    fps: Option<f64>,
    /// Stored pixel format: yuv420p (1.5 bytes/pixel) or rgb24 (3 bytes/pixel).
    #[arg(long, default_value = "yuv420p")]
    pixel_format: PixelFormat,
    /// Frames per chunk: the unit of compression and of random access. 8 rather than 16: a
    /// training clip (31 frames at stride 2) then decodes 13% fewer frames it does not use,
    /// for 2% more bytes (BENCHMARKS.md, Loader).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    chunk_frames: u32,
    /// zstd level of the chunks (1-19). Level 1 measured smaller and faster than 3 after the
    /// codec's predictor (BENCHMARKS.md, table 4).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=19))]
    zstd_level: i32,
    /// Predictor applied before zstd. interleaved: the best predictor per 16x16 block, with
    /// motion search, from the frame two before, so a stride-2 clip decodes only the frames
    /// it uses, and residuals that decode 8 at a time; adaptive: the same from the frame
    /// before (0.75-0.9x the disk, a third of the reads per CPU second); plain: no
    /// prediction, each frame its own zstd frame (about twice the disk, the cheapest reads,
    /// the fastest build);
    /// med, temporal or raw (for comparison). BENCHMARKS.md, Loader.
    #[arg(long, default_value_t = cvrl_formats::codec::PredictorMode::default())]
    predictor: cvrl_formats::codec::PredictorMode,
    /// Target shard size, e.g. 1GiB, 512MiB, 64M; a video is never split across shards.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    shard_size: u64,
    /// Build only slice I of N (0-based) of the sorted inputs, for cluster job arrays;
    /// join the parts with `cvrl-shard merge OUT`.
    #[arg(long, value_parser = Part::parse)]
    part: Option<Part>,
    /// Videos decoded in parallel (default: all cores).
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// Delete this build's earlier files in OUT and start over.
    #[arg(long)]
    force: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// Show FFmpeg's own log lines (errors) as they come, each prefixed with its file.
    /// Without it they are not printed; a file that fails has them in its failure reason
    /// (failures.parquet and the summary).
    #[arg(long, short)]
    verbose: bool,
}

#[derive(Args)]
struct SynthArgs {
    /// Output folder; it must be empty or hold an earlier synth dataset (with --force).
    out: PathBuf,
    /// Size preset: cpu = 10 classes x 60 videos (48 train + 12 val), 128x128, 4-8 s;
    /// gpu = 20 classes x 200 videos (160 train + 40 val), 160x160, 4-8 s; easy = 10
    /// classes x 100 videos (80 + 20), 64x64, 3-6 s, objects 1.8x, clutter 0 (what the
    /// CPU experiments use); all 25 fps. The flags below override single values.
    #[arg(long, default_value = "cpu")]
    preset: Preset,
    /// Number of classes, 2-36 (default: the preset's).
    #[arg(long)]
    classes: Option<usize>,
    /// Videos per class, train and val together (default: the preset's).
    #[arg(long)]
    videos: Option<usize>,
    /// Of those, videos per class in val/ (default: the preset's).
    #[arg(long)]
    val: Option<usize>,
    /// Frame width in pixels, even (default: the preset's).
    #[arg(long)]
    width: Option<u32>,
    /// Frame height in pixels, even (default: the preset's).
    #[arg(long)]
    height: Option<u32>,
    /// Shortest video in seconds (default: the preset's).
    #[arg(long)]
    min_seconds: Option<f64>,
    /// Longest video in seconds (default: the preset's).
    #[arg(long)]
    max_seconds: Option<f64>,
    /// Frames per second (default: the preset's).
    #[arg(long)]
    fps: Option<u32>,
    /// Seed of every random choice: the same seed and sizes give the same videos.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// x264 constant rate factor, 0-51 (lower: better quality, bigger files).
    #[arg(long, default_value_t = 20)]
    crf: u32,
    /// Multiplies the object's radius, above 0 up to 2 (default 1: 10-15 % of the short
    /// side; easy preset 1.8). Larger objects are easier to learn at small crops.
    #[arg(long)]
    object_scale: Option<f32>,
    /// How busy the scene is, 0-1: background texture contrast and the number of
    /// distractors (default 1, easy preset 0: smooth backgrounds, no distractors). Drift
    /// stays.
    #[arg(long)]
    clutter: Option<f32>,
    /// Fraction of each video in which the class's object is on screen, above 0 up to 1
    /// (default: the preset's, 1 in each): one stretch at a random place, background only
    /// around it, so that clips far apart may disagree on the class, as in real footage.
    #[arg(long)]
    presence: Option<f32>,
    /// Cut every video's backgrounds from random crops of the PNG photographs in this
    /// folder instead of procedural textures (`scripts/export-textures.py` writes
    /// scikit-image's sample photographs there); every other random choice stays as
    /// without it. Their hue does not turn; --clutter still sets the distractors.
    #[arg(long, value_name = "DIR")]
    textures: Option<PathBuf>,
    /// Take the classes this many diagonals further along the object x motion grid: with 10
    /// classes, 2 gives ten object x motion pairs that offset 0 never shows (the transfer
    /// probe's target; its videos are other draws than offset 0's).
    #[arg(long, default_value_t = 0)]
    diagonal_offset: usize,
    /// Videos encoded in parallel (default: all cores).
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// Replace an earlier synth dataset in OUT.
    #[arg(long)]
    force: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a size like 1GiB or 512M"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1u64,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    let bytes = n * mult as f64;
    if bytes < 1.0 {
        return Err(format!("shard size {s:?} must be positive"));
    }
    Ok(bytes as u64)
}

fn main() -> ExitCode {
    // A write past a file size limit (`ulimit -f`) then fails with EFBIG, which the build
    // reports and survives like a full disk, instead of killing the process with SIGXFSZ.
    // SAFETY: sets a signal's disposition to "ignore" before any other thread exists.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cvrl-shard: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<ExitCode> {
    match Cli::parse().command {
        Command::Build(args) => run_build(args),
        Command::Synth(args) => run_synth(args),
        Command::Merge { out } => {
            anyhow::ensure!(out.is_dir(), "{}: no such folder", out.display());
            // The merged files are the whole set's: no whole build or other merge at once.
            let lock = lock_output(&out, None)?;
            let m = cvrl_formats::merge_parts(&out)?;
            drop(lock);
            println!(
                "merged {} parts' files: {} videos, {} failures -> {}",
                m.shards.len(),
                m.counts.videos,
                m.counts.failures,
                out.join(&m.index).display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Locks `out` (or one part of it) for this process, warning when the file system cannot.
fn lock_output(out: &std::path::Path, part: Option<Part>) -> Result<OutputLock> {
    let lock = OutputLock::acquire(out, part)?;
    if let Some(why) = &lock.unenforced {
        eprintln!("cvrl-shard: warning: {why}");
    }
    Ok(lock)
}

fn set_jobs(jobs: Option<usize>) -> Result<()> {
    if let Some(jobs) = jobs {
        rayon::ThreadPoolBuilder::new()
            .num_threads(jobs.max(1))
            .build_global()
            .context("cannot start worker threads")?;
    }
    Ok(())
}

fn run_synth(args: SynthArgs) -> Result<ExitCode> {
    set_jobs(args.jobs)?;
    let p = SynthConfig::preset(args.preset);
    let cfg = SynthConfig {
        classes: args.classes.unwrap_or(p.classes),
        videos_per_class: args.videos.unwrap_or(p.videos_per_class),
        val_per_class: args.val.unwrap_or(p.val_per_class),
        width: args.width.unwrap_or(p.width),
        height: args.height.unwrap_or(p.height),
        fps: args.fps.unwrap_or(p.fps),
        min_seconds: args.min_seconds.unwrap_or(p.min_seconds),
        max_seconds: args.max_seconds.unwrap_or(p.max_seconds),
        seed: args.seed,
        crf: args.crf,
        object_scale: args.object_scale.unwrap_or(p.object_scale),
        clutter: args.clutter.unwrap_or(p.clutter),
        presence: args.presence.unwrap_or(p.presence),
        diagonal_offset: args.diagonal_offset,
        textures: args.textures.as_deref().map(Photos::load).transpose()?,
    };
    let bar = cvrl_tools::progress::Bar::new(args.quiet);
    let s = synth(&cfg, &args.out, args.force, &bar)?;
    println!(
        "wrote {} videos, {} frames, {:.1} MB in {:.1} s: {} classes ({}) -> {}",
        s.videos,
        s.frames,
        s.bytes as f64 / 1e6,
        s.seconds,
        s.classes.len(),
        s.classes.join(", "),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_build(args: BuildArgs) -> Result<ExitCode> {
    set_jobs(args.jobs)?;
    cvrl_tools::decode::init();
    if let Some(fps) = args.fps {
        anyhow::ensure!(
            fps.is_finite() && fps > 0.0 && fps <= 1000.0,
            "--fps {fps}: must be in (0, 1000]"
        );
    }
    std::fs::metadata(&args.input)
        .with_context(|| format!("cannot read input {}", args.input.display()))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    // Before anything else, so that a second build of this folder refuses at once.
    let lock = lock_output(&args.out, args.part)?;
    let mut inputs = Inputs::discover(&args.input, args.video_root.as_deref())?;
    let factors = args.factors.clone().or_else(|| {
        let auto = args.input.join(FACTORS_FILE);
        (args.input.is_dir() && auto.is_file()).then_some(auto)
    });
    if let Some(csv) = &factors {
        let m = inputs.attach_factors(csv)?;
        println!(
            "factors {} from {}: {} of {} videos labelled",
            m.names.join(", "),
            csv.display(),
            m.matched,
            inputs.videos.len()
        );
        if m.unmatched_count > 0 {
            eprintln!(
                "cvrl-shard: warning: {} rows of {} name no input video (first: {})",
                m.unmatched_count,
                csv.display(),
                m.unmatched.join(", ")
            );
        }
    }
    let cfg = BuildConfig {
        out: args.out.clone(),
        params: BuildParams {
            short_side: (args.short_side > 0).then_some(args.short_side),
            fps: args.fps,
            pixel_format: args.pixel_format,
            chunk_frames: args.chunk_frames,
            zstd_level: args.zstd_level,
            predictor: args.predictor,
            shard_bytes: args.shard_size,
        },
        part: args.part,
        force: args.force,
    };
    let bar = cvrl_tools::progress::Bar::new(args.quiet);
    if args.verbose {
        cvrl_tools::decode::ffmpeg_log::set_live(Some(bar.line_printer()));
    }
    let summary = build(&inputs, &cfg, lock, &bar)?;
    print_summary(&summary, &inputs, &args.out);
    Ok(if summary.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(3) })
}

/// Most names of skipped files a summary lists.
const SKIPPED_SHOWN: usize = 10;

fn print_summary(s: &BuildSummary, inputs: &Inputs, out: &std::path::Path) {
    let c = &s.manifest.counts;
    if s.already_complete {
        println!(
            "{} is already complete ({} videos); nothing to do (--force rebuilds)",
            out.display(),
            c.videos
        );
    } else {
        let ratio = c.source_bytes as f64 / c.stored_bytes.max(1) as f64;
        println!(
            "stored {} videos, {} frames in {} shards: {:.1} MB ({:.2}x the sources' size) in {:.1} s{}",
            c.videos,
            c.frames,
            s.manifest.shards.len(),
            c.stored_bytes as f64 / 1e6,
            1.0 / ratio.max(1e-9),
            s.seconds,
            if s.resumed > 0 { format!(", resumed after {} videos", s.resumed) } else { String::new() }
        );
    }
    if !s.failures.is_empty() {
        println!(
            "{} inputs failed (see {}):",
            s.failures.len(),
            out.join(&s.manifest.failures).display()
        );
        for f in &s.failures {
            println!("  {}", describe_failure(f));
        }
    }
    let n = inputs.skipped.len();
    if n > 0 {
        let mut names = inputs.skipped[..n.min(SKIPPED_SHOWN)].join(", ");
        if n > SKIPPED_SHOWN {
            names.push_str(&format!(" and {} more", n - SKIPPED_SHOWN));
        }
        let what = if n == 1 { "file that is not a video" } else { "files that are not videos" };
        println!("{n} {what} skipped (in {}): {names}", inputs.root.display());
    }
    println!("index: {}", out.join(&s.manifest.index).display());
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1 parsec").is_err());
        assert!(parse_size("0").is_err());
    }
}
