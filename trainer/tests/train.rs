//! Exploration (temporary).
use cvrl_formats::codec::{ChunkEncoder, PredictorMode};
use cvrl_formats::index::{write_failures, write_index};
use cvrl_formats::manifest::{Counts, FORMAT_NAME};
use cvrl_formats::shard::FORMAT_VERSION;
use cvrl_formats::*;
use cvrl_trainer::train::{train_with, AugmentTransform, RunLength, Silent, TrainConfig};
use cvrl_trainer::augment::AugmentConfig;
use std::sync::Arc;
use std::path::Path;

const W: u32 = 48;
const H: u32 = 40;

fn frame(v: u32, f: u32) -> Vec<u8> {
    let layout = FrameLayout::new(W, H, PixelFormat::Yuv420p).unwrap();
    let mut out = vec![0u8; layout.frame_bytes()];
    let theta = v as f64 * 0.7;
    let freq = 0.25 + 0.08 * (v % 5) as f64;
    let speed = 0.3 + 0.15 * (v % 3) as f64;
    let (c, s) = (theta.cos(), theta.sin());
    for y in 0..H {
        for x in 0..W {
            let u = x as f64 * c + y as f64 * s;
            let val = 128.0 + 90.0 * (u * freq + f as f64 * speed).sin() * (0.5 + 0.5 * ((x as f64 * 0.21 + v as f64) * (y as f64 * 0.17)).cos());
            out[(y * W + x) as usize] = val.clamp(0.0, 255.0) as u8;
        }
    }
    let luma = (W * H) as usize;
    let chroma = luma / 4;
    let (cu, cv) = (128.0 + 60.0 * (v as f64 * 1.3).sin(), 128.0 + 60.0 * (v as f64 * 2.1).cos());
    for i in 0..chroma {
        out[luma + i] = cu as u8;
        out[luma + chroma + i] = cv as u8;
    }
    out
}

fn write_set(dir: &Path, n: u32, frames: u32) {
    let layout = FrameLayout::new(W, H, PixelFormat::Yuv420p).unwrap();
    let mut enc = ChunkEncoder::new(1, PredictorMode::default()).unwrap();
    let mut w = ShardWriter::create(&dir.join("shard-00000.cvrs")).unwrap();
    let mut rows = Vec::new();
    for v in 0..n {
        let id = format!("c/v{v:03}");
        let spec = VideoSpec { video_id: id.clone(), layout, fps_num: 25, fps_den: 1 };
        let mut b = RecordBuilder::new(spec, 8, &mut enc).unwrap();
        for f in 0..frames {
            b.push_frame(&frame(v, f)).unwrap();
        }
        let rec = b.finish().unwrap();
        let loc = w.append(&rec).unwrap();
        rows.push(VideoRow {
            video_id: id.clone(), source_path: id, label: None, label_index: None, split: None,
            shard: "shard-00000.cvrs".into(), offset: loc.offset, length: loc.length,
            num_frames: rec.header.num_frames, width: W, height: H, fps_num: 25, fps_den: 1,
            duration_s: 0.0, pixel_format: "yuv420p".into(), source_bytes: 0, source_codec: String::new(),
            time_start_s: None, time_end_s: None, chunks: rec.header.chunks.clone(), checksum: rec.checksum,
        });
    }
    let bytes = w.finish().unwrap();
    write_index(&dir.join("index.parquet"), &rows).unwrap();
    write_failures(&dir.join("failures.parquet"), &[]).unwrap();
    Manifest {
        format: FORMAT_NAME.into(), format_version: FORMAT_VERSION, tool: "test".into(),
        params: BuildParams { short_side: None, fps: None, pixel_format: PixelFormat::Yuv420p, chunk_frames: 8, zstd_level: 1, predictor: "adaptive".into(), shard_bytes: bytes },
        classes: vec![], part: None, index: "index.parquet".into(), failures: "failures.parquet".into(),
        shards: vec![manifest::ShardInfo { file: "shard-00000.cvrs".into(), bytes, videos: u64::from(n) }],
        counts: Counts::default(),
    }.save(&dir.join("manifest.json")).unwrap();
}

#[test]
fn explore() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), 16, 24);
    let lr: f64 = std::env::var("LR").ok().and_then(|s| s.parse().ok()).unwrap_or(0.1);
    let steps: u64 = std::env::var("STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let hidden: i64 = std::env::var("HID").ok().and_then(|s| s.parse().ok()).unwrap_or(64);
    for seed in std::env::var("SEEDS").unwrap_or("1".into()).split(',').map(|s| s.parse::<u64>().unwrap()) {
        let out = tempfile::tempdir().unwrap();
        let mut cfg = TrainConfig::cpu_demo(vec![dir.path().to_path_buf()], out.path().join("run"));
        cfg.frames = std::env::var("FR").map(|s| s.parse().unwrap()).unwrap_or(4); cfg.stride = 1; cfg.crop = std::env::var("CROP").map(|s| s.parse().unwrap()).unwrap_or(32); cfg.batch_size = 8; cfg.head_hidden_dim = hidden; cfg.embedding_dim = 32; cfg.head_layers = 2;
        cfg.length = RunLength::Steps(steps); cfg.lr = lr * 1024.0 / 8.0; cfg.warmup_epochs = 0.0; cfg.workers = 1; cfg.seed = seed; cfg.checkpoint_every = 0; cfg.threads = Some(1);
        let t = std::time::Instant::now();
        let mild = AugmentConfig { out_size: cfg.crop, jitter_p: 0.0, grayscale_p: 0.0, blur_p: 0.0, solarize_p: 0.0, ..AugmentConfig::first_view() };
        let full = AugmentTransform::new(cfg.crop);
        let tr: Arc<dyn cvrl_trainer::loader::ClipTransform> = if std::env::var("MILD").is_ok() { Arc::new(AugmentTransform::with_views([mild, mild])) } else { Arc::new(full) };
        let s = train_with(&cfg, None, &mut Silent, tr).unwrap();
        let l = &s.losses;
        let n = l.len();
        let first: f64 = l[..5].iter().sum::<f64>() / 5.0;
        let last: f64 = l[n-5..].iter().sum::<f64>() / 5.0;
        println!("seed {seed} lr {lr}: first5 {first:.4} last5 {last:.4} drop {:.4} time {:.1}s steps {:?}", first-last, t.elapsed().as_secs_f64(), l.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>());
        let logtxt = std::fs::read_to_string(out.path().join("run/log.jsonl")).unwrap();
        let _ = logtxt;
        println!("step times {:?}", s.step_times.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>());
    }
}
