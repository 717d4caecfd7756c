//! Measures how long the trainer waits for one clip: random clips read from a shard set with
//! [`FrameReader::read_frames`], single-threaded, page cache warm.
//!
//! ```text
//! cargo build --release -p cvrl-tools --examples
//! target/release/examples/clip_read out/ clips=200 count=16 stride=2 repeat=3
//! ```
//!
//! A clip is `count` frames at `stride` from a random start (the CVRL default, 16 frames at
//! stride 2, spans 31 stored frames; with 16-frame chunks that touches 2 or 3 chunks, each
//! decompressed once). Options, all `key=value`: `clips` (random clips per video, default
//! 200), `count`, `stride`, `repeat` (the same clips are read `repeat` times; the best pass
//! is reported, default 3), `seed`, `videos=ID,ID` (only these videos; default all) and
//! `tsv` (tab-separated lines instead of a markdown table, for scripts).
//!
//! Clips are read round-robin over the videos, and before each clip the reader is pointed at
//! a chunk the clip does not touch (untimed), so no clip starts from a chunk the previous one
//! left decompressed. Time is this thread's CPU time (Linux schedstat; wall time where that
//! is unavailable), so other processes on a shared machine perturb it less; wall time is
//! printed too. Before timing, every chunk of the chosen videos is decoded once to warm the
//! page cache and the reader's buffers.

use cvrl_formats::{FrameReader, ShardSet};
use std::process::ExitCode;
use std::time::Instant;

struct Args {
    dir: String,
    clips: usize,
    count: u32,
    stride: u32,
    repeat: usize,
    seed: u64,
    videos: Option<Vec<String>>,
    tsv: bool,
}

fn parse_args() -> Result<Args, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let [dir, rest @ ..] = &argv[..] else {
        return Err("usage: clip_read SET_DIR [clips=N] [count=N] [stride=N] [repeat=N] [seed=N] [videos=ID,..] [tsv]".into());
    };
    let mut a = Args {
        dir: dir.clone(),
        clips: 200,
        count: 16,
        stride: 2,
        repeat: 3,
        seed: 1,
        videos: None,
        tsv: false,
    };
    fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, String> {
        v.parse().map_err(|_| format!("bad {k} {v:?}"))
    }
    for kv in rest {
        if kv == "tsv" {
            a.tsv = true;
            continue;
        }
        let (k, v) = kv.split_once('=').ok_or(format!("expected key=value, got {kv:?}"))?;
        match k {
            "clips" => a.clips = num(k, v)?,
            "count" => a.count = num(k, v)?,
            "stride" => a.stride = num(k, v)?,
            "repeat" => a.repeat = num::<usize>(k, v)?.max(1),
            "seed" => a.seed = num(k, v)?,
            "videos" => a.videos = Some(v.split(',').map(str::to_string).collect()),
            _ => return Err(format!("unknown option {k:?}")),
        }
    }
    if a.count == 0 || a.stride == 0 || a.clips == 0 {
        return Err("clips, count and stride must be positive".into());
    }
    Ok(a)
}

/// xorshift64*: reproducible starts without another dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) % n
    }
}

/// This thread's CPU seconds (schedstat), or wall seconds where unavailable.
fn cpu_now(t0: Instant) -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or_else(|| t0.elapsed().as_secs_f64(), |ns| ns as f64 * 1e-9)
}

struct Video {
    index: usize,
    id: String,
    width: u32,
    height: u32,
    frames: u32,
    starts: Vec<u32>,
    chunks_touched: usize,
    /// Frames decompressed over all clips (whole chunks).
    frames_decoded: u64,
    best_cpu: f64,
    best_wall: f64,
}

/// Index of the chunk holding `frame`.
fn chunk_of(set: &ShardSet, video: usize, frame: u32) -> usize {
    set.videos()[video].chunks.partition_point(|c| c.first_frame <= frame) - 1
}

/// Leaves the reader's buffer holding a chunk outside `first..=last` (if the video has one).
fn point_elsewhere(
    reader: &mut FrameReader<'_>,
    set: &ShardSet,
    video: usize,
    first: usize,
    last: usize,
) -> Result<(), String> {
    let chunks = &set.videos()[video].chunks;
    let other = if first > 0 {
        Some(0)
    } else if last + 1 < chunks.len() {
        Some(chunks.len() - 1)
    } else {
        None
    };
    if let Some(c) = other {
        reader.frame(video, chunks[c].first_frame).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn run() -> Result<(), String> {
    let a = parse_args()?;
    let set = ShardSet::open(a.dir.as_ref()).map_err(|e| e.to_string())?;
    let span = (a.count - 1) * a.stride + 1;
    let mut videos = choose_videos(&a, &set, span)?;
    time_clips(&a, &set, &mut videos, span)?;
    print_table(&a, &videos, span);
    Ok(())
}

/// The videos to read (all, or those of `videos=`) that hold a clip, with their random clip
/// starts and what those clips touch.
fn choose_videos(a: &Args, set: &ShardSet, span: u32) -> Result<Vec<Video>, String> {
    let mut rng = Rng(a.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut videos = Vec::new();
    for (i, row) in set.videos().iter().enumerate() {
        if a.videos.as_ref().is_some_and(|want| !want.contains(&row.video_id)) {
            continue;
        }
        if row.num_frames < span {
            eprintln!("clip_read: skipping {} ({} frames < {span})", row.video_id, row.num_frames);
            continue;
        }
        let starts: Vec<u32> =
            (0..a.clips).map(|_| rng.below(u64::from(row.num_frames - span + 1)) as u32).collect();
        let (mut chunks_touched, mut frames_decoded) = (0, 0u64);
        for &s in &starts {
            let (first, last) = (chunk_of(set, i, s), chunk_of(set, i, s + span - 1));
            chunks_touched += last - first + 1;
            frames_decoded +=
                row.chunks[first..=last].iter().map(|c| u64::from(c.num_frames)).sum::<u64>();
        }
        videos.push(Video {
            index: i,
            id: row.video_id.clone(),
            width: row.width,
            height: row.height,
            frames: row.num_frames,
            starts,
            chunks_touched,
            frames_decoded,
            best_cpu: f64::INFINITY,
            best_wall: f64::INFINITY,
        });
    }
    if let Some(want) = &a.videos {
        for id in want {
            if !videos.iter().any(|v| &v.id == id) {
                return Err(format!("no video {id:?} with at least {span} frames in {}", a.dir));
            }
        }
    }
    if videos.is_empty() {
        return Err(format!("no video with at least {span} frames in {}", a.dir));
    }
    Ok(videos)
}

/// Reads every clip of every video `a.repeat` times, keeping each video's best pass.
fn time_clips(a: &Args, set: &ShardSet, videos: &mut [Video], span: u32) -> Result<(), String> {
    let mut reader = set.reader().map_err(|e| e.to_string())?;
    let mut buf: Vec<u8> = Vec::new();
    // Warm up: every chunk once (page cache, decoder state, buffer sizes).
    for v in videos.iter() {
        for c in &set.videos()[v.index].chunks {
            reader.frame(v.index, c.first_frame).map_err(|e| e.to_string())?;
        }
        buf.clear();
        reader
            .read_frames(v.index, v.starts[0], a.count, a.stride, &mut buf)
            .map_err(|e| e.to_string())?;
    }

    let t0 = Instant::now();
    for _ in 0..a.repeat {
        let mut cpu = vec![0.0f64; videos.len()];
        let mut wall = vec![0.0f64; videos.len()];
        for k in 0..a.clips {
            for (j, v) in videos.iter().enumerate() {
                let start = v.starts[k];
                let (first, last) =
                    (chunk_of(set, v.index, start), chunk_of(set, v.index, start + span - 1));
                point_elsewhere(&mut reader, set, v.index, first, last)?;
                buf.clear();
                let w = Instant::now();
                let c = cpu_now(t0);
                reader
                    .read_frames(v.index, start, a.count, a.stride, &mut buf)
                    .map_err(|e| format!("{}: {e}", v.id))?;
                cpu[j] += cpu_now(t0) - c;
                wall[j] += w.elapsed().as_secs_f64();
                std::hint::black_box(&buf);
            }
        }
        for (j, v) in videos.iter_mut().enumerate() {
            v.best_cpu = v.best_cpu.min(cpu[j]);
            v.best_wall = v.best_wall.min(wall[j]);
        }
    }
    Ok(())
}

/// One line per video: tab-separated with `tsv`, else a markdown table.
fn print_table(a: &Args, videos: &[Video], span: u32) {
    let n = a.clips as f64;
    if a.tsv {
        println!("video\twidth\theight\tframes\tclips\tchunks_per_clip\tms_per_clip_cpu\tms_per_clip_wall");
        for v in videos {
            println!(
                "{}\t{}\t{}\t{}\t{}\t{:.2}\t{:.3}\t{:.3}",
                v.id,
                v.width,
                v.height,
                v.frames,
                a.clips,
                v.chunks_touched as f64 / n,
                v.best_cpu / n * 1e3,
                v.best_wall / n * 1e3
            );
        }
    } else {
        println!(
            "{} clips per video of {} frames at stride {} ({span} stored frames), best of {} passes, 1 thread\n",
            a.clips, a.count, a.stride, a.repeat
        );
        println!("| video | size | frames | chunks/clip | ms/clip (CPU) | ms/clip (wall) | stored frames decoded/s |");
        println!("|---|---|---:|---:|---:|---:|---:|");
        for v in videos {
            let chunks = v.chunks_touched as f64 / n;
            let frames_per_clip = v.frames_decoded as f64 / n;
            println!(
                "| {} | {}x{} | {} | {:.2} | {:.3} | {:.3} | {:.0} |",
                v.id,
                v.width,
                v.height,
                v.frames,
                chunks,
                v.best_cpu / n * 1e3,
                v.best_wall / n * 1e3,
                frames_per_clip / (v.best_cpu / n)
            );
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clip_read: {e}");
            ExitCode::FAILURE
        }
    }
}
