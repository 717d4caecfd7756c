//! The TensorBoard event files of a real (tiny) training run, read back by TensorBoard's own
//! `EventAccumulator` from the project venv (`tensorboard` is in `scripts/setup.sh`): every
//! step's loss, learning rate, clips/s and data wait, with the values `log.jsonl` holds.
//! The run is resumed from an earlier checkpoint in the same directory, so the second event
//! file re-logs steps the first already has; TensorBoard must show each step once, with the
//! resumed run's values (the `SessionLog` `START` purges the first file's later points).

mod common;

use common::{tiny, write_set};
use cvrl_trainer::tensorboard::event_files;
use cvrl_trainer::train::{train, Silent, StepLog};
use std::path::PathBuf;
use std::process::Command;

/// Prints `{tag: [[step, value], ...]}` as JSON for the event files under `argv[1]`.
const PYTHON: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
print(json.dumps({tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}))
"#;

fn venv_python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh to create the project venv with tensorboard",
        python.display()
    );
    python
}

#[test]
fn tensorboard_reads_every_step_once_after_a_resume() {
    let shards = tempfile::tempdir().unwrap();
    write_set(shards.path(), false);
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let mut cfg = tiny(shards.path(), run.clone(), 4);
    cfg.base_width = 8;
    cfg.checkpoint_every = 2;
    train(&cfg, None, &mut Silent).unwrap();
    // Continue from step 2 as if the run had crashed after logging steps 2 and 3. The new
    // event file must sort after the first: a different second, or the `.1` suffix.
    let resumed = train(&cfg, Some(&run.join("ckpt-00000002")), &mut Silent).unwrap();
    assert_eq!(resumed.start_step, 2);
    let files = event_files(&run.join("tb")).unwrap();
    assert_eq!(files.len(), 2, "{files:?}");

    let output = Command::new(venv_python())
        .args(["-c", PYTHON])
        .arg(run.join("tb"))
        .output()
        .expect("run the venv's python");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python failed: {stderr}");
    let scalars: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    println!("{scalars}");

    let log: Vec<StepLog> = std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(log.iter().map(|l| l.step).collect::<Vec<_>>(), [0, 1, 2, 3]);
    let field = |l: &StepLog, tag: &str| match tag {
        "train/loss" => l.loss,
        "train/lr" => l.lr,
        "train/clips_per_s" => l.clips_per_s,
        "train/data_wait" => l.data_wait,
        "train/step_time_s" => l.step_time_s,
        _ => l.epoch,
    };
    for tag in [
        "train/loss",
        "train/lr",
        "train/clips_per_s",
        "train/data_wait",
        "train/step_time_s",
        "train/epoch",
    ] {
        let points = scalars[tag].as_array().unwrap_or_else(|| panic!("no {tag}: {scalars}"));
        let steps: Vec<u64> = points.iter().map(|p| p[0].as_u64().unwrap()).collect();
        assert_eq!(steps, [0, 1, 2, 3], "{tag}: each step once");
        for (p, l) in points.iter().zip(&log) {
            let (got, want) = (p[1].as_f64().unwrap(), field(l, tag) as f32 as f64);
            // The f32 TensorBoard stores, to the last bit but for serde_json's fast float
            // parsing (of both the log and Python's output), which may land an f64 ulp off.
            assert!(
                (got - want).abs() <= 1e-12 * want.abs(),
                "{tag} at {}: {got} vs {want}",
                l.step
            );
        }
    }
}
