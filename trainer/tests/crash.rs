//! `cvrl-train` killed, out of disk, or handed a damaged checkpoint: `--resume` always goes
//! on from the last complete checkpoint, the loss curve after it equals an uninterrupted
//! run's, and what cannot be read is named with the checkpoint to go back to.

mod common;

use common::write_set;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt as _, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const STEPS: &str = "12";

/// A tiny model at width 8 (checkpoints of about 2 MB), one thread: `cvrl-train` with
/// `extra` flags.
fn cvrl_train(shards: &Path, out: &Path, extra: &[&str]) -> Command {
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
        "--steps",
        STEPS,
    ]);
    cmd.args(extra);
    cmd
}

fn output(mut cmd: Command) -> Output {
    cmd.output().expect("run cvrl-train")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The losses of `run/log.jsonl`, by step.
fn losses(run: &Path) -> Vec<(u64, f64)> {
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    log.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap())
        })
        .collect()
}

/// A shard set and an uninterrupted run of `STEPS` steps over it.
fn reference(dir: &Path) -> (PathBuf, Vec<(u64, f64)>) {
    let shards = dir.join("shards");
    std::fs::create_dir(&shards).unwrap();
    write_set(&shards, false);
    let whole = dir.join("whole");
    let o = output(cvrl_train(&shards, &whole, &["--checkpoint-every", "4"]));
    assert!(o.status.success(), "{}", text(&o));
    let expected = losses(&whole);
    assert_eq!(expected.len(), 12);
    (shards, expected)
}

#[test]
fn killed_twenty_times_at_random_moments_the_run_resumes_to_the_same_losses() {
    let dir = tempfile::tempdir().unwrap();
    let (shards, expected) = reference(dir.path());
    let run = dir.path().join("killed");
    // An empty run directory: `--resume` starts it at step 0 until a checkpoint exists.
    std::fs::create_dir(&run).unwrap();
    let resume = ["--resume", run.to_str().unwrap(), "--checkpoint-every", "1"];
    let resume = &resume[..];
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    let mut kills = 0;
    for _ in 0..20 {
        let mut cmd = cvrl_train(&shards, &run, resume);
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        // Start-up (libtorch) takes most of a second; the 12 steps, each with a checkpoint,
        // about as long again: moments spread over both, mid-write included.
        let after = Duration::from_millis(rng.random_range(200..2500));
        let start = Instant::now();
        while start.elapsed() < after && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 10, "only {kills} of 20 runs were killed before they finished");
    let o = output(cvrl_train(&shards, &run, resume));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(losses(&run), expected);
    let leftovers: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n.ends_with(".old"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_damaged_checkpoint_names_the_file_and_the_checkpoint_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (shards, _) = reference(dir.path());
    let run = dir.path().join("run");
    let keep = ["--checkpoint-every", "4", "--keep-checkpoints", "5"];
    let o = output(cvrl_train(&shards, &run, &keep));
    assert!(o.status.success(), "{}", text(&o));
    let last = run.join("ckpt-00000012");
    let before = run.join("ckpt-00000008");
    for (file, damage) in [
        ("model.safetensors", "truncate"),
        ("optimizer.safetensors", "truncate"),
        ("state.json", "garbage"),
    ] {
        let path = last.join(file);
        let good = std::fs::read(&path).unwrap();
        match damage {
            "truncate" => std::fs::write(&path, &good[..good.len() / 2]).unwrap(),
            _ => std::fs::write(&path, b"{\"format\": \"cvrl-checkpoint\", \"ver").unwrap(),
        }
        let mut args = vec!["--resume", run.to_str().unwrap()];
        args.extend(keep);
        let o = output(cvrl_train(&shards, &run, &args));
        assert_eq!(o.status.code(), Some(1), "{file}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(file), "{file} is not named: {err}");
        assert!(
            err.contains(&format!("pass --resume {}", before.display())),
            "{file}: the checkpoint before is not offered: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        std::fs::write(&path, good).unwrap();
    }
    // Going back to the one offered works.
    let mut args = vec!["--resume", before.to_str().unwrap()];
    args.extend(keep);
    let o = output(cvrl_train(&shards, &run, &args));
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_full_disk_while_checkpointing_keeps_the_last_good_checkpoint_and_the_rerun_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (shards, expected) = reference(dir.path());
    let small = dir.path().join("small-disk");
    std::fs::create_dir(&small).unwrap();
    // A file system with room for two checkpoints (about 2 x 2.2 MB), the encoder and the
    // log, not for a third.
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=7m", "tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&small);
    let run = small.join("run");
    let keep = ["--checkpoint-every", "2", "--keep-checkpoints", "10"];
    let o = output(cvrl_train(&shards, &run, &keep));
    assert_eq!(o.status.code(), Some(1), "the disk should fill: {}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains(run.to_str().unwrap()), "the file is not named: {err}");
    // The failed checkpoint left nothing; the complete ones load.
    let names: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    let complete = cvrl_trainer::checkpoint::list(&run).unwrap();
    assert!(!complete.is_empty(), "no checkpoint fitted: {names:?}");
    // Room again (the run moved to a larger disk): the rerun finishes as if nothing happened.
    let moved = dir.path().join("moved");
    let o = Command::new("cp").arg("-a").arg(&run).arg(&moved).output().unwrap();
    assert!(o.status.success());
    let mut args = vec!["--resume", moved.to_str().unwrap()];
    args.extend(keep);
    let o = output(cvrl_train(&shards, &moved, &args));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(losses(&moved), expected);
}
