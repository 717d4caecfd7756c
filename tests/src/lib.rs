//! Helpers for the end-to-end tests: the sample videos (made once per test binary by
//! `scripts/make-test-videos.sh` with the ffmpeg CLI), the built `cvrl-*` binaries, and
//! frame comparison.

pub mod damage;
pub mod json;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// `target/<profile>`: where cargo put this test binary's sibling executables.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf()
}

/// Path of a built workspace binary (`cargo build --workspace --bins`, which `just test` runs).
pub fn bin(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace --bins` first (`just test` does)",
        p.display()
    );
    p
}

/// Runs a workspace binary with `args`.
pub fn run(name: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(bin(name));
    for a in args {
        cmd.arg(a);
    }
    cmd.output().unwrap_or_else(|e| panic!("cannot run {name}: {e}"))
}

/// Runs a workspace binary with `args`, asserting that it succeeds; returns its stdout.
pub fn run_ok(name: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let o = run(name, args);
    assert!(o.status.success(), "{name}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `cvrl-inspect ARGS --json`, which must exit with `code`; its output parsed by
/// [`json::parse_strict`], which refuses a key repeated in one object.
pub fn inspect_json(args: &[&dyn AsRef<std::ffi::OsStr>], code: i32) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push(&"--json");
    let o = run("cvrl-inspect", &all);
    assert_eq!(o.status.code(), Some(code), "{}", text(&o));
    json::parse_strict(&o.stdout)
        .unwrap_or_else(|e| panic!("cvrl-inspect --json: {e}\n{}", text(&o)))
}

/// The result JSON named on a `cvrl-eval` run's stdout (`wrote RESULT.json and ...`).
pub fn eval_result(stdout: &str) -> serde_json::Value {
    let json = stdout
        .lines()
        .find_map(|l| l.strip_prefix("wrote ").and_then(|r| r.split(" and ").next()))
        .unwrap_or_else(|| panic!("no result file named in {stdout}"));
    let text = std::fs::read_to_string(json).unwrap_or_else(|e| panic!("{json}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{json}: {e}"))
}

/// Runs `cvrl-eval METHOD` on `run_dir`'s encoder with the sets `(train, val)` on the CPU,
/// plus `flags`; returns the result JSON.
pub fn cvrl_eval(
    method: &str,
    run_dir: &Path,
    sets: &(PathBuf, PathBuf),
    out: &Path,
    flags: &[&str],
) -> serde_json::Value {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &method,
        &"--run",
        &run_dir,
        &"--train",
        &sets.0,
        &"--val",
        &sets.1,
        &"--out",
        &out,
        &"--device",
        &"cpu",
    ];
    args.extend(flags.iter().map(|f| f as &dyn AsRef<std::ffi::OsStr>));
    eval_result(&run_ok("cvrl-eval", &args))
}

/// stdout and stderr of a run, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The generated sample videos (`videos/`, `broken/`, `mixed/`), made once.
pub fn sample_videos() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = target_dir().join("cvrl-test-videos");
        let status = Command::new("bash")
            .arg(root().join("scripts/make-test-videos.sh"))
            .arg(&dir)
            .status()
            .expect("run scripts/make-test-videos.sh");
        assert!(status.success(), "scripts/make-test-videos.sh failed");
        dir
    })
}

/// Raw frames decoded by the ffmpeg CLI with `-vf <filter>` into `pix_fmt`.
pub fn ffmpeg_raw(video: &Path, filter: &str, pix_fmt: &str) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(video)
        .args(["-vf", filter, "-pix_fmt", pix_fmt, "-f", "rawvideo", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg failed on {}: {}",
        video.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Peak signal-to-noise ratio in dB of two equal-length byte buffers (infinite if equal).
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "buffers differ in length");
    let se: f64 = a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum();
    if se == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (255.0f64.powi(2) / (se / a.len() as f64)).log10()
}

/// The project venv's python (made by scripts/setup.sh).
pub fn venv_python() -> PathBuf {
    root().join(".venv/bin/python")
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// A generated proxy dataset (`cvrl-shard synth DIR/videos --preset easy SYNTH_FLAGS`),
/// sharded as `just proxy-data` shards it; returns the `(train, val)` shard sets under
/// `dir/shards`. Raw chunks (zstd only) hold the same pixels as the default predictor's and
/// decode several times faster: on 2 cores the loader's decoding slows the training step.
pub fn proxy_shards(dir: &Path, synth_flags: &[&str]) -> (PathBuf, PathBuf) {
    let videos = dir.join("videos");
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
        vec![&"synth", &videos, &"--preset", &"easy", &"--quiet"];
    args.extend(synth_flags.iter().map(|f| f as &dyn AsRef<std::ffi::OsStr>));
    run_ok("cvrl-shard", &args);
    let shard = |split: &str| {
        let shards = dir.join("shards").join(split);
        let split_videos = videos.join(split);
        let args: [&dyn AsRef<std::ffi::OsStr>; 8] = [
            &"build",
            &split_videos,
            &shards,
            &"--short-side",
            &"0",
            &"--predictor",
            &"raw",
            &"--quiet",
        ];
        run_ok("cvrl-shard", &args);
        shards
    };
    (shard("train"), shard("val"))
}

/// Every file under `dir`, path relative to it -> bytes: what a test compares to show that
/// a refused command wrote nothing, or that two runs wrote the same.
pub fn files(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// `cvrl-train` flags of the tests' tiny runs: batch 4, a small head, one loader worker and
/// one libtorch thread on the CPU, no checkpoint before the last, quiet. Each test adds its
/// model, clip size and steps.
pub const TINY_RUN: &[&str] = &[
    "--batch-size",
    "4",
    "--head-hidden-dim",
    "32",
    "--embedding-dim",
    "16",
    "--workers",
    "1",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--checkpoint-every",
    "0",
    "--quiet",
];
