//! `cvrl-train` as several processes on localhost (Gloo), started as torchrun starts them
//! (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): two ranks with the global batch
//! split between them train the same model as one process with the whole batch, and so
//! does one rank through the data-parallel path (`--dist-always`), a resume
//! of a two-rank run is exact, a two-rank checkpoint resumes in one process with a warning,
//! and a rank killed or hung mid-run stops the other with an error naming it instead of a
//! hang.

mod common;

use common::cli::{self, text};
use common::write_set;
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tch::Tensor;

/// The tiny model with a collective timeout short enough for a test.
fn cvrl_train(shards: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = cli::cvrl_train(shards, out, &["--dist-timeout", "60"]);
    cmd.args(extra);
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

fn ok(outputs: &[Output]) {
    for (rank, o) in outputs.iter().enumerate() {
        assert!(o.status.success(), "rank {rank}: {}", text(o));
    }
}

/// The losses of `run/log.jsonl`, in step order.
fn losses(run: &Path) -> Vec<f64> {
    cli::losses(run).into_iter().map(|(_, loss)| loss).collect()
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
fn a_world_of_one_through_the_data_parallel_path_trains_as_the_plain_path() {
    let dir = tempfile::tempdir().unwrap();
    let shards = shards(dir.path());
    let flags = ["--steps", "3", "--temperature", "0.5"];
    let plain = dir.path().join("plain");
    let o = cvrl_train(&shards, &plain, &flags).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // As `torchrun --nproc-per-node 1 cvrl-train --dist-always` starts it.
    let dist = dir.path().join("dist");
    let mut args = flags.to_vec();
    args.push("--dist-always");
    let outputs = wait_all(spawn_ranks(1, || cvrl_train(&shards, &dist, &args)));
    ok(&outputs);
    let err = String::from_utf8_lossy(&outputs[0].stderr);
    assert!(err.contains("rank 0 of 1 (Torchrun launch)"), "{err}");
    assert_same_training(&plain, &dist, "ckpt-00000003");
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

/// Starts two ranks with collective timeout `timeout_s` that would train for a long time,
/// waits until training runs (rank 0's log has a line), does `act` to rank 1, and returns
/// rank 0's output and how long after `act` it ended. Rank 1 is killed afterwards in any case.
fn lose_rank_1(timeout_s: &str, act: impl FnOnce(&mut Child)) -> (Output, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let shards = shards(dir.path());
    let run = dir.path().join("run");
    let flags = ["--dist-timeout", timeout_s, "--steps", "100000"];
    let mut children = spawn_ranks(2, || cli::cvrl_train(&shards, &run, &flags));
    let deadline = Instant::now() + Duration::from_secs(90);
    while losses_so_far(&run) == 0 {
        assert!(Instant::now() < deadline, "training never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    act(&mut children[1]);
    let acted_at = Instant::now();
    let mut rank1 = children.pop().unwrap();
    let rank0 = wait_all(children).pop().unwrap();
    let took = acted_at.elapsed();
    // A stopped process still takes SIGKILL; nothing is left running.
    let _ = rank1.kill();
    let _ = rank1.wait();
    (rank0, took)
}

/// Rank 0 failed, named rank 1 as the rank that stopped answering, and did not panic.
fn assert_names_rank_1(o: &Output) {
    assert!(!o.status.success(), "rank 0 went on: {}", text(o));
    let err = String::from_utf8_lossy(&o.stderr);
    eprintln!("rank 0: {}", err.lines().last().unwrap_or_default());
    assert!(err.contains("rank 1 of 2 stopped answering (its last heartbeat was"), "{err}");
    assert!(err.contains("rank 0 of 2 stops too"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_killed_rank_stops_the_other_with_an_error_naming_it() {
    let (o, took) = lose_rank_1("60", |rank1| rank1.kill().unwrap());
    eprintln!("rank 0 ended {took:?} after rank 1 was killed");
    assert_names_rank_1(&o);
    // Gloo sees the closed connection at once; the heartbeats are watched for a few seconds.
    assert!(took < Duration::from_secs(60), "not within --dist-timeout: {took:?}");
}

#[test]
fn a_hung_rank_stops_the_other_within_the_timeout_with_an_error_naming_it() {
    let timeout = Duration::from_secs(10);
    let (o, took) = lose_rank_1("10", |rank1| {
        let status = Command::new("kill").args(["-STOP", &rank1.id().to_string()]).status();
        assert!(status.unwrap().success(), "SIGSTOP rank 1");
    });
    eprintln!("rank 0 ended {took:?} after rank 1 was stopped");
    assert_names_rank_1(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.to_lowercase().contains("timed out"), "{err}");
    // The collective's timeout, the heartbeat watch (a few seconds), and slack for a loaded
    // machine to tear the run down; a hang would take until wait_all's two minutes.
    let bound = timeout + cvrl_trainer::dist::WATCH + Duration::from_secs(30);
    assert!(took < bound, "rank 0 took {took:?}, more than {bound:?}");
}

fn losses_so_far(run: &Path) -> usize {
    std::fs::read_to_string(run.join("log.jsonl")).map_or(0, |l| l.lines().count())
}
