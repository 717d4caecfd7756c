//! End to end: `cvrl-shard build` on the generated real videos, then `cvrl-train` on the
//! shards for a few steps on the CPU: the per-step log, the checkpoints, the exported
//! encoder (read back in PyTorch without the `safetensors` package), resume from the run
//! directory, and clear errors for a bad flag and a missing shard set.

use cvrl_e2e::{run, sample_videos, tempdir, text, venv_python};
use std::path::Path;
use std::process::Command;

/// A tiny run: R3D-18 on 4 x 32 x 32 clips, batch 4, a small head, one libtorch thread
/// (about a second a step; more threads only contend with the loader on a small machine).
/// Each checkpoint writes R3D-18's 20M weights three times (model, velocities, encoder), so
/// only the final one is written.
const TINY: &[&str] = &[
    "--batch-size",
    "4",
    "--frames",
    "4",
    "--crop",
    "32",
    "--head-hidden-dim",
    "64",
    "--embedding-dim",
    "32",
    "--workers",
    "1",
    "--checkpoint-every",
    "0",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--quiet",
];

fn train(shards: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--shards", &shards, &"--out", &out];
    for a in TINY.iter().chain(extra) {
        args.push(a);
    }
    run("cvrl-train", &args)
}

fn log_lines(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// Reads a safetensors file by its spec (8-byte header length, JSON header, data) with torch
/// alone, and prints `name shape` per tensor and whether encoder and checkpoint agree.
const PYTHON: &str = r#"
import json, struct, sys
import torch

def load(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        assert entry["dtype"] == "F32", entry
        start, end = entry["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[start:end]), dtype=torch.float32).reshape(entry["shape"])
    return out

encoder, model = load(sys.argv[1]), load(sys.argv[2])
for name in sorted(encoder):
    print(name, list(encoder[name].shape))
assert all(torch.equal(t, model[name]) for name, t in encoder.items()), "encoder differs from the checkpoint"
assert all(torch.isfinite(t).all() for t in encoder.values())
print("same as checkpoint", len(encoder), len(model))
"#;

#[test]
fn cvrl_train_runs_on_real_shards_logs_every_step_checkpoints_exports_and_resumes() {
    let dir = tempdir();
    let shards = dir.path().join("shards");
    let o = run(
        "cvrl-shard",
        &[&"build", &sample_videos().join("videos"), &shards, &"--short-side", &"32", &"--quiet"],
    );
    assert!(o.status.success(), "{}", text(&o));

    let run_dir = dir.path().join("run");
    let started = std::time::Instant::now();
    let o = train(&shards, &run_dir, &["--steps", "2"]);
    println!("2 steps in {:.1} s", started.elapsed().as_secs_f64());
    assert!(o.status.success(), "{}", text(&o));

    let log = log_lines(&run_dir);
    let steps: Vec<u64> = log.iter().map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 1], "{log:?}");
    for l in &log {
        let loss = l["loss"].as_f64().unwrap();
        assert!(loss.is_finite() && loss > 0.0, "{l}");
        assert!(l["lr"].as_f64().is_some() && l["clips_per_s"].as_f64().unwrap() > 0.0, "{l}");
        println!("{l}");
    }
    for f in ["model.safetensors", "optimizer.safetensors", "state.json"] {
        assert!(run_dir.join("ckpt-00000002").join(f).is_file(), "ckpt-00000002/{f} missing");
    }
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("ckpt-00000002/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["step"], 2);
    assert_eq!(state["config"]["model"], "r3d18");
    assert_eq!(state["config"]["batch_size"], 4);
    let encoder = run_dir.join("encoder.safetensors");
    assert!(encoder.is_file());

    let py = Command::new(venv_python())
        .arg("-c")
        .arg(PYTHON)
        .arg(&encoder)
        .arg(run_dir.join("ckpt-00000002/model.safetensors"))
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", text(&py));
    let listing = String::from_utf8_lossy(&py.stdout);
    assert!(listing.contains("stem.conv.weight [64, 3, 5, 7, 7]"), "{listing}");
    assert!(listing.contains("res5.1.bn_b.running_var [512]"), "{listing}");
    assert!(!listing.contains("head."), "the head is not part of the encoder:\n{listing}");
    assert!(listing.contains("same as checkpoint"), "{listing}");

    // Continue the run in place to 3 steps.
    let o = train(&shards, &run_dir, &["--steps", "3", "--resume", run_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let steps: Vec<u64> = log_lines(&run_dir).iter().map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 1, 2]);
    assert!(run_dir.join("ckpt-00000003/model.safetensors").is_file());
    println!("in all {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn bad_usage_and_a_missing_shard_set_are_explained() {
    let dir = tempdir();
    let o = run(
        "cvrl-train",
        &[&"--shards", &dir.path(), &"--out", &dir.path().join("r"), &"--optimizer", &"adam"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("adam") && err.contains("sgd or lars"), "{err}");

    let o = run("cvrl-train", &[&"--out", &dir.path().join("r")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--shards"), "{}", text(&o));

    let missing = dir.path().join("no-such-shards");
    let o =
        run("cvrl-train", &[&"--shards", &missing, &"--out", &dir.path().join("r"), &"--quiet"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no such directory") && err.contains(&*missing.to_string_lossy()),
        "{err}"
    );
    assert!(err.lines().count() <= 2, "one clear line:\n{err}");

    // A directory that exists but holds no shard set.
    let o =
        run("cvrl-train", &[&"--shards", &dir.path(), &"--out", &dir.path().join("r"), &"--quiet"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot open the shard set"),
        "{}",
        text(&o)
    );
}
