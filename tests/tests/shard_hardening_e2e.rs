//! End to end: `cvrl-shard` fed damaged inputs and stopped at its crash points. Each bad CSV
//! row becomes a failure naming its line while the other rows are stored; a merge of parts
//! that do not belong together is refused, naming them, with nothing written; a second
//! build of a folder is refused at once, naming the first; a build that runs out of space
//! stops with an error naming the file, keeps what it committed, and a rerun finishes it;
//! files that are not videos are named in the summary; FFmpeg's own log lines are not
//! printed but quoted in the failure of the file they concern, and shown by file with
//! `--verbose`.

use cvrl_e2e::{bin, ffmpeg_raw, files, run, run_ok, sample_videos, tempdir, text};
use cvrl_formats::index::read_failures;
use cvrl_formats::ShardSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `cvrl-shard build INPUT OUT --short-side 64 --quiet FLAGS...`.
fn shard_build(input: &Path, out: &Path, flags: &[&str]) -> Output {
    let mut args: Vec<&dyn AsRef<OsStr>> =
        vec![&"build", &input, &out, &"--short-side", &"64", &"--quiet"];
    args.extend(flags.iter().map(|f| f as &dyn AsRef<OsStr>));
    run("cvrl-shard", &args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `(video id, frames, checksum)` of every video of a set.
fn contents(set: &ShardSet) -> Vec<(String, u32, u32)> {
    set.videos().iter().map(|v| (v.video_id.clone(), v.num_frames, v.checksum)).collect()
}

/// The sample videos `copies` times over (symbolic links), for a build that takes a while.
fn many_videos(dir: &Path, copies: usize) -> PathBuf {
    let src = sample_videos().join("videos");
    let root = dir.join("many");
    for class in std::fs::read_dir(&src).unwrap() {
        let class = class.unwrap().path();
        let to = root.join(class.file_name().unwrap());
        std::fs::create_dir_all(&to).unwrap();
        for video in std::fs::read_dir(&class).unwrap() {
            let video = video.unwrap().path();
            for k in 0..copies {
                let name = format!("{k}_{}", video.file_name().unwrap().to_string_lossy());
                std::os::unix::fs::symlink(&video, to.join(name)).unwrap();
            }
        }
    }
    root
}

#[test]
fn a_kinetics_csv_with_bad_rows_stores_every_good_row_and_lists_each_bad_one_by_its_line() {
    let d = tempdir();
    let dl = d.path().join("downloads");
    std::fs::create_dir_all(&dl).unwrap();
    // 2 s at 25 fps.
    let src = sample_videos().join("videos/archery/testsrc2_h264.mp4");
    for name in ["aaa.mp4", "bbb_000000_000002.mp4", "ccc.mp4", "ddd.mp4", "eee.mp4"] {
        std::fs::copy(&src, dl.join(name)).unwrap();
    }
    let csv = d.path().join("train.csv");
    // Columns in another order than Kinetics', and a quoted label with a comma.
    let rows = [
        "youtube_id,time_end,split,label,time_start",
        "aaa,2,train,\"dancing, ballet\",0", // line 2: stored
        "bbb,2,train,archery,0",             // line 3: stored, from the trimmed file
        "aaa,abc,train,archery,0",           // line 4: not a number
        "eee,1,train,archery,1",             // line 5: empty window
        "ccc,40,train,archery,30",           // line 6: window after the end of the video
        "ddd,10,train,archery,1",            // line 7: stored, what there is of 1..10 s
        "aaa,2,train,bowling,0",             // line 8: line 2's clip again, another label
        "fff,10,train,archery,0",            // line 9: no download
    ];
    std::fs::write(&csv, rows.join("\n") + "\n").unwrap();
    let out = d.path().join("out");
    let o = run(
        "cvrl-shard",
        &[&"build", &csv, &out, &"--video-root", &dl, &"--short-side", &"64", &"--quiet"],
    );
    assert_eq!(o.status.code(), Some(3), "stored, with failures: {}", text(&o));
    let set = ShardSet::open(&out).unwrap();
    let stored: Vec<&str> = set.videos().iter().map(|v| v.video_id.as_str()).collect();
    assert_eq!(
        stored,
        [
            "archery/bbb_000000_000002",
            "archery/ddd_000001_000010",
            "dancing, ballet/aaa_000000_000002"
        ]
    );
    assert_eq!(set.classes(), ["archery", "bowling", "dancing, ballet"]);
    let frames = |id: &str| set.videos()[set.find(id).unwrap()].num_frames as usize;
    let v = &set.videos()[0];
    let frame_bytes = (v.width * v.height * 3 / 2) as usize;
    let ffmpeg_frames = |filter: &str| {
        let scaled = format!("{filter}scale={}:{}", v.width, v.height);
        ffmpeg_raw(&src, &scaled, "yuv420p").len() / frame_bytes
    };
    assert_eq!(frames("dancing, ballet/aaa_000000_000002"), ffmpeg_frames(""));
    assert_eq!(
        frames("archery/ddd_000001_000010"),
        ffmpeg_frames("trim=start=1,setpts=PTS-STARTPTS,"),
        "a window running past the end keeps the frames there are"
    );

    let summary = stdout(&o);
    let expected = [
        (4, "csv", "time_end \"abc\" is not a number of seconds (aaa); fix or delete the row"),
        (5, "csv", "time_end 1 is not after time_start 1 (eee); fix or delete the row"),
        (6, "csv", "the window 30..40 s starts after the end of the video (2.0 s long)"),
        (8, "csv", "repeats the clip aaa_000000_000002 of line 2, labelled \"dancing, ballet\""),
        (9, "missing", "no file fff.<ext> or fff_000000_000010.<ext> under"),
    ];
    assert_eq!(set.failures().len(), expected.len(), "{:?}", set.failures());
    for (line, stage, why) in expected {
        let named = format!("train.csv line {line}: {why}");
        let f = set.failures().iter().find(|f| f.error.starts_with(&named));
        let f = f.unwrap_or_else(|| panic!("no failure {named:?} in {:?}", set.failures()));
        assert_eq!(f.stage, stage, "{named}");
        assert!(summary.contains(&named), "the summary does not list {named:?}:\n{summary}");
    }
}

#[test]
fn a_merge_of_parts_that_do_not_make_one_set_is_refused_naming_them_and_writes_nothing() {
    let videos = sample_videos().join("videos");
    let parts = tempdir();
    let dir = parts.path();
    for p in ["0/3", "1/3"] {
        let o = shard_build(&videos, dir, &["--part", p]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let refused = |needles: &[&str]| {
        let before = files(dir);
        let o = run("cvrl-shard", &[&"merge", &dir]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        for n in needles {
            assert!(stderr(&o).contains(n), "{n:?} not in {}", text(&o));
        }
        assert!(before == files(dir), "a refused merge wrote or removed files");
        stderr(&o)
    };
    refused(&["parts [2] are missing (no part-0002-of-0003.manifest.json)", "--part I/3"]);

    let other = ["--part", "2/3", "--chunk-frames", "4", "--predictor", "raw"];
    assert!(shard_build(&videos, dir, &other).status.success());
    refused(&[
        "part-0000-of-0003.manifest.json and part-0002-of-0003.manifest.json were built with \
         different parameters",
        "chunk_frames 8 in part-0000-of-0003.manifest.json, 4 in part-0002-of-0003.manifest.json",
        "predictor \"interleaved\" in part-0000-of-0003.manifest.json, \"raw\" in \
         part-0002-of-0003.manifest.json",
    ]);

    // Part 2 of a dataset with other classes.
    let fewer = tempdir();
    let juggling = fewer.path().join("juggling");
    std::fs::create_dir_all(&juggling).unwrap();
    for name in ["a.mp4", "b.mp4", "c.mp4"] {
        std::fs::copy(videos.join("juggling/rotated_90.mp4"), juggling.join(name)).unwrap();
    }
    assert!(shard_build(fewer.path(), dir, &["--part", "2/3", "--force"]).status.success());
    refused(&[
        "part-0000-of-0003.manifest.json and part-0002-of-0003.manifest.json: class lists differ",
    ]);

    assert!(shard_build(&videos, dir, &["--part", "2/3", "--force"]).status.success());
    let shard = dir.join("part-0001-of-0003.shard-00000.cvrs");
    let kept = dir.join("kept.cvrs");
    std::fs::rename(&shard, &kept).unwrap();
    refused(&["part-0001-of-0003.shard-00000.cvrs cannot be read", "rebuild that part"]);
    std::fs::rename(&kept, &shard).unwrap();

    let index = dir.join("part-0001-of-0003.index.parquet");
    std::fs::rename(&index, &kept).unwrap();
    let err = refused(&["part-0001-of-0003.index.parquet: No such file or directory (os error 2)"]);
    assert_eq!(err.matches("No such file or directory").count(), 1, "the cause once: {err}");
    std::fs::rename(&kept, &index).unwrap();

    let o = run("cvrl-shard", &[&"merge", &dir]);
    assert!(o.status.success(), "{}", text(&o));
    run_ok("cvrl-inspect", &[&dir, &"--verify"]);
}

#[test]
fn a_second_build_of_a_folder_is_refused_at_once_naming_the_first_which_completes() {
    let d = tempdir();
    let input = many_videos(d.path(), 2);
    let out = d.path().join("out");
    let mut first = Command::new(bin("cvrl-shard"))
        .args(["build", "--short-side", "64", "--quiet", "--jobs", "1", "--shard-size", "1"])
        .arg(&input)
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = format!("\"pid\":{}", first.id());
    let lock = out.join(".building/build.lock");
    while !std::fs::read_to_string(&lock).unwrap_or_default().contains(&pid) {
        assert!(first.try_wait().unwrap().is_none(), "the first build ended before it locked");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let o = shard_build(&input, &out, &["--jobs", "1", "--shard-size", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    let named = format!("is being written by another cvrl-shard (pid {} on host ", first.id());
    assert!(err.contains(&named) && err.contains("started "), "{err}");

    let o = first.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(!out.join(".building").exists(), "the lock and state folder are gone");
    run_ok("cvrl-inspect", &[&out, &"--verify"]);
    let set = ShardSet::open(&out).unwrap();
    assert_eq!(set.len(), 18);
    assert!(set.failures().is_empty());

    // Parts of one set lock apart and build at once.
    let parts = d.path().join("parts");
    let spawn = |p: &str| {
        Command::new(bin("cvrl-shard"))
            .args(["build", "--short-side", "64", "--quiet", "--jobs", "1", "--part", p])
            .arg(&input)
            .arg(&parts)
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn("0/2").unwrap());
        let b = s.spawn(|| spawn("1/2").unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success() && b.status.success(), "{}\n{}", text(&a), text(&b));
    run_ok("cvrl-shard", &[&"merge", &parts]);
    assert_eq!(contents(&ShardSet::open(&parts).unwrap()), contents(&set));
}

#[test]
fn a_build_that_runs_out_of_space_says_so_keeps_its_committed_shards_and_a_rerun_finishes_it() {
    let videos = sample_videos().join("videos");
    let flags = ["--jobs", "1", "--shard-size", "1"]; // one video per shard
    let whole = tempdir();
    let o = shard_build(&videos, whole.path(), &flags);
    assert!(o.status.success(), "{}", text(&o));
    let reference = ShardSet::open(whole.path()).unwrap();
    let sizes: Vec<u64> = reference.manifest().shards.iter().map(|s| s.bytes).collect();
    // A file size limit (`ulimit -f`, KiB) above every shard before the largest, below it.
    let big = (0..sizes.len()).max_by_key(|&i| sizes[i]).unwrap();
    assert!(big > 0, "the largest shard must not be the first: {sizes:?}");
    let limit_kib = sizes[..big].iter().max().unwrap() / 1024 + 2;
    assert!(limit_kib * 1024 < sizes[big], "{sizes:?}");

    let out = tempdir();
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -f {limit_kib}; exec \"$@\""))
        .arg("bash")
        .arg(bin("cvrl-shard"))
        .args(["build", "--short-side", "64", "--quiet"])
        .args(flags)
        .arg(&videos)
        .arg(out.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "an error, not a signal: {}", text(&o));
    let err = stderr(&o);
    let file =
        format!("{}.tmp: File too large (os error 27)", reference.manifest().shards[big].file);
    assert!(err.contains(&file), "{file:?} not in {err}");
    assert_eq!(err.matches("File too large").count(), 1, "the cause once: {err}");
    let kept = format!("ran out of space (the disk is full, or a quota or file size limit is reached); its {big} committed shards are kept: free space and run the same command again");
    assert!(err.contains(&kept), "{err}");
    assert!(!out.path().join("manifest.json").exists());
    let mut names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("shard-"))
        .collect();
    names.sort();
    let committed: Vec<String> =
        reference.manifest().shards[..big].iter().map(|s| s.file.clone()).collect();
    assert_eq!(names, committed, "the committed shards, and no partial one");
    for name in &names {
        let o = run("cvrl-inspect", &[&out.path().join(name), &"--verify"]);
        assert!(o.status.success(), "{name}: {}", text(&o));
    }

    let o = shard_build(&videos, out.path(), &flags);
    assert!(o.status.success(), "{}", text(&o));
    assert!(stdout(&o).contains(&format!("resumed after {big} videos")), "{}", text(&o));
    let resumed = ShardSet::open(out.path()).unwrap();
    assert_eq!(resumed.videos(), reference.videos());
    for s in &reference.manifest().shards {
        let same = std::fs::read(whole.path().join(&s.file)).unwrap()
            == std::fs::read(out.path().join(&s.file)).unwrap();
        assert!(same, "{} differs from an uninterrupted build's", s.file);
    }
}

#[test]
fn files_that_are_not_videos_are_counted_and_named_in_the_summary() {
    let d = tempdir();
    let src = sample_videos().join("videos/archery/testsrc2_h264.mp4");
    for class in ["cat", "dog"] {
        std::fs::create_dir_all(d.path().join(class)).unwrap();
        std::fs::copy(&src, d.path().join(class).join("a.mp4")).unwrap();
    }
    std::fs::create_dir_all(d.path().join("dog/thumbnails")).unwrap();
    let mut junk = vec!["cat/notes.txt".to_string(), "cover.jpg".into(), "dog/a.mp4.part".into()];
    junk.extend((0..9).map(|k| format!("dog/frame{k}.png")));
    for name in &junk {
        std::fs::write(d.path().join(name), b"not a video").unwrap();
    }
    let out = tempdir();
    let o = shard_build(d.path(), out.path(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let listed = format!(
        "13 files that are not videos skipped (in {}): cat/notes.txt, cover.jpg, dog/a.mp4.part, \
         dog/frame0.png, dog/frame1.png, dog/frame2.png, dog/frame3.png, dog/frame4.png, \
         dog/frame5.png, dog/frame6.png and 3 more\n",
        d.path().display()
    );
    assert!(stdout(&o).contains(&listed), "{listed:?} not in {}", text(&o));
    assert_eq!(ShardSet::open(out.path()).unwrap().len(), 2);
}

#[test]
fn ffmpeg_prints_nothing_its_lines_explain_a_failure_and_verbose_shows_them_by_file() {
    let d = tempdir();
    let class = d.path().join("in/archery");
    std::fs::create_dir_all(&class).unwrap();
    let corrupt = class.join("corrupt.mp4");
    std::fs::copy(sample_videos().join("broken/corrupt.mp4"), &corrupt).unwrap();
    std::fs::copy(sample_videos().join("videos/archery/testsrc2_h264.mp4"), class.join("good.mp4"))
        .unwrap();
    let (quiet_out, verbose_out) = (d.path().join("quiet"), d.path().join("verbose"));
    let quiet = shard_build(&d.path().join("in"), &quiet_out, &[]);
    assert_eq!(quiet.status.code(), Some(3), "{}", text(&quiet));
    assert!(!stderr(&quiet).contains("@ 0x"), "FFmpeg printed: {}", text(&quiet));
    // The failure quotes the h264 decoder's own complaint, without its address.
    let failures = read_failures(&quiet_out.join("failures.parquet")).unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    let error = &failures[0].error;
    assert!(error.contains("; FFmpeg said: [h264] "), "{error}");
    assert!(!error.contains("@ 0x"), "{error}");
    assert!(stdout(&quiet).contains(error.as_str()), "{error} not in {}", text(&quiet));

    let verbose = shard_build(&d.path().join("in"), &verbose_out, &["--verbose"]);
    assert_eq!(verbose.status.code(), Some(3), "{}", text(&verbose));
    let shown = format!("{}: [h264 @ 0x", corrupt.display());
    let err = stderr(&verbose);
    assert!(err.lines().any(|l| l.starts_with(&shown)), "no {shown:?} line in {err}");
    assert!(err.lines().all(|l| l.starts_with(&corrupt.display().to_string())), "{err}");
    // The flag changes what is printed, not what is stored.
    assert_eq!(read_failures(&verbose_out.join("failures.parquet")).unwrap(), failures);
    let (a, b) = (ShardSet::open(&quiet_out).unwrap(), ShardSet::open(&verbose_out).unwrap());
    assert_eq!(contents(&a), contents(&b));
    assert_eq!(contents(&a).len(), 1);
}
