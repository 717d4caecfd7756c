//! Measures `pixel::yuv420p_to_rgb24`, the conversion behind every RGB read (the Python
//! package's `rgb=True`, `cvrl-inspect`'s PNGs): Mpixel/s on one thread for a few frame
//! sizes and two contents, best of `repeat` passes over `frames` frames; then
//! `yuv420p_to_rgb24_crop`, the Python package's crop-box reads, as is and mirrored
//! (Mpixel/s of box pixels). `noise`: uniform
//! random planes (a branchy conversion mispredicts its clamps); `smooth`: gradients with a
//! little noise, in range like decoded video.
//!
//! ```text
//! cargo run --release -p cvrl-formats --example rgb_convert -- [frames=32] [repeat=20]
//! ```
//!
//! Wall time of the fastest pass: on a shared machine the best pass is the one least
//! disturbed, so compare builds in one sitting, not across days.

use cvrl_formats::pixel::{yuv420p_to_rgb24, yuv420p_to_rgb24_crop, Crop};
use cvrl_formats::{FrameLayout, PixelFormat};
use std::process::ExitCode;
use std::time::Instant;

/// The bench's shard frames (456x256), a 224x224 crop, an odd chroma width, and 1080p.
const SIZES: [(u32, u32); 4] = [(456, 256), (224, 224), (342, 256), (1920, 1080)];

fn parse_args() -> Result<(usize, usize), String> {
    let (mut frames, mut repeat) = (32, 20);
    for kv in std::env::args().skip(1) {
        let (k, v) = kv.split_once('=').ok_or(format!("expected key=value, got {kv:?}"))?;
        let n: usize = v.parse().map_err(|_| format!("bad number {v:?}"))?;
        match k {
            "frames" => frames = n.max(1),
            "repeat" => repeat = n.max(1),
            _ => return Err(format!("unknown option {k:?} (frames, repeat)")),
        }
    }
    Ok((frames, repeat))
}

/// Deterministic noise (xorshift64), so every build converts the same bytes; `smooth`
/// keeps 3 bits of it on top of a diagonal ramp in 32..224.
fn frames_of(len: usize, width: usize, smooth: bool) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ len as u64;
    (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let n = (state >> 24) as u8;
            if smooth {
                let ramp = (i % width + i / width) % 192;
                32 + ramp as u8 + (n & 7)
            } else {
                n
            }
        })
        .collect()
}

fn main() -> ExitCode {
    let (frames, repeat) = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rgb_convert: {e}");
            return ExitCode::from(2);
        }
    };
    println!("| frame | content | Mpixel/s | ms per frame |\n|---|---|---:|---:|");
    for ((w, h), smooth) in SIZES.into_iter().flat_map(|s| [(s, false), (s, true)]) {
        let layout = FrameLayout::new(w, h, PixelFormat::Yuv420p).expect("even sizes");
        let yuv = frames_of(layout.frame_bytes() * frames, w as usize, smooth);
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        let mut best = f64::INFINITY;
        for _ in 0..repeat {
            let t = Instant::now();
            for f in yuv.chunks_exact(layout.frame_bytes()) {
                yuv420p_to_rgb24(&layout, f, &mut rgb);
            }
            best = best.min(t.elapsed().as_secs_f64());
            std::hint::black_box(&rgb);
        }
        let pixels = f64::from(w * h) * frames as f64;
        let content = if smooth { "smooth" } else { "noise" };
        let (rate, ms) = (pixels / best / 1e6, 1e3 * best / frames as f64);
        println!("| {w}x{h} | {content} | {rate:.0} | {ms:.3} |");
    }
    println!("\n| frame | box (x, y, w, h) | mirrored | Mpixel/s |\n|---|---|---|---:|");
    let layout = FrameLayout::new(456, 256, PixelFormat::Yuv420p).expect("even sizes");
    let yuv = frames_of(layout.frame_bytes() * frames, 456, true);
    // Odd edges on both sides (the scratch rows' extra column), and the whole frame.
    for crop in [Crop { x: 57, y: 31, w: 301, h: 191 }, Crop::full(&layout)] {
        for flip in [false, true] {
            let mut rgb = vec![0u8; crop.rgb_bytes()];
            let mut best = f64::INFINITY;
            for _ in 0..repeat {
                let t = Instant::now();
                for f in yuv.chunks_exact(layout.frame_bytes()) {
                    yuv420p_to_rgb24_crop(&layout, f, crop, flip, &mut rgb);
                }
                best = best.min(t.elapsed().as_secs_f64());
                std::hint::black_box(&rgb);
            }
            let rate = f64::from(crop.w * crop.h) * frames as f64 / best / 1e6;
            let Crop { x, y, w, h } = crop;
            println!("| 456x256 | {x}, {y}, {w}, {h} | {flip} | {rate:.0} |");
        }
    }
    ExitCode::SUCCESS
}
