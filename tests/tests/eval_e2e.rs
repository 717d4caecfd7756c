//! End to end: a tiny proxy dataset (`cvrl-shard synth`), sharded with its factors, a few
//! `cvrl-train` steps, then `cvrl-eval` linear and kNN on the class and on a factor, the
//! random-init baseline, the feature cache, `report`'s plots, and clear errors.

use cvrl_e2e::{cvrl_eval, run, tempdir, text, TINY_RUN};
use std::path::{Path, PathBuf};

/// 4 classes x 4 videos (3 train, 1 val) of 2 s at 64x64.
fn proxy(dir: &Path) -> (PathBuf, PathBuf) {
    let videos = dir.join("videos");
    let o = run(
        "cvrl-shard",
        &[
            &"synth",
            &videos,
            &"--classes",
            &"4",
            &"--videos",
            &"4",
            &"--val",
            &"1",
            &"--width",
            &"64",
            &"--height",
            &"64",
            &"--min-seconds",
            &"2",
            &"--max-seconds",
            &"2",
            &"--seed",
            &"5",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let mut sets = Vec::new();
    for split in ["train", "val"] {
        let shards = dir.join("shards").join(split);
        let o = run("cvrl-shard", &[&"build", &videos.join(split), &shards, &"--short-side", &"0"]);
        assert!(o.status.success(), "{}", text(&o));
        sets.push(shards);
    }
    (sets.remove(0), sets.remove(0))
}

/// A few CVRL steps with a kNN check every 2 steps on the labelled sets.
fn train(sets: &(PathBuf, PathBuf), out: &Path) {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--shards", &sets.0, &"--out", &out];
    let flags = ["--steps", "3", "--frames", "4", "--crop", "32", "--base-width", "8"];
    for f in flags.iter().chain(TINY_RUN).chain(&["--eval-every", "2"]) {
        args.push(f);
    }
    args.extend([&"--eval-train" as &dyn AsRef<std::ffi::OsStr>, &sets.0, &"--eval-val", &sets.1]);
    let o = run("cvrl-train", &args);
    assert!(o.status.success(), "{}", text(&o));
}

/// Runs `cvrl-eval METHOD` with few views plus `extra`; returns the result JSON.
fn eval(
    method: &str,
    run_dir: &Path,
    sets: &(PathBuf, PathBuf),
    out: &Path,
    extra: &[&str],
) -> serde_json::Value {
    let mut flags = vec!["--temporal-views", "2", "--spatial-crops", "1", "--train-clips", "2"];
    flags.extend(extra);
    cvrl_eval(method, run_dir, sets, out, &flags)
}

/// Videos counted in a result's confusion matrix.
fn votes(scores: &serde_json::Value) -> u64 {
    let rows = scores["confusion"].as_array().unwrap();
    rows.iter().flat_map(|r| r.as_array().unwrap()).map(|c| c.as_u64().unwrap()).sum()
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"\x89PNG\r\n\x1a\n") && b.len() > 1000)
}

#[test]
fn linear_knn_random_init_factors_cache_and_report() {
    let dir = tempdir();
    let sets = proxy(dir.path());
    let run_dir = dir.path().join("run");
    train(&sets, &run_dir);
    // --eval-every 2 over 3 steps: kNN after step 2 and at the end, of 4 val videos.
    let log = std::fs::read_to_string(run_dir.join("log.jsonl")).unwrap();
    let knn: Vec<Option<f64>> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["knn_top1"].as_f64())
        .collect();
    assert_eq!(knn.iter().map(Option::is_some).collect::<Vec<_>>(), [false, true, true]);
    assert!(knn.iter().flatten().all(|t| [0.0, 25.0, 50.0, 75.0, 100.0].contains(t)), "{knn:?}");
    let out = dir.path().join("eval");

    let linear = eval("linear", &run_dir, &sets, &out, &["--epochs", "10"]);
    assert_eq!(linear["label"], "cvrl");
    let scores = &linear["report"]["scores"];
    let names: Vec<&str> =
        scores["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert_eq!(names.len(), 4);
    assert!(names.iter().all(|n| n.contains('_')), "class names are object_motion: {names:?}");
    assert_eq!(votes(scores), 4, "one val video per class");
    let top1 = scores["top1"].as_f64().unwrap();
    assert!([0.0, 25.0, 50.0, 75.0, 100.0].contains(&top1), "4 val videos: {top1}");
    assert_eq!(scores["top5"].as_f64(), Some(100.0), "4 classes are all in the top 5");
    assert_eq!(linear["report"]["views"][1], "4x2@25fps 32px test 2x1 views");
    assert!(is_png(&out.join("cvrl-linear-class-seed0-confusion.png")));

    // Features are cached (train and val); a rerun reads them and gives the same scores.
    let cache: Vec<_> =
        std::fs::read_dir(out.join("cache")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(cache.len(), 2, "{cache:?}");
    let stamps: Vec<_> = cache.iter().map(|p| p.metadata().unwrap().modified().unwrap()).collect();
    let again = eval("linear", &run_dir, &sets, &out, &["--epochs", "10"]);
    assert_eq!(again["report"]["scores"], linear["report"]["scores"]);
    let after: Vec<_> = cache.iter().map(|p| p.metadata().unwrap().modified().unwrap()).collect();
    assert_eq!(stamps, after, "cached features were recomputed");

    // A factor as the target: the motions of the 4 classes.
    let motion = eval("knn", &run_dir, &sets, &out, &["--target", "motion", "--k", "3"]);
    let motions = motion["report"]["scores"]["names"].as_array().unwrap();
    assert!(motions.len() >= 2 && motions.len() <= 4, "{motions:?}");
    assert_eq!(motion["report"]["data"]["target"], "motion");
    let count = std::fs::read_dir(out.join("cache")).unwrap().count();
    assert_eq!(count, 2, "one extraction serves every target");

    let random = eval("linear", &run_dir, &sets, &out, &["--epochs", "10", "--random-init"]);
    assert_eq!(random["label"], "random-init");
    assert_eq!(random["report"]["encoder"], "random init (seed 0)");
    assert_eq!(
        std::fs::read_dir(out.join("cache")).unwrap().count(),
        4,
        "random init has its own features"
    );

    // Fine-tuning: the encoder plus a classifier trained on the labels, in its own run.
    let tuned = eval("finetune", &run_dir, &sets, &out, &["--epochs", "2", "--batch-size", "4"]);
    assert_eq!(tuned["label"], "cvrl");
    let scores = &tuned["report"]["scores"];
    assert_eq!(votes(scores), 4);
    let ft_run = out.join("finetune-cvrl-seed0");
    let log = std::fs::read_to_string(ft_run.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 6, "2 epochs of 12 videos at batch 4");
    let ft_config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ft_run.join("run.json")).unwrap()).unwrap();
    assert_eq!(ft_config["config"]["supervised"], true);
    assert_eq!(
        ft_config["config"]["init_encoder"],
        run_dir.join("encoder.safetensors").to_str().unwrap()
    );

    let report = dir.path().join("report");
    let results: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
        vec![&"report", &"--out", &report, &"--run", &run_dir];
    for r in &results {
        args.push(r);
    }
    let o = run("cvrl-eval", &args);
    assert!(o.status.success(), "{}", text(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("| linear | class | cvrl | 1 |")
            && table.contains("| linear | class | random-init | 1 |"),
        "{table}"
    );
    for png in ["accuracy-linear-class.png", "accuracy-knn-motion.png", "loss.png"] {
        assert!(is_png(&report.join(png)), "{png}");
    }

    // Errors name the problem.
    let o = run(
        "cvrl-eval",
        &[
            &"knn",
            &"--run",
            &run_dir,
            &"--train",
            &sets.0,
            &"--val",
            &sets.1,
            &"--target",
            &"flavour",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("has no flavour label"), "{}", text(&o));
    let o =
        run("cvrl-eval", &[&"knn", &"--run", &dir.path(), &"--train", &sets.0, &"--val", &sets.1]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("run.json"), "{}", text(&o));
}
