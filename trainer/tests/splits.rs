//! A set built from `videos/train/...` and `videos/val/...` holds both splits: pretraining
//! must take only the train split (unless told otherwise), so that no evaluation video is
//! ever sampled.

mod common;

use common::{tiny, write_set_with_splits, BATCH, VIDEOS};
use cvrl_trainer::augment::AugmentTransform;
use cvrl_trainer::loader::{Loader, LoaderConfig};
use cvrl_trainer::train::{open_training_set, Reporter, SplitChoice, TrainError};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Every fourth video is a validation video.
fn split_of(v: u32) -> Option<&'static str> {
    Some(if v % 4 == 3 { "val" } else { "train" })
}

#[derive(Default)]
struct Notes(Vec<String>);
impl Reporter for Notes {
    fn note(&mut self, message: &str) {
        self.0.push(message.to_owned());
    }
}

#[test]
fn pretraining_never_samples_a_validation_video() {
    let dir = tempfile::tempdir().unwrap();
    write_set_with_splits(dir.path(), false, split_of);
    let cfg = tiny(dir.path(), dir.path().join("run"), 1);
    let mut notes = Notes::default();
    let set = open_training_set(&cfg, &mut notes).unwrap();
    let train_videos = (0..VIDEOS).filter(|&v| split_of(v) == Some("train")).count();
    assert_eq!(set.len(), train_videos);
    assert!(
        notes.0.iter().any(|n| n.contains("train split")
            && n.contains(&format!("{train_videos} of the set's {VIDEOS}"))),
        "{:?}",
        notes.0
    );

    // Three epochs of the loader over it, in batches that divide the train split: every
    // video it hands out is a train video, and every train video comes up.
    let batch = BATCH / 2;
    assert_eq!(train_videos % batch, 0);
    let clip = cfg.clip();
    let loader_cfg = LoaderConfig {
        batch_size: batch,
        workers: 2,
        prefetch: 1,
        seed: 3,
        clip,
        interval: cfg.interval,
        rank: 0,
        ranks: 1,
        on_device: false,
    };
    let set = Arc::new(set);
    let transform = Arc::new(AugmentTransform::new(cfg.crop));
    let mut loader = Loader::start(set.clone(), loader_cfg, transform, 0).unwrap();
    let steps = 3 * train_videos / batch;
    let mut seen = BTreeSet::new();
    for _ in 0..steps {
        for v in loader.next_batch().unwrap().videos {
            let row = &set.videos()[v as usize];
            assert_eq!(row.split.as_deref(), Some("train"), "{} was sampled", row.video_id);
            seen.insert(row.video_id.clone());
        }
    }
    assert_eq!(seen.len(), train_videos, "every train video is sampled");
}

#[test]
fn split_all_takes_every_video_and_a_missing_split_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_set_with_splits(dir.path(), false, split_of);
    let base = tiny(dir.path(), dir.path().join("run"), 1);
    let all = open_training_set(
        &cvrl_trainer::train::TrainConfig { split: SplitChoice::All, ..base.clone() },
        &mut Notes::default(),
    )
    .unwrap();
    assert_eq!(all.len(), VIDEOS as usize);
    let val = open_training_set(
        &cvrl_trainer::train::TrainConfig {
            split: SplitChoice::Named("val".into()),
            ..base.clone()
        },
        &mut Notes::default(),
    )
    .unwrap();
    assert!(val.videos().iter().all(|v| v.split.as_deref() == Some("val")));
    assert_eq!(val.len(), (VIDEOS / 4) as usize);
    let err = open_training_set(
        &cvrl_trainer::train::TrainConfig {
            split: SplitChoice::Named("test".into()),
            ..base.clone()
        },
        &mut Notes::default(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, TrainError::Shards { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("\"test\"") && msg.contains("train, val"), "{msg}");

    // A set with only a val split has no train split to pick by default.
    let only_val = tempfile::tempdir().unwrap();
    write_set_with_splits(only_val.path(), false, |_| Some("val"));
    let cfg = tiny(only_val.path(), only_val.path().join("run"), 1);
    let msg = open_training_set(&cfg, &mut Notes::default()).err().unwrap().to_string();
    assert!(msg.contains("no train split") && msg.contains("--split"), "{msg}");
}
