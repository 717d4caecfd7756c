//! `--augment-on device` against `--augment-on host`: the loader that only cuts crop boxes,
//! with the per-pixel work done by the device path on CPU tensors, gives the same clips as
//! the loader that augments on the host (within one level per pixel), for CVRL's views and
//! the per-frame ablation; and training on either path gives the same losses.

mod common;

use common::{tiny, write_set};
use cvrl_formats::ShardSet;
use cvrl_trainer::augment::device::Stager;
use cvrl_trainer::augment::{AugmentOn, AugmentTransform, Augmentation};
use cvrl_trainer::loader::{Clips, Loader, LoaderConfig};
use cvrl_trainer::train::{train, Silent, TrainConfig};
use std::sync::Arc;
use tch::{Device, Tensor};

/// `steps` batches of the loader, as `u8` `[2B, 3, T, S, S]` (first views, then second
/// views): augmented in the workers, or cut there and augmented here on CPU tensors.
fn clips(set: &Arc<ShardSet>, augmentation: Augmentation, on_device: bool) -> Vec<Tensor> {
    let (frames, crop, batch) = (8, 24, 4);
    let cfg = LoaderConfig {
        batch_size: batch,
        workers: 2,
        prefetch: 1,
        seed: 5,
        clip: cvrl_trainer::sampler::ClipSpec { frames, stride: 2, base_fps: 25.0 },
        interval: cvrl_trainer::sampler::IntervalDistribution::Decreasing,
        rank: 0,
        ranks: 1,
        on_device,
    };
    let transform = Arc::new(AugmentTransform::for_run(augmentation, crop));
    let mut loader = Loader::start(set.clone(), cfg, transform, 0).unwrap();
    let mut stager = Stager::new(Device::Cpu);
    let shape = [batch as i64, 3, i64::from(frames), i64::from(crop), i64::from(crop)];
    (0..6)
        .map(|_| match loader.next_batch().unwrap().clips {
            Clips::Host { a, b } => Tensor::cat(
                &[Tensor::from_slice(&a).view(shape), Tensor::from_slice(&b).view(shape)],
                0,
            ),
            Clips::Cut(packed) => stager.upload(&packed).augment_views(),
        })
        .collect()
}

#[test]
fn the_loader_cutting_for_the_device_gives_the_host_loaders_clips() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), false);
    let set = Arc::new(ShardSet::open(dir.path()).unwrap());
    for augmentation in [Augmentation::Cvrl, Augmentation::PerFrame] {
        let host = clips(&set, augmentation, false);
        let device = clips(&set, augmentation, true);
        let (mut pixels, mut differ) = (0i64, 0i64);
        for (h, d) in host.iter().zip(&device) {
            assert_eq!(h.size(), d.size());
            let diff = (h.to_kind(tch::Kind::Int) - d.to_kind(tch::Kind::Int)).abs();
            let worst = diff.max().int64_value(&[]);
            assert!(worst <= 1, "{augmentation}: a pixel {worst} levels apart");
            pixels += diff.numel() as i64;
            differ += diff.ne(0).sum(tch::Kind::Int64).int64_value(&[]);
            // Not a trivially equal pair: the clips hold pictures.
            assert!(h.to_kind(tch::Kind::Float).std(true).double_value(&[]) > 10.0);
        }
        // Rounding-boundary pixels only (see augment::device's module doc).
        assert!(differ * 100 < pixels, "{augmentation}: {differ} of {pixels} pixels differ");
    }
}

#[test]
fn training_with_the_augmentation_on_the_device_gives_the_host_runs_losses() {
    let dir = tempfile::tempdir().unwrap();
    let shards = dir.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    write_set(&shards, false);
    let run = |on: AugmentOn| {
        let cfg =
            TrainConfig { augment_on: on, ..tiny(&shards, dir.path().join(on.to_string()), 3) };
        train(&cfg, None, &mut Silent).unwrap().losses
    };
    let (host, device) = (run(AugmentOn::Host), run(AugmentOn::Device));
    assert_eq!(host.len(), 3);
    for (h, d) in host.iter().zip(&device) {
        assert!((h - d).abs() < 1e-3 * h.abs(), "host {host:?} device {device:?}");
    }
    // On the CPU, auto is the host path: the very same losses.
    assert_eq!(run(AugmentOn::Auto), host);
}
