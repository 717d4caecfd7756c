//! `cvrl-train` as several processes on localhost (Gloo), started as torchrun starts them
//! (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): two ranks with the global batch
//! split between them train the same model as one process with the whole batch, a resume
//! of a two-rank run is exact, a two-rank checkpoint resumes in one process with a warning,
//! and a rank killed mid-run stops the other with an error instead of a hang.

mod common;

use common::write_set;
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tch::Tensor;

/// A tiny model at width 8, one thread per process, sync BN (the default).
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
        "--dist-timeout",
        "60",
    ]);
    cmd.args(extra).env("OMP_NUM_THREADS", "1");
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `world` ranks of `cvrl_train(...)`, as torchrun would.
fn spawn_ranks(world: usize, cmd: impl Fn() -> Command) -> Vec<Child> {
    let port = free_port().to_string();
    (0..world)
        .map(|rank| {
            let mut c = cmd();
            c.env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect()
}

/// Waits for every rank (each at most two minutes, then all are killed).
fn wait_all(children: Vec<Child>) -> Vec<Output> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut children = children;
    while Instant::now() < deadline {
        if children.iter_mut().all(|c| c.try_wait().unwrap().is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for c in &mut children {
        let _ = c.kill();
    }
    children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(outputs: &[Output]) {
    for (rank, o) in outputs.iter().enumerate() {
        assert!(o.status.success(), "rank {rank}: {}", text(o));
    }
}

fn losses(run: &Path) -> Vec<f64> {
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    log.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
        .collect()
}

fn weights(checkpoint: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(checkpoint.join("model.safetensors")).unwrap().into_iter().collect()
}

/// Losses within 1e-5 (relative to the loss) and every weight within 1e-5.
fn assert_same_training(a: &Path, b: &Path, checkpoint: &str) {
    let (la, lb) = (losses(a), losses(b));
    assert_eq!(la.len(), lb.len());
    let (wa, wb) = (weights(&a.join(checkpoint)), weights(&b.join(checkpoint)));
    assert_eq!(wa.len(), wb.len());
    let mut worst = (String::new(), 0.0);
    for (name, x) in &wa {
        let diff = (x - &wb[name]).abs().max().double_value(&[]);
        if diff > worst.1 {
            worst = (name.clone(), diff);
        }
    }
    eprintln!("losses {la:?} against {lb:?}; largest weight difference {worst:?}");
    for (x, y) in la.iter().zip(&lb) {
        assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "losses {la:?} against {lb:?}");
    }
    assert!(worst.1 <= 1e-5, "{} differs by {}", worst.0, worst.1);
}

fn shards(dir: &Path) -> PathBuf {
    let shards = dir.join("shards");
    std::fs::create_dir(&shards).unwrap();
    write_set(&shards, false);
    shards
}

#[test]
fn two_ranks_train_the_same_model_as_one_process_with_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let shards = shards(dir.path());
    for accumulate in ["1", "2"] {
        let flags = ["--steps", "3", "--accumulate", accumulate, "--temperature", "0.5"];
        let one = dir.path().join(format!("one-{accumulate}"));
        let o = cvrl_train(&shards, &one, &flags).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let two = dir.path().join(format!("two-{accumulate}"));
        ok(&wait_all(spawn_ranks(2, || cvrl_train(&shards, &two, &flags))));
        assert_same_training(&one, &two, "ckpt-00000003");
        let run: serde_json::Value =
            serde_json::from_slice(&std::fs::read(two.join("run.json")).unwrap()).unwrap();
        assert_eq!(run["world_size"], 2);
    }
}

#[test]
fn a_two_rank_run_resumes_exactly_and_in_one_process_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let shards = shards(dir.path());
    let whole = dir.path().join("whole");
    let flags = ["--steps", "4", "--checkpoint-every", "2", "--keep-checkpoints", "5"];
    ok(&wait_all(spawn_ranks(2, || cvrl_train(&shards, &whole, &flags))));
    // Stopped after step 2 (its checkpoint kept, the rest removed), then resumed by 2 ranks.
    let resumed = dir.path().join("resumed");
    std::fs::create_dir(&resumed).unwrap();
    let copy = |from: &Path, to: &Path| {
        let o = Command::new("cp").arg("-a").arg(from).arg(to).output().unwrap();
        assert!(o.status.success());
    };
    copy(&whole.join("ckpt-00000002"), &resumed.join("ckpt-00000002"));
    let mut args = flags.to_vec();
    let resume = resumed.to_str().unwrap().to_owned();
    args.extend(["--resume", &resume]);
    ok(&wait_all(spawn_ranks(2, || cvrl_train(&shards, &resumed, &args))));
    let (a, b) = (losses(&whole), losses(&resumed));
    assert_eq!(a[2..], b[..], "steps 2 and 3 after the resume");
    let (wa, wb) = (weights(&whole.join("ckpt-00000004")), weights(&resumed.join("ckpt-00000004")));
    assert!(wa.iter().all(|(n, t)| t.equal(&wb[n])), "a 2-rank resume is exact");

    // The same checkpoint in one process: it goes on, says so, and stays close.
    let alone = dir.path().join("alone");
    std::fs::create_dir(&alone).unwrap();
    copy(&whole.join("ckpt-00000002"), &alone.join("ckpt-00000002"));
    let mut args = flags.to_vec();
    let resume = alone.to_str().unwrap().to_owned();
    args.extend(["--resume", &resume]);
    let o = cvrl_train(&shards, &alone, &args).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("written by 2 rank(s), this run has 1"), "{err}");
    let c = losses(&alone);
    for (x, y) in a[2..].iter().zip(&c) {
        assert!((x - y).abs() <= 1e-4 * x.abs(), "{a:?} against {c:?}");
    }
}

#[test]
fn a_killed_rank_stops_the_other_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let shards = shards(dir.path());
    let run = dir.path().join("run");
    let mut children = spawn_ranks(2, || cvrl_train(&shards, &run, &["--steps", "100000"]));
    // Once training runs (rank 0's log has a line), rank 1 dies.
    let deadline = Instant::now() + Duration::from_secs(90);
    while losses_so_far(&run) == 0 {
        assert!(Instant::now() < deadline, "training never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    children[1].kill().unwrap();
    let killed_at = Instant::now();
    let outputs = wait_all(children);
    let o = &outputs[0];
    assert!(!o.status.success(), "rank 0 went on: {}", text(o));
    assert!(killed_at.elapsed() < Duration::from_secs(60), "not within --dist-timeout");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("rank 0 of 2"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn losses_so_far(run: &Path) -> usize {
    std::fs::read_to_string(run.join("log.jsonl")).map_or(0, |l| l.lines().count())
}
