//! End to end: a shard set whose `manifest.json` or `index.parquet` is damaged (every way of
//! `cvrl_e2e::damage`) is refused by `ShardSet::open`, `cvrl-inspect`, `cvrl-train` and
//! `cvrl-eval` with an error naming the file, what is wrong and what to do; a damaged or
//! foreign `encoder.safetensors` is refused by `cvrl-eval` naming it; a damaged shard met
//! by `cvrl-train` is skipped with a warning naming the video, and counted in log.jsonl.

use cvrl_e2e::damage::DAMAGES;
use cvrl_e2e::{run, run_ok, sample_videos, tempdir, text};
use cvrl_formats::ShardSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

/// A set of the 9 sample videos at short side 32, and a 2-step run trained on it with a
/// checkpoint after each step; made once, kept for the whole test binary.
fn set_and_run() -> &'static (PathBuf, PathBuf) {
    static MADE: OnceLock<(tempfile::TempDir, (PathBuf, PathBuf))> = OnceLock::new();
    &MADE
        .get_or_init(|| {
            let dir = tempdir();
            let set = dir.path().join("set");
            let videos = sample_videos().join("videos");
            run_ok("cvrl-shard", &[&"build", &videos, &set, &"--short-side", &"32", &"--quiet"]);
            let run_dir = dir.path().join("run");
            let o = train(&set, &run_dir, &["--steps", "2", "--checkpoint-every", "1", "--quiet"]);
            assert!(o.status.success(), "{}", text(&o));
            (dir, (set, run_dir))
        })
        .1
}

/// `cvrl-train` with a tiny model on the CPU, plus `flags`.
fn train(set: &Path, out: &Path, flags: &[&str]) -> Output {
    let mut args: Vec<&dyn AsRef<OsStr>> = vec![&"--shards", &set, &"--out", &out];
    let tiny = [
        "--preset",
        "proxy-cpu",
        "--base-width",
        "8",
        "--frames",
        "4",
        "--crop",
        "16",
        "--batch-size",
        "4",
        "--head-hidden-dim",
        "32",
        "--embedding-dim",
        "16",
        "--workers",
        "1",
        "--threads",
        "1",
        "--seed",
        "3",
    ];
    args.extend(tiny.iter().chain(flags).map(|f| f as &dyn AsRef<OsStr>));
    run("cvrl-train", &args)
}

/// `cvrl-eval knn` of `run_dir`'s encoder on the sets `train` and `val`, on the CPU.
fn eval(run_dir: &Path, train: &Path, val: &Path) -> Output {
    run(
        "cvrl-eval",
        &[
            &"knn",
            &"--run",
            &run_dir,
            &"--train",
            &train,
            &"--val",
            &val,
            &"--device",
            &"cpu",
            &"--temporal-views",
            &"1",
            &"--spatial-crops",
            &"1",
            &"--no-cache",
        ],
    )
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_damaged_manifest_or_index_is_refused_by_name_by_the_library_and_every_tool() {
    let (set, run_dir) = set_and_run();
    let d = tempdir();
    for damage in DAMAGES {
        let bad = damage.copy_of(set, d.path());
        let err = ShardSet::open(&bad).err().unwrap_or_else(|| panic!("{} opened", damage.name));
        damage.check(&bad, &err.to_string());

        let o = run("cvrl-inspect", &[&bad]);
        assert_eq!(o.status.code(), Some(1), "{}: {}", damage.name, text(&o));
        damage.check(&bad, &stderr(&o));

        let o = train(&bad, &d.path().join("run"), &["--steps", "1", "--quiet"]);
        assert_eq!(o.status.code(), Some(1), "{}: {}", damage.name, text(&o));
        damage.check(&bad, &stderr(&o));

        for (train_set, val_set) in [(&bad, set), (set, &bad)] {
            let o = eval(run_dir, train_set, val_set);
            assert_eq!(o.status.code(), Some(1), "{}: {}", damage.name, text(&o));
            damage.check(&bad, &stderr(&o));
        }
    }
}

/// A safetensors file of one tensor `name` of `n` float32 zeros.
fn safetensors(name: &str, n: usize) -> Vec<u8> {
    let header =
        format!(r#"{{"{name}":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}}}}"#, 4 * n);
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.resize(out.len() + 4 * n, 0);
    out
}

#[test]
fn a_damaged_or_foreign_encoder_is_refused_by_cvrl_eval_naming_the_file() {
    let (set, run_dir) = set_and_run();
    let d = tempdir();
    let good = std::fs::read(run_dir.join("encoder.safetensors")).unwrap();
    let optimizer = std::fs::read(run_dir.join("ckpt-00000002/optimizer.safetensors")).unwrap();
    let mut huge_header = good.clone();
    huge_header[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("cut in half", good[..good.len() / 2].to_vec(), "cannot be read"),
        ("empty", Vec::new(), "cannot be read"),
        ("a header length past the end", huge_header, "cannot be read"),
        ("other tensor names", safetensors("decoder.weight", 16), "does not match"),
        ("a checkpoint's optimizer state", optimizer, "does not match"),
        ("not safetensors at all", b"PK\x03\x04 a zip file".to_vec(), "cannot be read"),
    ];
    for (what, bytes, says) in cases {
        let copy = d.path().join(what.replace(' ', "-"));
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::copy(run_dir.join("run.json"), copy.join("run.json")).unwrap();
        std::fs::write(copy.join("encoder.safetensors"), bytes).unwrap();
        let o = eval(&copy, set, set);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", text(&o));
        let err = stderr(&o);
        let file = copy.join("encoder.safetensors").display().to_string();
        assert!(err.contains(&file) && err.contains(says), "{what}: {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
    }
}

#[test]
fn a_damaged_shard_met_by_cvrl_train_is_skipped_with_a_warning_and_counted_in_the_log() {
    let (set, _) = set_and_run();
    let d = tempdir();
    let bad = d.path().join("set");
    std::fs::create_dir_all(&bad).unwrap();
    for e in std::fs::read_dir(set).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, bad.join(p.file_name().unwrap())).unwrap();
    }
    // Every chunk of one video damaged: whichever clip of it the sampler picks fails its
    // checksum.
    let victim = "bowling/smptebars_mpeg4";
    let opened = ShardSet::open(&bad).unwrap();
    let v = opened.videos()[opened.find(victim).unwrap()].clone();
    drop(opened);
    let shard = bad.join(&v.shard);
    let mut bytes = std::fs::read(&shard).unwrap();
    for c in &v.chunks {
        bytes[(v.offset + c.offset) as usize + c.length as usize / 2] ^= 0x20;
    }
    std::fs::write(&shard, bytes).unwrap();

    // 9 videos, batches of 4: 6 steps draw 24 clips, every video at least twice.
    let out = d.path().join("run");
    let o = train(&bad, &out, &["--steps", "6", "--checkpoint-every", "0"]);
    assert!(o.status.success(), "the run goes on: {}", text(&o));
    let err = stderr(&o);
    let warning = err.lines().find(|l| l.starts_with("warning:") && l.contains(victim));
    assert!(warning.is_some_and(|l| l.contains("checksum")), "{err}");
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let skipped: u64 = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["skipped_videos"]
                .as_u64()
                .unwrap_or(0) // left out of a step that skipped nothing
        })
        .sum();
    let warnings = err.lines().filter(|l| l.starts_with("warning:") && l.contains(victim)).count();
    // The loader reads ahead: a batch it made after the last step warned but was never
    // trained on, so it is not counted.
    assert!(skipped >= 1 && skipped <= warnings as u64, "{skipped} skipped: {err}");
    assert!(err.contains(&format!("{skipped} videos could not be read")), "{err}");
}
