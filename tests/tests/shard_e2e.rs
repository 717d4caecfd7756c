//! End to end: `cvrl-shard build` and `cvrl-inspect` on real generated videos, and the
//! frames read back through `cvrl-formats` compared with the ffmpeg CLI's own decode.

use cvrl_e2e::{
    bin, ffmpeg_raw, inspect_json, psnr, run, sample_videos, tempdir, text, venv_python,
};
use cvrl_formats::ShardSet;
use std::path::Path;
use std::process::Command;

const SIDE: &str = "64";

fn build(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
        vec![&"build", &input, &out, &"--short-side", &SIDE, &"--quiet"];
    for e in extra {
        args.push(e);
    }
    run("cvrl-shard", &args)
}

fn ids(set: &ShardSet) -> Vec<String> {
    set.videos().iter().map(|v| v.video_id.clone()).collect()
}

#[test]
fn mixed_good_and_broken_files_build_lists_each_broken_one_and_the_index_opens_in_pyarrow_and_duckdb(
) {
    let out = tempdir();
    let o = build(&sample_videos().join("mixed"), out.path(), &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    // manifest.tsv says which stage must reject each broken file.
    let tsv = std::fs::read_to_string(sample_videos().join("manifest.tsv")).unwrap();
    let expected: Vec<(String, String)> = tsv
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once('\t'))
        .filter_map(|(path, stage)| {
            Some((path.strip_prefix("broken/")?.to_string(), stage.to_string()))
        })
        .collect();
    assert!(expected.len() >= 7, "{tsv}");
    let set = ShardSet::open(out.path()).unwrap();
    assert_eq!(set.len(), 9, "{:?}", ids(&set));
    assert_eq!(set.failures().len(), expected.len());
    for (name, stage) in &expected {
        let shown = format!("broken_{name}");
        assert!(stdout.contains(&shown), "summary does not list {shown}:\n{stdout}");
        let f = set.failures().iter().find(|f| f.source_path.ends_with(&shown)).unwrap();
        assert_eq!(&f.stage, stage, "{shown}: {}", f.error);
        assert!(!f.error.is_empty());
    }
    assert_eq!(set.classes(), ["archery", "bowling", "juggling"]);
    let t = set.videos().iter().find(|v| v.video_id == "archery/testsrc2_h264").unwrap();
    assert_eq!(
        (t.num_frames, t.width, t.height, t.label_index),
        (50, 86, 64, Some(0)),
        "160x120 to short side 64: 85.3 rounds to the nearest even width"
    );

    let script = r#"
import sys, pyarrow.parquet as pq, duckdb
t = pq.read_table(sys.argv[1] + "/index.parquet")
f = pq.read_table(sys.argv[1] + "/failures.parquet")
n = duckdb.connect().execute(f"SELECT count(*), sum(num_frames) FROM '{sys.argv[1]}/index.parquet'").fetchone()
print(t.num_rows, f.num_rows, n[0], n[1], sorted(set(f.column("stage").to_pylist())))
"#;
    let py = Command::new(venv_python()).arg("-c").arg(script).arg(out.path()).output().unwrap();
    assert!(py.status.success(), "{}", text(&py));
    let frames: u64 = set.videos().iter().map(|v| u64::from(v.num_frames)).sum();
    let line = String::from_utf8_lossy(&py.stdout);
    assert!(line.starts_with(&format!("9 {} 9 {frames} ", expected.len())), "{line}");
    assert!(line.contains("'decode'") && line.contains("'open'"), "{line}");
}

#[test]
fn frames_read_back_equal_the_ffmpeg_cli_decode_with_the_same_scaling() {
    let out = tempdir();
    let o = build(&sample_videos().join("videos"), out.path(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let set = ShardSet::open(out.path()).unwrap();
    let mut reader = set.reader().unwrap();
    for (id, file) in [
        ("archery/testsrc2_h264", "archery/testsrc2_h264.mp4"),
        ("juggling/long_640x360", "juggling/long_640x360.mp4"),
        ("bowling/smptebars_mpeg4", "bowling/smptebars_mpeg4.avi"),
    ] {
        let i = set.find(id).unwrap();
        let v = &set.videos()[i];
        let expected = ffmpeg_raw(
            &sample_videos().join("videos").join(file),
            &format!("scale={}:{}", v.width, v.height),
            "yuv420p",
        );
        let mut got = Vec::new();
        reader.read_frames(i, 0, v.num_frames, 1, &mut got).unwrap();
        assert_eq!(got.len(), expected.len(), "{id}: frame count differs from ffmpeg");
        let db = psnr(&got, &expected);
        assert!(db > 50.0, "{id}: PSNR {db:.1} dB against ffmpeg");
    }
}

#[test]
fn a_build_killed_midway_and_rerun_gives_the_same_set_as_an_uninterrupted_one() {
    let videos = sample_videos().join("videos");
    let whole = tempdir();
    let o = build(&videos, whole.path(), &["--shard-size", "1", "--jobs", "1"]);
    assert!(o.status.success(), "{}", text(&o));

    let killed = tempdir();
    let mut child = Command::new(bin("cvrl-shard"))
        .args(["build", "--short-side", SIDE, "--quiet", "--shard-size", "1", "--jobs", "1"])
        .arg(&videos)
        .arg(killed.path())
        .spawn()
        .unwrap();
    let third = killed.path().join("shard-00002.cvrs");
    while !third.exists() && child.try_wait().unwrap().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !killed.path().join("manifest.json").exists(),
        "build finished before it could be killed"
    );

    let o = build(&videos, killed.path(), &["--shard-size", "1", "--jobs", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("resumed after"), "{}", text(&o));
    let (a, b) = (ShardSet::open(whole.path()).unwrap(), ShardSet::open(killed.path()).unwrap());
    assert_eq!(a.videos(), b.videos());
    for s in &a.manifest().shards {
        let (x, y) = (
            std::fs::read(whole.path().join(&s.file)).unwrap(),
            std::fs::read(killed.path().join(&s.file)).unwrap(),
        );
        assert!(x == y, "{} differs after resume", s.file);
    }
    let leftovers: Vec<_> = std::fs::read_dir(killed.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let o = run("cvrl-inspect", &[&killed.path(), &"--verify"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn parts_built_separately_merge_into_the_whole_set() {
    let videos = sample_videos().join("videos");
    let whole = tempdir();
    assert!(build(&videos, whole.path(), &[]).status.success());
    let parts = tempdir();
    for p in ["0/3", "1/3"] {
        let o = build(&videos, parts.path(), &["--part", p]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let err = ShardSet::open(parts.path())
        .err()
        .expect("a set with a part missing must not open")
        .to_string();
    assert!(err.contains("parts [2] are missing"), "{err}");
    assert!(build(&videos, parts.path(), &["--part", "2/3"]).status.success());
    let joined = ShardSet::open(parts.path()).unwrap();
    let o = run("cvrl-shard", &[&"merge", &parts.path()]);
    assert!(o.status.success(), "{}", text(&o));
    let merged = ShardSet::open(parts.path()).unwrap();
    let whole = ShardSet::open(whole.path()).unwrap();
    assert_eq!(ids(&joined), ids(&whole));
    assert_eq!(ids(&merged), ids(&whole));
    let frames = |s: &ShardSet| {
        s.videos()
            .iter()
            .map(|v| (v.video_id.clone(), v.num_frames, v.checksum))
            .collect::<Vec<_>>()
    };
    assert_eq!(frames(&merged), frames(&whole));
}

#[test]
fn a_damaged_chunk_is_found_by_verify_and_the_reader_names_the_video() {
    let out = tempdir();
    assert!(build(&sample_videos().join("videos"), out.path(), &[]).status.success());
    let set = ShardSet::open(out.path()).unwrap();
    let i = set.find("bowling/smptebars_mpeg4").unwrap();
    let v = set.videos()[i].clone();
    let shard = out.path().join(&v.shard);
    drop(set);
    let mut bytes = std::fs::read(&shard).unwrap();
    let at = (v.offset + v.chunks[1].offset) as usize + 5;
    bytes[at] ^= 0x40;
    std::fs::write(&shard, bytes).unwrap();

    let j = inspect_json(&[&out.path(), &"--verify"], 3);
    assert_eq!(j["damaged"][0][0], "bowling/smptebars_mpeg4", "{j}");
    let o = run("cvrl-inspect", &[&out.path(), &"--verify"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("1 damaged")
            && stdout.contains("bowling/smptebars_mpeg4")
            && stdout.contains("chunk 1"),
        "{stdout}"
    );

    let set = ShardSet::open(out.path()).unwrap();
    let mut reader = set.reader().unwrap();
    let mut frames = Vec::new();
    let damaged = v.chunks[1].first_frame;
    reader.read_frames(i, 0, damaged, 1, &mut frames).expect("chunk 0 is intact");
    let err = reader.read_frames(i, damaged, 4, 1, &mut frames).unwrap_err().to_string();
    assert!(
        err.contains("bowling/smptebars_mpeg4")
            && err.contains("checksum")
            && err.contains(&v.shard),
        "{err}"
    );

    let j = inspect_json(&[&shard, &"--verify"], 3);
    assert!(j["records"].as_array().unwrap().iter().any(|r| !r["error"].is_null()), "{j}");
}

#[test]
fn bytes_after_the_last_record_fail_inspect_on_the_file_and_verify_on_the_set() {
    let out = tempdir();
    assert!(build(&sample_videos().join("videos"), out.path(), &[]).status.success());
    let shard = out.path().join("shard-00000.cvrs");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes.extend([0; 3]);
    std::fs::write(&shard, bytes).unwrap();

    let o = run("cvrl-inspect", &[&shard]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("3 bytes after the last record"), "{}", text(&o));
    let o = run("cvrl-inspect", &[&out.path(), &"--verify"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("9 ok, 1 damaged")
            && stdout.contains("shard-00000.cvrs: ")
            && stdout.contains("3 bytes after the last record"),
        "{stdout}"
    );
    // Training reads through the index, which never points there.
    let set = ShardSet::open(out.path()).unwrap();
    let mut frames = Vec::new();
    set.reader().unwrap().read_frames(0, 0, 1, 1, &mut frames).unwrap();
}

#[test]
fn a_kinetics_csv_is_matched_to_trimmed_and_untrimmed_files_and_missing_rows_are_reported() {
    let d = tempdir();
    let dl = d.path().join("downloads");
    std::fs::create_dir_all(&dl).unwrap();
    let src = sample_videos().join("videos/archery/testsrc2_h264.mp4");
    std::fs::copy(&src, dl.join("aaaaaaaaaaa_000000_000002.mp4")).unwrap();
    std::fs::copy(&src, dl.join("bbbbbbbbbbb.mp4")).unwrap();
    let csv = d.path().join("train.csv");
    std::fs::write(&csv, "label,youtube_id,time_start,time_end,split\narchery,aaaaaaaaaaa,0,2,train\nbowling,bbbbbbbbbbb,0.4,1.2,train\nbowling,ccccccccccc,5,15,train\n").unwrap();
    let out = d.path().join("out");
    let o = run(
        "cvrl-shard",
        &[&"build", &csv, &out, &"--video-root", &dl, &"--short-side", &SIDE, &"--quiet"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("ccccccccccc"), "{}", text(&o));
    let set = ShardSet::open(&out).unwrap();
    let whole = &set.videos()[set.find("archery/aaaaaaaaaaa_000000_000002").unwrap()];
    let trimmed = &set.videos()[set.find("bowling/bbbbbbbbbbb_000000_000001").unwrap()];
    assert_eq!(whole.num_frames, 50);
    assert_eq!(trimmed.num_frames, 20, "0.4 s to 1.2 s at 25 fps");
    assert_eq!(trimmed.time_start_s, Some(0.4));
    assert_eq!(set.failures()[0].stage, "missing");
}

#[test]
fn inspect_shows_a_set_a_video_a_shard_and_a_source_and_draws_a_contact_sheet() {
    let out = tempdir();
    assert!(build(&sample_videos().join("videos"), out.path(), &[]).status.success());
    // Every JSON report, parsed by a reader that refuses a key given twice in one object.
    let j = inspect_json(&[&out.path()], 0);
    assert_eq!(j["videos"], 9);
    assert_eq!(j["classes"], 3);
    let j = inspect_json(&[&out.path(), &"--verify"], 0);
    assert_eq!(j["ok"], 9, "{j}");
    let j = inspect_json(&[&out.path(), &"--video", &"archery/testsrc2_h264"], 0);
    assert_eq!(
        (&j["video_id"], &j["shard"]),
        (&"archery/testsrc2_h264".into(), &"shard-00000.cvrs".into())
    );
    let j = inspect_json(&[&out.path().join("shard-00000.cvrs"), &"--verify"], 0);
    assert_eq!(j["records"].as_array().map(Vec::len), Some(9), "{j}");
    let j = inspect_json(&[&sample_videos().join("videos/juggling/rotated_90.mp4")], 0);
    assert!(j.is_object(), "{j}");

    let sheet = out.path().join("sheet.png");
    let frames = out.path().join("frames");
    let o = run(
        "cvrl-inspect",
        &[
            &out.path(),
            &"--video",
            &"archery/testsrc2_h264",
            &"--contact-sheet",
            &sheet,
            &"--export-frames",
            &frames,
            &"--frames",
            &"0..3",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    // The 50-frame video in chunks of the sharder's default size.
    let set = ShardSet::open(out.path()).unwrap();
    let chunks = 50u32.div_ceil(set.manifest().params.chunk_frames);
    let listed = format!("chunks      {chunks}\n");
    assert!(String::from_utf8_lossy(&o.stdout).contains(&listed), "{}", text(&o));
    let png = std::fs::read(&sheet).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert_eq!(std::fs::read_dir(&frames).unwrap().count(), 3);

    let shard = out.path().join("shard-00000.cvrs");
    let o = run("cvrl-inspect", &[&shard]);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("9 videos"),
        "{}",
        text(&o)
    );
    let o = run("cvrl-inspect", &[&sample_videos().join("videos/juggling/rotated_90.mp4")]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn bad_flags_and_paths_get_clear_errors() {
    let out = tempdir();
    let videos = sample_videos().join("videos");
    let o = build(&videos, out.path(), &["--part", "3/3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("0 <= I < N"), "{}", text(&o));
    let o = build(&videos, out.path(), &["--shard-size", "1parsec"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown size unit"), "{}", text(&o));
    let missing = out.path().join("no-such-folder");
    let o = build(&missing, out.path(), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-folder"), "{}", text(&o));
    let o = run("cvrl-inspect", &[&out.path()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a cvrl shard set"), "{}", text(&o));
    // A finished set is neither rebuilt nor overwritten with other parameters.
    assert!(build(&videos, out.path(), &[]).status.success());
    let o = build(&videos, out.path(), &[]);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("already complete"),
        "{}",
        text(&o)
    );
    let before = std::fs::read(out.path().join("shard-00000.cvrs")).unwrap();
    let o = run("cvrl-shard", &[&"build", &videos, &out.path(), &"--short-side", &"48"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("short_side: 64 there, 48 now"),
        "{}",
        text(&o)
    );
    assert_eq!(before, std::fs::read(out.path().join("shard-00000.cvrs")).unwrap());
}
