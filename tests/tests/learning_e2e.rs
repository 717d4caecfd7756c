//! Experiment 1 of EXPERIMENTS.md in miniature, as a test that learning happens: CVRL
//! pretraining without labels on a small generated proxy (the `easy` preset's 10 classes,
//! 40 train + 20 val videos each), then a linear probe on the class, against the same
//! encoder at random init.
//!
//! The bar is not a copied number. The random-init probe runs with several seeds (each
//! seed another initialisation and another probe), and CVRL must beat their mean by three
//! of their standard deviations, and at least by one val video: by more than random
//! encoders differ among themselves. The pretraining is cvrl-train's `proxy-cpu` preset
//! (`scripts/experiment.sh`'s), shortened to 1000 steps (about 3.5 minutes on 2 cores), on one
//! fixed seed. The proxy is synth seed [`DATA_SEED`], not seed 0 on which the preset was
//! tuned. The scores it gives are in EXPERIMENTS.md ("A tiny experiment 1 in CI").

use cvrl_e2e::{cvrl_eval, proxy_shards, run_ok, tempdir};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

const CLASSES: u32 = 10;
/// Videos per class in the val split: the probe's resolution is one val video.
const VAL_PER_CLASS: u32 = 20;
const TRAIN_PER_CLASS: u32 = 40;
/// Pretraining steps. At 600, CVRL cleared the bar on one CPU (33.5 %, bar 19.5) and missed
/// it on another with AVX-512 (16.5 %, bar 17.9): the float order differs, and so does how
/// far 600 steps get. At 1000 it clears the bar there too (26.0 %); EXPERIMENTS.md.
const STEPS: &str = "1000";
/// The proxy's synth seed: the first one the `proxy-cpu` preset was not tuned on (it was
/// tuned on seed 0), so the test checks learning on data nobody tuned on.
const DATA_SEED: &str = "1";
/// Random-init seeds whose spread sets the bar.
const RANDOM_SEEDS: [u32; 3] = [0, 1, 2];

/// The proxy, sharded: (train, val).
fn proxy(dir: &Path) -> (PathBuf, PathBuf) {
    let total = (TRAIN_PER_CLASS + VAL_PER_CLASS).to_string();
    let (classes, val) = (CLASSES.to_string(), VAL_PER_CLASS.to_string());
    let flags = ["--classes", &classes, "--videos", &total, "--val", &val, "--seed", DATA_SEED];
    proxy_shards(dir, &flags)
}

/// CVRL pretraining with cvrl-train's `proxy-cpu` preset (`scripts/experiment.sh`'s), `STEPS`
/// steps.
fn pretrain(train: &Path, out: &Path) {
    // The preset's channels-last layout sums floats in another order: the margin was measured
    // in the default layout, on this seed.
    let preset =
        "--preset proxy-cpu --channels-last false --seed 0 --checkpoint-every 0 --quiet --steps";
    let flags: Vec<&str> = preset.split_whitespace().chain([STEPS]).collect();
    let mut args: Vec<&dyn AsRef<OsStr>> = vec![&"--shards", &train, &"--out", &out];
    args.extend(flags.iter().map(|f| f as &dyn AsRef<OsStr>));
    run_ok("cvrl-train", &args);
}

/// Class top-1 (%) of a linear probe on `run_dir`'s encoder, or on a random one.
fn probe(run_dir: &Path, sets: &(PathBuf, PathBuf), out: &Path, random_seed: Option<u32>) -> f64 {
    let mut flags = vec!["--train-clips", "4", "--temporal-views", "4", "--spatial-crops", "1"];
    let seed = random_seed.map(|s| s.to_string());
    if let Some(seed) = &seed {
        flags.extend(["--random-init", "--seed", seed]);
    }
    let result = cvrl_eval("linear", run_dir, sets, out, &flags);
    let top1 = result["report"]["scores"]["top1"].as_f64();
    top1.unwrap_or_else(|| panic!("no top1 in {result}"))
}

/// Mean and sample standard deviation.
fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

#[test]
fn cvrl_pretraining_beats_random_init_on_a_linear_probe() {
    let dir = tempdir();
    let sets = proxy(dir.path());
    let run_dir = dir.path().join("cvrl");
    pretrain(&sets.0, &run_dir);
    let out = dir.path().join("eval");
    let cvrl = probe(&run_dir, &sets, &out, None);
    let random: Vec<f64> =
        RANDOM_SEEDS.iter().map(|&s| probe(&run_dir, &sets, &out, Some(s))).collect();
    let (mean, std) = mean_std(&random);
    let one_video = 100.0 / f64::from(CLASSES * VAL_PER_CLASS);
    let margin = (3.0 * std).max(one_video);
    eprintln!("class probe: CVRL {cvrl:.1} %, random init {random:?} (bar {:.1} %)", mean + margin);
    assert!(
        cvrl >= mean + margin,
        "CVRL's class probe {cvrl:.1} % should beat random init ({random:?}: mean {mean:.1}, \
         std {std:.1}) by {margin:.1} points"
    );
}
