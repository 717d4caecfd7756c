//! `scripts/gpu-check.sh --dry-run`: every step's command and inputs are checked on a
//! machine without a GPU, so the script is ready when one is lent; missing inputs are
//! refused up front, naming them.

use cvrl_e2e::{root, run_ok, sample_videos, target_dir, tempdir, text, venv_python};
use std::process::Command;

fn gpu_check(shards: &std::path::Path, out: &std::path::Path) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/gpu-check.sh"))
        .arg("--dry-run")
        .env("BIN", target_dir())
        .env("SHARDS", shards)
        .env("OUT", out)
        .env("PYTHON", venv_python());
    cmd
}

#[test]
fn the_dry_run_lists_every_step_and_refuses_missing_inputs() {
    let dir = tempdir();
    let shards = dir.path().join("shards");
    let videos = sample_videos().join("videos");
    run_ok("cvrl-shard", &[&"build", &videos, &shards, &"--short-side", &"64", &"--quiet"]);
    let out = dir.path().join("report");
    let o = gpu_check(&shards, &out).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for title in [
        "cvrl step, R3D-50 16x224 bf16 default layout",
        "PyTorch eager step, R3D-50 16x224 bf16 --channels-last",
        "cvrl-train with the real loader, augmentation on the device",
        "cvrl-train with the real loader, augmentation on the host",
        "device against host augmentation",
        "data-parallel path, NCCL, world size 1",
    ] {
        assert!(report.contains(&format!("## {title}")), "no {title:?} in\n{report}");
    }
    assert!(report.contains("--nproc-per-node 1"), "{report}");
    assert!(report.contains("--augment-on host"), "{report}");
    // A world of one goes through the data-parallel path (NCCL) only when asked.
    let dist = report.split("## data-parallel path, NCCL, world size 1").nth(1).unwrap();
    let dist = dist.split("## ").next().unwrap();
    assert!(dist.contains("--nproc-per-node 1") && dist.contains("--dist-always"), "{dist}");

    let missing = dir.path().join("no-such-set");
    let o = gpu_check(&missing, &out).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no-such-set is not a shard set"), "{err}");
}
