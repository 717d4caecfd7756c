//! The tiny synthetic shard set the training tests share, written with cvrl-formats:
//! `VIDEOS` moving gratings, optionally labelled with one of `CLASSES` classes, and the
//! tiny training configuration they run.

#![allow(dead_code)] // each test binary uses its own part

use cvrl_formats::codec::{ChunkEncoder, PredictorMode};
use cvrl_formats::manifest::ShardInfo;
use cvrl_formats::{
    BuildParams, FrameLayout, Manifest, PixelFormat, RecordBuilder, ShardWriter, VideoRow,
    VideoSpec,
};
use cvrl_trainer::train::{Preset, RunLength, TrainConfig};
use std::path::{Path, PathBuf};

pub const W: u32 = 48;
pub const H: u32 = 40;
pub const VIDEOS: u32 = 16;
pub const FRAMES: u32 = 24;
pub const BATCH: usize = 8;

/// Frame `f` of video `v`: a grating whose orientation, frequency and drift speed depend
/// on `v`, modulated by a per-video texture, over a per-video colour tint; it moves from
/// frame to frame.
fn frame(v: u32, f: u32, layout: &FrameLayout) -> Vec<u8> {
    let mut out = vec![0u8; layout.frame_bytes()];
    let (v, f) = (f64::from(v), f64::from(f));
    let (c, s) = ((v * 0.7).cos(), (v * 0.7).sin());
    let freq = 0.25 + 0.08 * (v % 5.0);
    let speed = 0.3 + 0.15 * (v % 3.0);
    for y in 0..H {
        for x in 0..W {
            let (xf, yf) = (f64::from(x), f64::from(y));
            let grating = ((xf * c + yf * s) * freq + f * speed).sin();
            let texture = 0.5 + 0.5 * ((xf * 0.21 + v) * (yf * 0.17)).cos();
            out[(y * W + x) as usize] = (128.0 + 90.0 * grating * texture).clamp(0.0, 255.0) as u8;
        }
    }
    let luma = (W * H) as usize;
    let chroma = luma / 4;
    out[luma..luma + chroma].fill((128.0 + 60.0 * (v * 1.3).sin()) as u8);
    out[luma + chroma..].fill((128.0 + 60.0 * (v * 2.1).cos()) as u8);
    out
}

/// Classes of a labelled set; video `v` is class `v % CLASSES`.
pub const CLASSES: u32 = 4;

/// `VIDEOS` videos of `FRAMES` frames, `W`x`H` yuv420p at 25 fps, in one shard; with
/// `labelled`, video `v` belongs to class `c{v % CLASSES}`.
pub fn write_set(dir: &Path, labelled: bool) {
    write_set_with_splits(dir, labelled, |_| None);
}

/// [`write_set`] with video `v` in split `split_of(v)` (the index's `split` column).
pub fn write_set_with_splits(
    dir: &Path,
    labelled: bool,
    split_of: fn(u32) -> Option<&'static str>,
) {
    let layout = FrameLayout::new(W, H, PixelFormat::Yuv420p).unwrap();
    let mut enc = ChunkEncoder::new(1, PredictorMode::default()).unwrap();
    let shard = "shard-00000.cvrs";
    let mut w = ShardWriter::create(&dir.join(shard)).unwrap();
    let mut rows = Vec::new();
    for v in 0..VIDEOS {
        let id = format!("synthetic/v{v:02}");
        let spec = VideoSpec { video_id: id.clone(), layout, fps_num: 25, fps_den: 1 };
        let mut b = RecordBuilder::new(spec, 8, &mut enc).unwrap();
        for f in 0..FRAMES {
            b.push_frame(&frame(v, f, &layout)).unwrap();
        }
        let rec = b.finish().unwrap();
        let loc = w.append(&rec).unwrap();
        let mut row = VideoRow::for_record(&rec, shard, loc, id);
        row.split = split_of(v).map(str::to_owned);
        if labelled {
            row.label = Some(format!("c{}", v % CLASSES));
            row.label_index = Some((v % CLASSES) as i32);
        }
        rows.push(row);
    }
    let bytes = w.finish().unwrap();
    let params = BuildParams {
        short_side: None,
        fps: None,
        pixel_format: PixelFormat::Yuv420p,
        chunk_frames: 8,
        zstd_level: 1,
        predictor: cvrl_formats::codec::PredictorMode::Adaptive,
        shard_bytes: bytes,
    };
    let classes = if labelled { (0..CLASSES).map(|c| format!("c{c}")).collect() } else { vec![] };
    let shards = vec![ShardInfo { file: shard.into(), bytes, videos: u64::from(VIDEOS) }];
    let manifest = Manifest::new("test", params, classes, None, shards, &rows, &[]);
    cvrl_formats::write_set(dir, &manifest, &rows, &[]).unwrap();
}

/// R3D-18 on 4 x 16 x 16 clips, a small head, batch 8, one libtorch thread.
pub fn tiny(shards: &Path, out: PathBuf, steps: u64) -> TrainConfig {
    TrainConfig {
        frames: 4,
        stride: 1,
        crop: 16,
        batch_size: BATCH,
        head_layers: 2,
        head_hidden_dim: 64,
        embedding_dim: 32,
        length: RunLength::Steps(steps),
        warmup_epochs: 1.0, // 2 steps
        workers: 1,
        checkpoint_every: 0,
        seed: 1,
        threads: Some(1),
        ..TrainConfig::preset(Preset::Demo, vec![shards.to_path_buf()], out)
    }
}
