//! The loader on a real shard set written with cvrl-formats: batches are deterministic for a
//! seed whatever the number of workers, a loader started at step s continues an
//! uninterrupted run exactly, and a damaged video is skipped instead of stopping the run.

use cvrl_formats::codec::{ChunkEncoder, PredictorMode};
use cvrl_formats::*;
use cvrl_trainer::loader::{Batch, ClipTransform, Clips, Loader, LoaderConfig, View};
use cvrl_trainer::sampler::{ClipSpec, IntervalDistribution};
use rand::rngs::Xoshiro256PlusPlus;
use rand::RngExt as _;
use std::path::Path;
use std::sync::Arc;

/// Keeps each frame's first luma byte (the frame number, see `write_set`) plus one random
/// byte, so the test sees which frames were sampled and that the rng is used.
struct Probe;
impl ClipTransform for Probe {
    fn output_len(&self, t: usize) -> usize {
        t + 1
    }
    fn apply(
        &self,
        _view: View,
        rng: &mut Xoshiro256PlusPlus,
        layout: &FrameLayout,
        frames: &[u8],
        t: usize,
        out: &mut [u8],
    ) {
        for k in 0..t {
            out[k] = frames[k * layout.frame_bytes()];
        }
        out[t] = rng.random();
    }
}

/// `n` videos of 8x8 yuv420p; video v has 40 + v frames, frame f's first byte is f.
fn write_set(dir: &Path, n: u32) {
    let layout = FrameLayout::new(8, 8, PixelFormat::Yuv420p).unwrap();
    let mut enc = ChunkEncoder::new(3, PredictorMode::default()).unwrap();
    let mut w = ShardWriter::create(&dir.join("shard-00000.cvrs")).unwrap();
    let mut rows = Vec::new();
    for v in 0..n {
        let id = format!("c/v{v:03}");
        let spec = VideoSpec { video_id: id.clone(), layout, fps_num: 25, fps_den: 1 };
        let mut b = RecordBuilder::new(spec, 8, &mut enc).unwrap();
        for f in 0..40 + v {
            let mut frame = vec![v as u8; layout.frame_bytes()];
            frame[0] = f as u8;
            b.push_frame(&frame).unwrap();
        }
        let rec = b.finish().unwrap();
        let loc = w.append(&rec).unwrap();
        rows.push(VideoRow::for_record(&rec, "shard-00000.cvrs", loc, id));
    }
    let bytes = w.finish().unwrap();
    let params = BuildParams {
        short_side: None,
        fps: None,
        pixel_format: PixelFormat::Yuv420p,
        chunk_frames: 8,
        zstd_level: 3,
        predictor: cvrl_formats::codec::PredictorMode::Adaptive,
        shard_bytes: bytes,
    };
    let shards =
        vec![manifest::ShardInfo { file: "shard-00000.cvrs".into(), bytes, videos: u64::from(n) }];
    let manifest = Manifest::new("test", params, vec![], None, shards, &rows, &[]);
    cvrl_formats::write_set(dir, &manifest, &rows, &[]).unwrap();
}

fn cfg(workers: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: 4,
        workers,
        prefetch: 2,
        seed: 42,
        clip: ClipSpec { frames: 8, stride: 2, base_fps: 25.0 },
        interval: IntervalDistribution::Decreasing,
        rank: 0,
        ranks: 1,
        on_device: false,
    }
}

fn take(set: &Arc<ShardSet>, workers: usize, start: u64, n: usize) -> Vec<Batch> {
    let mut l = Loader::start(set.clone(), cfg(workers), Arc::new(Probe), start).unwrap();
    (0..n).map(|_| l.next_batch().unwrap()).collect()
}

fn key(b: &Batch) -> (u64, Vec<u32>, Vec<u8>, Vec<u8>) {
    let Clips::Host { a, b: second } = &b.clips else { panic!("a host loader cuts no clips") };
    (b.step, b.videos.clone(), a.clone(), second.clone())
}

#[test]
fn batches_are_the_same_for_any_worker_count_and_a_resumed_loader_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), 10);
    let set = Arc::new(ShardSet::open(dir.path()).unwrap());
    let one: Vec<_> = take(&set, 1, 0, 7).iter().map(key).collect();
    let three: Vec<_> = take(&set, 3, 0, 7).iter().map(key).collect();
    assert_eq!(one, three);
    let resumed: Vec<_> = take(&set, 2, 3, 4).iter().map(key).collect();
    assert_eq!(&one[3..], &resumed[..]);
    // 10 videos, batch 4: 2 steps per epoch, each epoch a new permutation.
    let (e0, e1): (Vec<u32>, Vec<u32>) = (
        one[0].1.iter().chain(&one[1].1).copied().collect(),
        one[2].1.iter().chain(&one[3].1).copied().collect(),
    );
    assert_ne!(e0, e1);
    let mut distinct = e0.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "no video twice in an epoch");
    // Each clip holds 8 frames at stride 2 from its sampled start, inside its video.
    for b in &one {
        for (slot, &v) in b.1.iter().enumerate() {
            let clip = &b.2[slot * 9..slot * 9 + 8];
            assert!(clip.windows(2).all(|w| w[1] == w[0] + 2), "{clip:?}");
            assert!(u32::from(clip[7]) < 40 + v);
        }
    }
}

#[test]
fn a_damaged_video_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), 6);
    let set = ShardSet::open(dir.path()).unwrap();
    let row = set.videos()[2].clone();
    drop(set);
    let path = dir.path().join("shard-00000.cvrs");
    let mut bytes = std::fs::read(&path).unwrap();
    for c in &row.chunks {
        bytes[(row.offset + c.offset) as usize] ^= 0xff;
    }
    std::fs::write(&path, bytes).unwrap();
    let set = Arc::new(ShardSet::open(dir.path()).unwrap());
    let mut l = Loader::start(set, cfg(2), Arc::new(Probe), 0).unwrap();
    for _ in 0..6 {
        let b = l.next_batch().unwrap();
        assert!(!b.videos.contains(&2));
    }
    assert!(l.stats().skipped() >= 1);
}
