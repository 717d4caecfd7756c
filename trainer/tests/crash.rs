//! `cvrl-train` killed, out of disk, or handed a damaged checkpoint: `--resume` always goes
//! on from the last complete checkpoint, the loss curve after it equals an uninterrupted
//! run's, and what cannot be read is named with the checkpoint to go back to.

mod common;

use common::cli::{self, losses, text};
use common::write_set;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt as _, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const STEPS: &str = "12";

fn cvrl_train(shards: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = cli::cvrl_train(shards, out, &["--steps", STEPS]);
    cmd.args(extra);
    cmd
}

fn output(mut cmd: Command) -> Output {
    cmd.output().expect("run cvrl-train")
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
    let newest = |run: &Path| {
        // Read while the child writes: a vanishing entry reads as "no change yet".
        cvrl_trainer::checkpoint::list(run)
            .ok()
            .and_then(|c| c.last().map(|(step, _)| *step))
            .unwrap_or(0)
    };
    let mut kills = 0;
    for _ in 0..20 {
        // Moments are chosen by progress, not by the clock, so that a faster or slower
        // machine sees the same mix: half the runs die during start-up or the moment their
        // first checkpoint lands, the others after one more step, a few milliseconds into
        // the next write. Each run advances at most about one step, so 20 runs do not
        // reach the end of the 12.
        let at_start = newest(&run);
        let steps_more = if at_start < 9 && rng.random_bool(0.5) { 1 } else { 0 };
        let patience = Duration::from_millis(rng.random_range(50..1500));
        let mut cmd = cvrl_train(&shards, &run, resume);
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let start = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let advanced = newest(&run).saturating_sub(at_start);
            let waited = start.elapsed() >= patience;
            if advanced > steps_more || (waited && advanced >= steps_more) {
                std::thread::sleep(Duration::from_millis(rng.random_range(0..20)));
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
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
