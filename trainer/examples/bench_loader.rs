//! Loader benchmark, the Rust half of `just bench-loader` (scripts/bench-loader.sh runs it
//! and the Python peers, and prints one table): clip pairs per second of the real training
//! [`Loader`] with the CVRL [`AugmentTransform`], against the floor, plain zstd
//! decompression of exactly the frames the same clips need.
//!
//! Rows it measures (each with 1 worker and with `--workers`, best of `--reps`):
//! - `loader`: `Loader` + `AugmentTransform::new(crop)` (the full CVRL augmentation of both
//!   views), the trainer's own configuration: 2 clips of 16 frames at stride 2, decreasing
//!   interval distribution.
//! - `loader_cropflip`: the same loader with an augmentation that only crops, resizes and
//!   flips (jitter, grayscale, blur and solarization probabilities 0): the work the
//!   on-the-fly peers do.
//! - `loader_cut`: the same loader cutting clips for augmentation on the device
//!   (`--augment-on device`): the host's share of the full CVRL augmentation, reading the
//!   frames, drawing the parameters and packing the crop boxes; the per-pixel work is not
//!   timed here (`bench_augment` times it on a device).
//! - `floor_yuv` / `floor_rgb`: the 2 x 16 frames of each of the same pairs (the stored
//!   `yuv420p`, and converted to `rgb24`), each clip compressed beforehand as one plain zstd
//!   level-1 frame; timed: decompressing them, nothing else.
//!
//! It also prints where a 1-thread pair's time goes (chunk reads vs augmentation, reading
//! as the loader does, `FrameReader::read_indices`), the chunk codec's decode MB/s, and the index's cost per video. Output: tab-separated lines
//! (`row`, `info`) that the driver turns into markdown.
//!
//! ```sh
//! cargo run --release -p cvrl-trainer --example bench_loader -- data/bench-loader/shards
//! ```

use anyhow::{bail, Context, Result};
use clap::Parser;
use cvrl_formats::{pixel::yuv420p_to_rgb24, ChunkEntry, FrameLayout, ShardSet, VideoRow};
use cvrl_trainer::augment::AugmentConfig;
use cvrl_trainer::augment::AugmentTransform;
use cvrl_trainer::loader::{epoch_order, mix, ClipTransform, Loader, LoaderConfig, View};
use cvrl_trainer::sampler::{sample_pair, ClipSpec, IntervalDistribution};
use rand::rngs::Xoshiro256PlusPlus;
use rand::SeedableRng;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Times the shard loader and the zstd floor on a shard set; prints tab-separated rows.
#[derive(Parser)]
struct Args {
    /// The shard set (a directory written by `cvrl-shard build`).
    shards: PathBuf,
    /// Clip pairs timed per measurement, after the warm-up (rounded up to whole batches).
    #[arg(long, default_value_t = 96)]
    pairs: usize,
    /// Videos per batch (each gives one pair).
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Batches each worker builds before the clock starts.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Workers of the "all cores" rows; 0 = the machine's available parallelism.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Measurements of each row; the fastest is reported.
    #[arg(long, default_value_t = 2)]
    reps: usize,
    /// Passes over the floor's clips per measurement (it is fast; more passes, steadier).
    #[arg(long, default_value_t = 5)]
    floor_passes: usize,
    /// Side of the square output frames.
    #[arg(long, default_value_t = 224)]
    crop: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Which parts to run (for profiling one of them): loader, cropflip, cut, breakdown,
    /// floor.
    #[arg(long, value_delimiter = ',', default_value = "loader,cropflip,cut,breakdown,floor")]
    only: Vec<String>,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_loader: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One pair as the loader draws it: the video, and the stored frame indices of both clips.
struct Pair {
    video: usize,
    clips: [Vec<u32>; 2],
    /// The pair's generator right after `sample_pair` (what the transform then draws from).
    rng: Xoshiro256PlusPlus,
}

fn run() -> Result<()> {
    let args = Args::parse();
    let all = if args.workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.workers
    };
    let set = Arc::new(
        ShardSet::open(&args.shards)
            .with_context(|| format!("opening the shard set {}", args.shards.display()))?,
    );
    if set.len() < args.batch_size {
        bail!("{} videos, fewer than the batch size {}", set.len(), args.batch_size);
    }
    let clip = ClipSpec::default();
    let cfg = |workers: usize, on_device: bool| LoaderConfig {
        batch_size: args.batch_size,
        workers,
        prefetch: 4,
        seed: args.seed,
        clip,
        interval: IntervalDistribution::Decreasing,
        rank: 0,
        ranks: 1,
        on_device,
    };
    let batches = args.pairs.div_ceil(args.batch_size).max(1);
    let full: Arc<dyn ClipTransform> = Arc::new(AugmentTransform::new(args.crop));
    let cropflip: Arc<dyn ClipTransform> = {
        let plain = |c: AugmentConfig| AugmentConfig { out_size: args.crop, ..c }.geometric_only();
        let [a, b] = AugmentConfig::pair();
        Arc::new(AugmentTransform::with_views([plain(a), plain(b)]))
    };
    let mut worker_counts = vec![1];
    if all > 1 {
        worker_counts.push(all);
    }

    info("videos", set.len());
    info("threads_all", all);
    info("batch_size", args.batch_size);
    index_cost(&set, &args.shards)?;

    // The loader, full augmentation and crop + flip only.
    let wanted = |part: &str| args.only.iter().any(|p| p == part);
    for (part, name, transform, on_device) in [
        ("loader", "loader", &full, false),
        ("cropflip", "loader_cropflip", &cropflip, false),
        ("cut", "loader_cut", &full, true),
    ] {
        if !wanted(part) {
            continue;
        }
        for &w in &worker_counts {
            let mut times = Vec::new();
            for _ in 0..args.reps {
                let c = cfg(w, on_device);
                times.push(time_loader(&set, c, transform.clone(), args.warmup * w, batches)?);
            }
            row(name, w, batches * args.batch_size, &times);
        }
    }

    // The pairs the timed batches of a 1-worker run hold (the warm-up batches excluded).
    let first_step = args.warmup as u64;
    let pairs = draw_pairs(&set, &cfg(1, false), first_step, batches);
    if wanted("breakdown") {
        breakdown(&set, &pairs, &*full, &*cropflip, args.crop)?;
    }
    if !wanted("floor") {
        return Ok(());
    }

    // The floor: those clips' frames, plain zstd level 1, one zstd frame per clip.
    let (yuv, rgb) = floor_clips(&set, &pairs)?;
    for (name, clips) in [("floor_yuv", &yuv), ("floor_rgb", &rgb)] {
        let raw: usize = clips.iter().map(|c| c.1).sum();
        let packed: usize = clips.iter().map(|c| c.0.len()).sum();
        info(&format!("{name}_bytes_per_pair"), raw / pairs.len());
        info(&format!("{name}_compressed_bytes_per_pair"), packed / pairs.len());
        for &w in &worker_counts {
            let mut times = Vec::new();
            for _ in 0..args.reps {
                times.push(time_floor(clips, w, args.floor_passes)?);
            }
            row(name, w, pairs.len() * args.floor_passes, &times);
        }
    }
    Ok(())
}

fn info(key: &str, value: impl std::fmt::Display) {
    println!("info\t{key}\t{value}");
}

/// `row NAME WORKERS PAIRS BEST_WALL_S PAIRS_PER_S ALL_WALLS BEST_CPU_S`; `times` holds
/// `(wall, cpu)` seconds of each measurement.
fn row(name: &str, workers: usize, pairs: usize, times: &[(f64, f64)]) {
    let best = times.iter().map(|t| t.0).fold(f64::INFINITY, f64::min);
    let cpu = times.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
    let all: Vec<String> = times.iter().map(|t| format!("{:.3}", t.0)).collect();
    println!(
        "row\t{name}\t{workers}\t{pairs}\t{best:.4}\t{:.2}\t{}\t{cpu:.3}",
        pairs as f64 / best,
        all.join(",")
    );
    eprintln!(
        "bench_loader: {name} x{workers}: {:.2} pairs/s, {:.2} pairs per CPU second",
        pairs as f64 / best,
        pairs as f64 / cpu
    );
}

/// CPU seconds (user + system, all threads) this process has used so far, from
/// `/proc/self/stat` (in clock ticks of 1/100 s, Linux's fixed USER_HZ).
fn process_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    // Fields after the parenthesised command name: state is the 3rd field, utime the 14th.
    let rest = stat.rsplit_once(") ").map_or("", |r| r.1);
    let f: Vec<f64> = rest.split(' ').skip(11).take(2).filter_map(|x| x.parse().ok()).collect();
    if f.len() == 2 {
        (f[0] + f[1]) / 100.0
    } else {
        f64::NAN
    }
}

/// Wall and CPU seconds for `batches` batches once `warmup` batches have come out.
fn time_loader(
    set: &Arc<ShardSet>,
    cfg: LoaderConfig,
    transform: Arc<dyn ClipTransform>,
    warmup: usize,
    batches: usize,
) -> Result<(f64, f64)> {
    let mut loader = Loader::start(set.clone(), cfg, transform, 0).map_err(anyhow::Error::msg)?;
    for _ in 0..warmup {
        loader.next_batch().context("the loader stopped during the warm-up")?;
    }
    let (t, cpu) = (Instant::now(), process_cpu_s());
    for _ in 0..batches {
        let batch = loader.next_batch().context("the loader stopped")?;
        std::hint::black_box(&batch.clips);
        loader.recycle(batch);
    }
    let wall = t.elapsed().as_secs_f64();
    let cpu = process_cpu_s() - cpu;
    if loader.stats().skipped() > 0 {
        bail!("the loader skipped {} videos", loader.stats().skipped());
    }
    Ok((wall, cpu))
}

/// The pairs of steps `first..first + batches`, drawn exactly as the loader draws them.
fn draw_pairs(set: &ShardSet, cfg: &LoaderConfig, first: u64, batches: usize) -> Vec<Pair> {
    let per_epoch = (set.len() / cfg.batch_size) as u64;
    let mut out = Vec::new();
    for step in first..first + batches as u64 {
        let epoch = step / per_epoch;
        let order = epoch_order(set.len(), cfg.seed, epoch);
        let base = (step % per_epoch) as usize * cfg.batch_size;
        for slot in 0..cfg.batch_size {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(
                cfg.seed ^ mix(epoch ^ mix((base + slot) as u64))
            ));
            let video = order[(base + slot) % order.len()] as usize;
            let row = &set.videos()[video];
            let starts = sample_pair(&mut rng, cfg.interval, &cfg.clip, row.num_frames, row.fps());
            let mut clips = [Vec::new(), Vec::new()];
            cfg.clip.indices(starts.first, row.num_frames, row.fps(), &mut clips[0]);
            cfg.clip.indices(starts.second, row.num_frames, row.fps(), &mut clips[1]);
            out.push(Pair { video, clips, rng });
        }
    }
    out
}

/// One thread, the loader's steps one by one: reading the clips' frames (chunk CRC +
/// decode + copy) against each transform, in this thread's CPU time.
fn breakdown(
    set: &ShardSet,
    pairs: &[Pair],
    full: &dyn ClipTransform,
    cropflip: &dyn ClipTransform,
    crop: u32,
) -> Result<()> {
    let mut reader = set.reader()?;
    let out_len = full.output_len(16);
    let mut out = vec![0u8; out_len];
    let mut frames = [Vec::new(), Vec::new()];
    let (mut read_s, mut full_s, mut crop_s) = (0.0, 0.0, 0.0);
    let (mut decoded, mut chunks, mut compressed) = (0usize, 0usize, 0usize);
    let mut cached: Option<(usize, usize, u32)> = None;
    for p in pairs {
        let row = &set.videos()[p.video];
        let layout = set.layout(p.video);
        let (t, before) = (thread_cpu_s(), reader.decoded_frames());
        for (clip, buf) in p.clips.iter().zip(frames.iter_mut()) {
            buf.clear();
            reader.read_indices(p.video, clip, buf)?;
        }
        read_s += thread_cpu_s() - t;
        decoded += (reader.decoded_frames() - before) as usize * layout.frame_bytes();
        // The chunks the reader touched: each run of a clip's frames in one chunk, unless the
        // chunk it keeps between calls already holds the run.
        for clip in &p.clips {
            let mut k = 0;
            while k < clip.len() {
                let c = chunk_of(&row.chunks, clip[k]);
                let e = row.chunks[c];
                // As the reader: a clip that wraps round jumps back to an earlier chunk.
                let inside = |i: u32| i >= e.first_frame && i - e.first_frame < e.num_frames;
                let run = clip[k..].iter().take_while(|&&i| inside(i));
                let need = run.clone().map(|&i| i - e.first_frame + 1).max().unwrap_or(0);
                k += run.count();
                if !matches!(cached, Some((v, cc, n)) if v == p.video && cc == c && n >= need) {
                    cached = Some((p.video, c, need));
                    compressed += e.length as usize;
                    chunks += 1;
                }
            }
        }
        for (transform, total) in [(full, &mut full_s), (cropflip, &mut crop_s)] {
            let mut rng = p.rng.clone();
            let t = thread_cpu_s();
            for ((clip, buf), view) in p.clips.iter().zip(&frames).zip([View::First, View::Second])
            {
                transform.apply(view, &mut rng, &layout, buf, clip.len(), &mut out);
            }
            *total += thread_cpu_s() - t;
            std::hint::black_box(&out);
        }
    }
    let n = pairs.len() as f64;
    info("breakdown_pairs", pairs.len());
    info("read_ms_per_pair", format!("{:.2}", 1e3 * read_s / n));
    info("augment_full_ms_per_pair", format!("{:.2}", 1e3 * full_s / n));
    info("augment_cropflip_ms_per_pair", format!("{:.2}", 1e3 * crop_s / n));
    info("chunks_per_clip", format!("{:.2}", chunks as f64 / (2.0 * n)));
    info("decoded_bytes_per_pair", (decoded as f64 / n) as u64);
    info("chunk_compressed_bytes_per_pair", (compressed as f64 / n) as u64);
    info("codec_decode_mb_s", format!("{:.1}", decoded as f64 / 1e6 / read_s));
    let fb = set.layout(pairs[0].video);
    info("stored_frame", format!("{}x{} {}", fb.width(), fb.height(), fb.format().as_str()));
    info("output_clip", format!("3x16x{crop}x{crop} u8"));
    Ok(())
}

/// CPU seconds this thread has run, in nanoseconds from `/proc/thread-self/schedstat`.
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split(' ').next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e9)
}

fn chunk_of(chunks: &[ChunkEntry], frame: u32) -> usize {
    chunks.partition_point(|c| c.first_frame <= frame) - 1
}

/// `(compressed, raw length)` of every clip of `pairs`, as stored (`yuv420p`) and as `rgb24`.
type Clips = Vec<(Vec<u8>, usize)>;

fn floor_clips(set: &ShardSet, pairs: &[Pair]) -> Result<(Clips, Clips)> {
    let mut reader = set.reader()?;
    let (mut yuv, mut rgb) = (Vec::new(), Vec::new());
    let mut frames = Vec::new();
    let mut rgb_frames = Vec::new();
    for p in pairs {
        let layout: FrameLayout = set.layout(p.video);
        let rgb_bytes = layout.width() as usize * layout.height() as usize * 3;
        for clip in &p.clips {
            frames.clear();
            rgb_frames.clear();
            for &i in clip {
                let f = reader.frame(p.video, i)?;
                frames.extend_from_slice(f);
                let at = rgb_frames.len();
                rgb_frames.resize(at + rgb_bytes, 0);
                yuv420p_to_rgb24(&layout, f, &mut rgb_frames[at..]);
            }
            yuv.push((zstd::bulk::compress(&frames, 1)?, frames.len()));
            rgb.push((zstd::bulk::compress(&rgb_frames, 1)?, rgb_frames.len()));
        }
    }
    Ok((yuv, rgb))
}

/// Wall and CPU seconds to decompress every clip `passes` times on `workers` threads (clip `i` on
/// thread `i % workers`), each into a reused buffer.
fn time_floor(clips: &Clips, workers: usize, passes: usize) -> Result<(f64, f64)> {
    let largest = clips.iter().map(|c| c.1).max().unwrap_or(0);
    let (t, cpu) = (Instant::now(), process_cpu_s());
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || -> Result<()> {
                    let mut d = zstd::bulk::Decompressor::new()?;
                    let mut buf = vec![0u8; largest];
                    for _ in 0..passes {
                        for (packed, len) in clips.iter().skip(w).step_by(workers) {
                            let n = d.decompress_to_buffer(packed, &mut buf[..])?;
                            if n != *len {
                                bail!("decompressed {n} bytes, expected {len}");
                            }
                            std::hint::black_box(&buf);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("a floor thread panicked"))??;
        }
        Ok(())
    })?;
    Ok((t.elapsed().as_secs_f64(), process_cpu_s() - cpu))
}

/// Bytes the index costs per video: on disk (`index.parquet`) and in memory (each
/// [`VideoRow`] inline plus what its strings, chunk table and factors own; allocator
/// overhead and the set's per-video layout excluded).
fn index_cost(set: &ShardSet, dir: &std::path::Path) -> Result<()> {
    let path = dir.join(&set.manifest().index);
    let disk = std::fs::metadata(&path).with_context(|| format!("{}", path.display()))?.len();
    let n = set.len().max(1);
    let heap = |r: &VideoRow| -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        r.video_id.capacity()
            + r.source_path.capacity()
            + opt(&r.label)
            + opt(&r.split)
            + r.shard.capacity()
            + r.pixel_format.capacity()
            + r.source_codec.capacity()
            + r.chunks.capacity() * std::mem::size_of::<ChunkEntry>()
            + r.factors.iter().map(|(k, v)| k.capacity() + v.capacity()).sum::<usize>()
    };
    let mem: usize =
        set.videos().iter().map(|r| std::mem::size_of::<VideoRow>() + heap(r)).sum::<usize>();
    let chunks: usize = set.videos().iter().map(|r| r.chunks.len()).sum();
    info("index_parquet_bytes", disk);
    info("index_parquet_bytes_per_video", disk as usize / n);
    info("index_memory_bytes_per_video", mem / n);
    info("index_chunks_per_video", format!("{:.1}", chunks as f64 / n as f64));
    info("index_row_inline_bytes", std::mem::size_of::<VideoRow>());
    info("index_chunk_entry_bytes", std::mem::size_of::<ChunkEntry>());
    Ok(())
}
