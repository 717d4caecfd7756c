//! `cvrl-train`'s new flags from the outside: `--help` documents them, and bad combinations
//! or an unlabelled set for `--supervised` or `--eval-every` exit with status 1 and a
//! message naming the flag (a value clap cannot parse: status 2).

mod common;

use common::write_set;
use std::process::{Command, Output};

fn cvrl_train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cvrl-train")).args(args).output().expect("run cvrl-train")
}

#[test]
fn help_documents_accumulation_supervision_and_the_layout() {
    let out = cvrl_train(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--accumulate <N>", "--supervised", "--channels-last", "tb/"] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn bad_accumulation_and_an_unlabelled_set_are_explained() {
    let shards = tempfile::tempdir().unwrap();
    write_set(shards.path(), false);
    let out = tempfile::tempdir().unwrap();
    let dirs = [shards.path().to_str().unwrap(), "--out", out.path().to_str().unwrap()];
    let run = |extra: &[&str]| {
        let mut args = vec!["--shards", dirs[0], dirs[1], dirs[2], "--device", "cpu", "-q"];
        args.extend_from_slice(extra);
        let o = cvrl_train(&args);
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (code, err) = run(&["--batch-size", "8", "--accumulate", "3"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--accumulate 3 must divide --batch-size 8"), "{err}");
    let (code, err) = run(&["--supervised"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--supervised needs labelled videos"), "{err}");
    let (code, err) = run(&["--eval-every", "5"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--eval-every: needs labelled --eval-train and --eval-val"), "{err}");
    let (code, err) = run(&["--eval-every", "5", "--eval-train", dirs[0], "--eval-val", dirs[0]]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--eval-every") && err.contains("has no class label"), "{err}");
    let (code, err) = run(&["--crop-area-min", "0"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--crop-area-min must be in (0, 1], got 0"), "{err}");
    let (code, err) = run(&["--grayscale-p", "1.5"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--grayscale-p must be in [0, 1], got 1.5"), "{err}");
    let (code, err) = run(&["--augmentation", "sideways"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("expected cvrl, per-frame, light, light-per-frame or none"), "{err}");
}
