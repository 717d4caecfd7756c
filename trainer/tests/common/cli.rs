//! Running the `cvrl-train` binary in tests: a tiny model at width 8 (checkpoints of about
//! 2 MB), one thread, on the CPU; its output for assertion messages; its log's losses.

use std::path::Path;
use std::process::{Command, Output};

/// `cvrl-train` on `shards` into `out` with the tiny model, plus `extra` flags.
pub fn cvrl_train(shards: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cvrl-train"));
    cmd.arg("--shards").arg(shards).arg("--out").arg(out);
    cmd.args([
        "--base-width",
        "8",
        "--frames",
        "4",
        "--stride",
        "1",
        "--crop",
        "16",
        "--batch-size",
        "8",
        "--head-layers",
        "2",
        "--head-hidden-dim",
        "64",
        "--embedding-dim",
        "32",
        "--warmup-epochs",
        "1",
        "--workers",
        "1",
        "--seed",
        "1",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--quiet",
    ]);
    cmd.args(extra).env("OMP_NUM_THREADS", "1");
    cmd
}

/// Exit status, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `(step, loss)` of every line of `run/log.jsonl`.
pub fn losses(run: &Path) -> Vec<(u64, f64)> {
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    log.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap())
        })
        .collect()
}
