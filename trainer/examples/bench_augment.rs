//! The augmentation of one training batch (both views of `--batch` videos) on the host path
//! (`augment_clip`, one thread, what a loader worker does per clip) against the device path
//! (`augment::device`: drawing, cutting and packing on the host, then upload and the
//! per-pixel work as tensor ops), in milliseconds per batch, on the CPU and, when libtorch
//! sees one, on CUDA. Both paths get the same drawn parameters; the largest difference
//! between their bytes is printed too.
//!
//! ```sh
//! cargo run --release -p cvrl-trainer --example bench_augment              # synthetic 342x256 yuv420p
//! cargo run --release -p cvrl-trainer --example bench_augment -- --shards DIR  # real frames
//! ```

use anyhow::{Context, Result};
use clap::Parser;
use cvrl_formats::{FrameLayout, PixelFormat, ShardSet};
use cvrl_trainer::augment::device::{draw_params, PackedBatch, Stager};
use cvrl_trainer::augment::{augment_clip, AugmentConfig, ClipParams};
use rand::rngs::Xoshiro256PlusPlus;
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Cuda, Device};

/// Times host and device augmentation of whole batches; prints one table.
#[derive(Parser)]
struct Args {
    /// A shard set to take real frames from (the first `--batch` videos); without it,
    /// synthetic textured 342x256 yuv420p frames.
    #[arg(long)]
    shards: Option<PathBuf>,
    /// Videos per batch (each gives a clip to each of the two views).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Settings as FRAMESxSIZE.
    #[arg(long, value_delimiter = ',', default_value = "16x224,8x64")]
    settings: Vec<String>,
    /// Timed batches per row, after one untimed; the median is reported.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// libtorch threads for the device path on the CPU; 0 keeps libtorch's default.
    #[arg(long, default_value_t = 0)]
    threads: i32,
}

/// The stored frames of one video's clip.
struct Clip {
    layout: FrameLayout,
    frames: Vec<u8>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // As cvrl-train does: freed tensors' memory is reused instead of page-faulted in again.
    cvrl_trainer::device::keep_freed_host_memory();
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    println!(
        "{} videos a batch, both views; host: 1 thread; device path on the CPU: {} libtorch threads",
        args.batch,
        tch::get_num_threads()
    );
    println!("| setting | path | host part ms | device part ms | total ms | max diff |");
    println!("|---|---|---|---|---|---|");
    for setting in &args.settings {
        let (t, s) = setting
            .split_once('x')
            .and_then(|(t, s)| Some((t.parse::<usize>().ok()?, s.parse::<u32>().ok()?)))
            .with_context(|| format!("{setting:?} is not FRAMESxSIZE"))?;
        let clips = clips(&args, t)?;
        bench(&args, &clips, t, s)?;
    }
    Ok(())
}

fn clips(args: &Args, t: usize) -> Result<Vec<Clip>> {
    let Some(dir) = &args.shards else {
        let layout =
            FrameLayout::new(342, 256, PixelFormat::Yuv420p).map_err(anyhow::Error::msg)?;
        return Ok((0..args.batch)
            .map(|v| Clip { layout, frames: synthetic(&layout, t, v as u32) })
            .collect());
    };
    let set = ShardSet::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let mut reader = set.reader()?;
    (0..args.batch)
        .map(|v| {
            let video = v % set.len();
            let n = set.videos()[video].num_frames;
            let indices: Vec<u32> = (0..t as u32).map(|i| i % n).collect();
            let mut frames = Vec::new();
            reader.read_indices(video, &indices, &mut frames)?;
            Ok(Clip { layout: set.layout(video), frames })
        })
        .collect()
}

/// Textured frames: two drifting gratings on a gradient with a little noise in luma, slow
/// colour waves in chroma.
fn synthetic(layout: &FrameLayout, t: usize, video: u32) -> Vec<u8> {
    let (w, h) = (layout.width() as usize, layout.height() as usize);
    let mut out = Vec::with_capacity(t * layout.frame_bytes());
    let mut noise = 0x2545_f491_u32.wrapping_add(video);
    for f in 0..t {
        let phase = f as f32 * 0.2 + video as f32;
        for y in 0..h {
            for x in 0..w {
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                let g = ((x as f32 * 0.13 + phase).sin() + (y as f32 * 0.07 - phase).cos()) * 50.0;
                let v = 110.0 + g + (x + y) as f32 * 0.1 + (noise % 16) as f32;
                out.push(v.clamp(0.0, 255.0) as u8);
            }
        }
        for c in 0..2 {
            for y in 0..h / 2 {
                for x in 0..w / 2 {
                    let v = 128.0 + 80.0 * ((x + 2 * y) as f32 * 0.03 + phase + c as f32).sin();
                    out.push(v as u8);
                }
            }
        }
    }
    out
}

/// Median of `iters` timings of `f`, in ms, after one untimed call.
fn time(iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut ms: Vec<f64> = (0..iters)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

fn bench(args: &Args, clips: &[Clip], t: usize, s: u32) -> Result<()> {
    let views = AugmentConfig::pair().map(|v| AugmentConfig { out_size: s, ..v });
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(args.seed);
    // One set of parameters per clip and view, drawn once: both paths use the same.
    let params: Vec<[Vec<ClipParams>; 2]> = clips
        .iter()
        .map(|c| {
            views.map(|cfg| {
                let mut p = Vec::new();
                draw_params(&mut rng, &cfg, &c.layout, t, &mut p);
                p
            })
        })
        .collect();
    let setting = format!("{t}x{s}");

    let mut host_out = vec![Vec::new(); 2 * clips.len()];
    let host_ms = time(args.iters, || {
        for (i, (c, p)) in clips.iter().zip(&params).enumerate() {
            for v in 0..2 {
                let out = &mut host_out[2 * i + v];
                augment_clip(&c.layout, &c.frames, t, &p[v], &views[v], out).expect("valid clip");
            }
        }
    });
    println!("| {setting} | host | {host_ms:.1} | | {host_ms:.1} | |");

    let mut batches = [PackedBatch::new(s), PackedBatch::new(s)];
    let pack_ms = time(args.iters, || {
        for (v, batch) in batches.iter_mut().enumerate() {
            batch.clear(s);
            for (c, p) in clips.iter().zip(&params) {
                batch.push_clip(&c.layout, &c.frames, t, &p[v]).expect("valid clip");
            }
            batch.finish().expect("a small batch");
        }
    });
    let mut devices = vec![Device::Cpu];
    if Cuda::is_available() {
        devices.push(Device::Cuda(0));
    }
    for device in devices {
        let mut stager = Stager::new(device);
        let mut outs = Vec::new();
        let device_ms = time(args.iters, || {
            outs = batches.iter().map(|b| stager.upload(b).augment()).collect();
            if let Device::Cuda(i) = device {
                Cuda::synchronize(i as i64);
            }
        });
        let max = max_diff(&host_out, &outs, clips.len());
        let total = pack_ms + device_ms;
        println!(
            "| {setting} | device ({device:?}) | {pack_ms:.1} | {device_ms:.1} | {total:.1} | {max} |"
        );
    }
    Ok(())
}

/// Largest difference between the host's clips (clip-major, view-minor) and the device's
/// two `[B, 3, T, S, S]` views.
fn max_diff(host: &[Vec<u8>], device: &[tch::Tensor], b: usize) -> u8 {
    let views: Vec<Vec<u8>> = device
        .iter()
        .map(|d| Vec::<u8>::try_from(d.to_device(Device::Cpu).view([-1])).expect("u8"))
        .collect();
    let per_clip = host[0].len();
    (0..b)
        .flat_map(|i| (0..2).map(move |v| (i, v)))
        .flat_map(|(i, v)| {
            let d = &views[v][i * per_clip..(i + 1) * per_clip];
            host[2 * i + v].iter().zip(d).map(|(&a, &b)| a.abs_diff(b)).collect::<Vec<_>>()
        })
        .max()
        .unwrap_or(0)
}
