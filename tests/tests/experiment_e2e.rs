//! `scripts/experiment.sh`, the script behind `just exp1`, `exp2` and `exp3`, end to end on
//! a tiny generated proxy (10 classes x 4 train + 2 val videos of 2 s): experiment 1 with
//! its `cpu` preset at 2 steps a run trains the CVRL and supervised runs two at a time,
//! probes them and a random encoder on the class and on each factor, and writes the report
//! table and plots; run again, it trains and probes nothing; and it refuses bad settings
//! and runs made from other shards before it trains anything. With DATA_SEEDS it makes
//! each data seed's proxy (and exp-transfer's target of unseen classes) and reports over
//! all of them.

use cvrl_e2e::{proxy_shards, root, target_dir, tempdir, text};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::SystemTime;

/// The labels experiment 1 reports, and the targets each is probed on.
const LABELS: [&str; 3] = ["cvrl", "random-init", "supervised"];
const TARGETS: [&str; 3] = ["class", "object", "motion"];

/// Runs `scripts/experiment.sh EXP 0` (seed 0) on the shard sets in `data`, writing under
/// `out`, with the workspace's freshly built binaries and `env` on top (and none of the
/// script's other settings from the caller's environment).
fn experiment(exp: &str, data: &Path, out: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/experiment.sh")).args([exp, "0"]);
    for setting in ["SIZE", "AUG", "JOBS", "ARMS", "DATA_SEEDS", "SYNTH_FLAGS", "TRAIN_FLAGS"] {
        cmd.env_remove(setting);
    }
    cmd.env("BIN", target_dir()).env("DATA", data).env("OUT", out).env("EPOCHS", "2");
    cmd.envs(env.iter().copied());
    cmd.output().expect("cannot run bash")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn modified(path: &Path) -> SystemTime {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    meta.modified().expect("modification time")
}

#[test]
fn exp1_trains_probes_and_reports_then_skips_what_is_done() {
    let dir = tempdir();
    let flags = ["--classes", "10", "--videos", "6", "--val", "2", "--seed", "3"];
    let flags = [&flags[..], &["--min-seconds", "2", "--max-seconds", "2"]].concat();
    proxy_shards(dir.path(), &flags);
    let (data, out) = (dir.path().join("shards"), dir.path().join("out"));

    let first = experiment("exp1", &data, &out, &[]);
    assert!(first.status.success(), "{}", text(&first));
    // 40 videos at batch 32, the last partial batch dropped: one step an epoch.
    let runs = out.join("runs-cpu-v3-light-e2");
    for run in ["cvrl-s0", "supervised-s0"] {
        let log = fs::read_to_string(runs.join(run).join("log.jsonl")).expect(run);
        assert_eq!(log.lines().filter(|l| l.contains("\"loss\"")).count(), 2, "{run}: {log}");
        assert!(runs.join(run).join("encoder.safetensors").is_file(), "{run}");
    }
    let results = out.join("exp1-cpu-v3-light-e2/results");
    let result_files: Vec<_> = LABELS
        .iter()
        .flat_map(|l| TARGETS.map(|t| results.join(format!("{l}-linear-{t}-seed0.json"))))
        .collect();
    for file in &result_files {
        let json: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(file).expect("result")).expect("json");
        let top1 = json["report"]["scores"]["top1"].as_f64().expect("top1");
        assert!((0.0..=100.0).contains(&top1), "{}: {json}", file.display());
    }
    let report = fs::read_to_string(out.join("exp1-cpu-v3-light-e2/report.md")).expect("report");
    for label in LABELS {
        for target in TARGETS {
            let row = format!("| linear | {target} | {label} | 1 |");
            assert!(report.contains(&row), "no row {row} in\n{report}");
        }
    }
    let plots = out.join("exp1-cpu-v3-light-e2/report");
    for plot in ["accuracy-linear-class.png", "accuracy-linear-motion.png", "loss.png"] {
        assert!(plots.join(plot).is_file(), "{plot}");
    }

    let before: Vec<_> = result_files.iter().map(|f| modified(f)).collect();
    let again = experiment("exp1", &data, &out, &[]);
    assert!(again.status.success(), "{}", text(&again));
    let log = stdout(&again);
    assert_eq!(log.matches("done before").count(), 2, "{log}");
    assert!(!log.contains("== pretraining"), "{log}");
    let after: Vec<_> = result_files.iter().map(|f| modified(f)).collect();
    assert_eq!(before, after, "a finished probe ran again");

    // The tag does not name the data: finished runs of other shards must not be reused.
    let copy = dir.path().join("copy");
    fs::create_dir(&copy).unwrap();
    for split in ["train", "val"] {
        let (from, to) = (data.join(split), copy.join(split));
        fs::create_dir(&to).unwrap();
        for entry in fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    let other = experiment("exp1", &copy, &out, &[]);
    assert_eq!(other.status.code(), Some(1), "{}", text(&other));
    assert!(text(&other).contains("was trained on other shards"), "{}", text(&other));
}

#[test]
fn data_seeds_make_their_own_proxies_and_exp_transfer_probes_classes_never_pretrained_on() {
    let dir = tempdir();
    let (proxies, out) = (dir.path().join("proxies"), dir.path().join("out"));
    let tiny = "--classes 10 --videos 6 --val 2 --min-seconds 2 --max-seconds 2";
    let env =
        [("DATA_SEEDS", "4 5"), ("PROXIES", proxies.to_str().unwrap()), ("SYNTH_FLAGS", tiny)];
    let first = experiment("exp-transfer", &dir.path().join("unused"), &out, &env);
    assert!(first.status.success(), "{}", text(&first));

    let labels = ["cvrl", "random-init", "supervised-source"];
    let mut cvrl_class = Vec::new();
    for d in ["4", "5"] {
        let (source, target) =
            (proxies.join(format!("easy-d{d}")), proxies.join(format!("easy-d{d}-transfer")));
        let classes =
            |p: &Path| fs::read_to_string(p.join("videos/synth.json")).expect("synth.json");
        assert!(
            classes(&source).contains("\"disc_horizontal\"")
                && !classes(&source).contains("disc_spin")
        );
        assert!(
            classes(&target).contains("\"disc_spin\"")
                && !classes(&target).contains("disc_horizontal")
        );
        assert!(classes(&target).contains(&format!("\"seed\": {d}")));
        let run =
            fs::read_to_string(out.join(format!("d{d}/runs-cpu-v3-light-e2/cvrl-s0/run.json")));
        assert!(run.expect("run.json").contains(&format!("easy-d{d}/shards/train")));
        let results = out.join(format!("d{d}/exp-transfer-cpu-v3-light-e2/results"));
        for label in labels {
            for t in TARGETS {
                let file = results.join(format!("{label}-linear-{t}-seed0.json"));
                let json: serde_json::Value =
                    serde_json::from_str(&fs::read_to_string(&file).expect("result"))
                        .expect("json");
                let val = json["report"]["data"]["val"][0].as_str().expect("val set");
                assert!(
                    val.ends_with(&format!("easy-d{d}-transfer/shards/val")),
                    "{label} {t}: {val}"
                );
                if (label, t) == ("cvrl", "class") {
                    cvrl_class.push(json["report"]["scores"]["top1"].as_f64().expect("top1"));
                }
            }
        }
    }
    // The summary pools both data seeds and keeps each beside the pool.
    let report = fs::read_to_string(out.join("exp-transfer-cpu-v3-light-e2.md")).expect("report");
    assert!(report.contains("| label | target | all | data 4 | data 5 |"), "{report}");
    let (a, b) = (cvrl_class[0], cvrl_class[1]);
    let std = (a - b).abs() / 2f64.sqrt();
    let row = format!("| cvrl | class | {:.1} ± {std:.1} (2) | {a:.1} | {b:.1} |", (a + b) / 2.0);
    assert!(report.contains(&row), "no row {row} in\n{report}");
    for label in labels {
        assert!(report.contains(&format!("| {label} | motion |")), "{label}: {report}");
    }

    let again = experiment("exp-transfer", &dir.path().join("unused"), &out, &env);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(stdout(&again).matches(": made before").count(), 4, "{}", stdout(&again));
    assert!(!stdout(&again).contains("== pretraining"), "{}", stdout(&again));
    // Other synth flags must not reuse these proxies.
    let other = [env[0], env[1], ("SYNTH_FLAGS", "--classes 10 --videos 7 --val 2")];
    let refused = experiment("exp-transfer", &dir.path().join("unused"), &out, &other);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("give these SYNTH_FLAGS a PROXY_TAG"), "{}", text(&refused));
}

/// An experiment, its environment, and the exit code and message it must be refused with.
type Refusal<'a> = (&'a str, &'a [(&'a str, &'a str)], i32, &'a str);

#[test]
fn bad_settings_are_refused_before_any_training() {
    let dir = tempdir();
    let (data, out) = (dir.path().join("no-shards"), dir.path().join("out"));
    let cases: [Refusal; 6] = [
        ("exp1", &[], 1, "no proxy shard set in"),
        ("exp9", &[], 2, "unknown experiment exp9"),
        ("exp1", &[("SIZE", "tpu")], 2, "SIZE must be cpu or gpu, got tpu"),
        ("exp1", &[("JOBS", "0")], 2, "JOBS must be a positive number"),
        ("exp3", &[("ARMS", "consistent sideways")], 2, "unknown exp3 arm 'sideways'"),
        ("exp3", &[("AUG", "per-frame")], 2, "exp3 ablates the cvrl or light augmentation"),
    ];
    for (exp, env, code, message) in cases {
        let o = experiment(exp, &data, &out, env);
        assert_eq!(o.status.code(), Some(code), "{exp} {env:?}: {}", text(&o));
        assert!(text(&o).contains(message), "{exp} {env:?}: {}", text(&o));
    }
    assert!(!out.exists(), "a refused experiment wrote {}", out.display());
}
