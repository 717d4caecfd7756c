//! End to end: `cvrl-shard synth` makes real, deterministic H.264 files in the Kinetics
//! split layout, `cvrl-shard build` carries their factors into the index (read back in Rust
//! and pyarrow), and the decoded pictures show what the proxy dataset promises: the object
//! moves, and a video's ends differ more than neighbouring frames.

use cvrl_e2e::{ffmpeg_raw, files, run, tempdir, text, venv_python};
use cvrl_formats::ShardSet;
use cvrl_tools::synth::{plan_dataset, SynthConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const SIDE: u32 = 64;
const CLASSES: usize = 10;

/// The tiny dataset every test makes: 10 classes x 2 videos (1 train, 1 val), 2 s at 64x64.
fn config(seed: u64) -> SynthConfig {
    SynthConfig {
        classes: CLASSES,
        videos_per_class: 2,
        val_per_class: 1,
        width: SIDE,
        height: SIDE,
        fps: 25,
        min_seconds: 2.0,
        max_seconds: 2.0,
        seed,
        ..SynthConfig::cpu()
    }
}

fn synth(out: &Path, seed: u64) {
    let c = config(seed);
    let o = run(
        "cvrl-shard",
        &[
            &"synth",
            &out,
            &"--classes",
            &c.classes.to_string(),
            &"--videos",
            &c.videos_per_class.to_string(),
            &"--val",
            &c.val_per_class.to_string(),
            &"--width",
            &SIDE.to_string(),
            &"--height",
            &SIDE.to_string(),
            &"--min-seconds",
            &"2",
            &"--max-seconds",
            &"2",
            &"--seed",
            &seed.to_string(),
            &"--quiet",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
}

fn mp4s(files: &BTreeMap<PathBuf, Vec<u8>>) -> Vec<&PathBuf> {
    files.keys().filter(|p| p.extension().is_some_and(|e| e == "mp4")).collect()
}

/// The decoded luma planes of a video, one `SIDE * SIDE` buffer per frame.
fn gray_frames(video: &Path) -> Vec<Vec<u8>> {
    let raw = ffmpeg_raw(video, "null", "gray");
    let n = (SIDE * SIDE) as usize;
    assert_eq!(raw.len() % n, 0, "{}", video.display());
    raw.chunks_exact(n).map(<[u8]>::to_vec).collect()
}

/// Each decoded frame as 8x8 blocks of mean R, G, B.
fn layouts(video: &Path) -> Vec<Vec<f64>> {
    let raw = ffmpeg_raw(video, "null", "rgb24");
    let (side, block) = (SIDE as usize, SIDE as usize / 8);
    raw.chunks_exact(side * side * 3)
        .map(|f| {
            let mut out = vec![0.0; 8 * 8 * 3];
            for (i, px) in f.chunks_exact(3).enumerate() {
                let (x, y) = (i % side / block, i / side / block);
                for c in 0..3 {
                    out[(y * 8 + x) * 3 + c] += f64::from(px[c]) / (block * block) as f64;
                }
            }
            out
        })
        .collect()
}

fn mean_of(v: &[Vec<f64>]) -> Vec<f64> {
    (0..v[0].len()).map(|i| v.iter().map(|x| x[i]).sum::<f64>() / v.len() as f64).collect()
}

fn mean_abs(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    let sum: u64 = a.iter().zip(b).map(|(&x, &y)| u64::from(x.abs_diff(y))).sum();
    sum as f64 / a.len() as f64
}

#[test]
fn a_seed_gives_byte_identical_videos_and_another_seed_other_pictures() {
    let (a, b, c) = (tempdir(), tempdir(), tempdir());
    synth(a.path(), 7);
    synth(b.path(), 7);
    synth(c.path(), 8);
    let (fa, fb, fc) = (files(a.path()), files(b.path()), files(c.path()));
    assert_eq!(mp4s(&fa).len(), 20);
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (path, bytes) in &fa {
        assert!(&fb[path] == bytes, "{} differs between two runs with seed 7", path.display());
    }
    // Same names with another seed, but other pictures in every video.
    assert_eq!(mp4s(&fa), mp4s(&fc));
    for path in mp4s(&fa) {
        let (x, y) = (gray_frames(&a.path().join(path)), gray_frames(&c.path().join(path)));
        let d = mean_abs_diff(&x[0], &y[0]);
        assert!(d > 5.0, "{}: first frames of seeds 7 and 8 differ by only {d:.2}", path.display());
    }
    // A bad value is refused by name before anything is touched, even with --force.
    let o = run("cvrl-shard", &[&"synth", &a.path(), &"--presence", &"0", &"--force"]);
    assert!(!o.status.success() && text(&o).contains("--presence 0"), "{}", text(&o));
    assert!(files(a.path()) == fa, "a refused --presence changed the earlier dataset");
}

#[test]
fn synth_writes_h264_in_the_split_layout_and_build_stores_the_factors() {
    let data = tempdir();
    synth(data.path(), 0);
    let all = files(data.path());
    let specs = cvrl_tools::synth::classes(CLASSES).unwrap();
    for split in ["train", "val"] {
        for class in &specs {
            let n = mp4s(&all).iter().filter(|p| p.starts_with(format!("{split}/{class}"))).count();
            assert_eq!(n, 1, "{split}/{class}");
        }
    }
    let video = data.path().join(format!("val/{}/{}_001.mp4", specs[3], specs[3]));
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries"])
        .args(["stream=codec_name,pix_fmt,width,height,r_frame_rate,nb_read_frames", "-of"])
        .args(["default=noprint_wrappers=1"])
        .arg(&video)
        .output()
        .unwrap();
    assert!(probe.status.success(), "{}", text(&probe));
    let probe = String::from_utf8_lossy(&probe.stdout);
    for want in [
        "codec_name=h264",
        "pix_fmt=yuv420p",
        "width=64",
        "height=64",
        "r_frame_rate=25/1",
        "nb_read_frames=50",
    ] {
        assert!(probe.lines().any(|l| l == want), "{}: no {want} in\n{probe}", video.display());
    }
    // factors.csv is written for the whole tree and for each split folder.
    let csv = String::from_utf8_lossy(&all[Path::new("factors.csv")]).into_owned();
    assert_eq!(csv.lines().next(), Some("path,object,motion,colour"));
    assert_eq!(csv.lines().count(), 21);
    let expected: BTreeMap<String, (String, String, String)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let id = f[0].trim_end_matches(".mp4").to_string();
            (id, (f[1].to_string(), f[2].to_string(), f[3].to_string()))
        })
        .collect();

    // The whole tree (split folders, root factors.csv) and one split (its own factors.csv).
    for (input, prefix) in [(data.path().to_path_buf(), ""), (data.path().join("train"), "train/")]
    {
        let shards = tempdir();
        let o = run(
            "cvrl-shard",
            &[&"build", &input, &shards.path(), &"--short-side", &"0", &"--quiet"],
        );
        assert!(o.status.success(), "{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("object, motion, colour"));
        let set = ShardSet::open(shards.path()).unwrap();
        assert_eq!(set.len(), if prefix.is_empty() { 20 } else { 10 });
        for v in set.videos() {
            let (object, motion, colour) = &expected[&format!("{prefix}{}", v.video_id)];
            let f = &v.factors;
            assert_eq!(
                (&f["object"], &f["motion"], &f["colour"]),
                (object, motion, colour),
                "{}",
                v.video_id
            );
            assert_eq!(v.label.as_deref(), Some(format!("{object}_{motion}").as_str()));
        }
        let script = r#"
import sys, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1] + "/index.parquet")
for r in t.select(["video_id", "factor_object", "factor_motion", "factor_colour"]).to_pylist():
    print(r["video_id"], r["factor_object"], r["factor_motion"], r["factor_colour"])
"#;
        let py =
            Command::new(venv_python()).arg("-c").arg(script).arg(shards.path()).output().unwrap();
        assert!(py.status.success(), "{}", text(&py));
        let lines: Vec<String> =
            String::from_utf8_lossy(&py.stdout).lines().map(str::to_string).collect();
        assert_eq!(lines.len(), set.len());
        for line in lines {
            let f: Vec<&str> = line.split(' ').collect();
            let (o, m, c) = &expected[&format!("{prefix}{}", f[0])];
            assert_eq!(f[1..], [o.as_str(), m.as_str(), c.as_str()], "pyarrow row {line}");
        }
    }

    // --factors names the file; one whose paths belong to another folder is refused.
    let shards = tempdir();
    let val = data.path().join("val");
    let wrong = data.path().join("factors.csv");
    let o = run("cvrl-shard", &[&"build", &val, &shards.path(), &"--factors", &wrong, &"--quiet"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("none of its 20 rows names a video"), "{}", text(&o));
}

#[test]
fn decoded_videos_drift_over_time_and_their_object_moves() {
    let data = tempdir();
    synth(data.path(), 3);
    let cfg = config(3);
    let plans = plan_dataset(&cfg).unwrap();
    assert_eq!(plans.len(), 20);
    let n = (SIDE * SIDE) as usize;
    for v in &plans {
        let frames = gray_frames(&data.path().join(&v.rel_path));
        assert_eq!(frames.len(), v.plan.frames as usize, "{}", v.rel_path);
        let last = frames.len() - 1;

        // Drift: the first and last second differ far more than neighbouring frames do.
        // Compared as colour layouts (8x8 block means of RGB), so what counts is content:
        // the sub-pixel pan of a fine texture changes every pixel but no block mean.
        let colour = layouts(&data.path().join(&v.rel_path));
        let second = cfg.fps as usize;
        let (first, end) = (mean_of(&colour[..second]), mean_of(&colour[colour.len() - second..]));
        let far = mean_abs(&first, &end);
        let near =
            (0..last).map(|k| mean_abs(&colour[k], &colour[k + 1])).sum::<f64>() / last as f64;
        assert!(
            far > 5.0 * near && far > 5.0,
            "{}: first vs last second {far:.2}, neighbouring frames {near:.2}",
            v.rel_path
        );

        // Motion: where the object is, frames 0.2 s apart differ much more than elsewhere
        // (the panning background changes a little everywhere). Best of a few pairs, since
        // an oscillation can bring the object back to where it was.
        let mut best = (0.0f64, 0.0f64);
        for k in [0u32, 10, 20, 30] {
            let (a, b) = (&frames[k as usize], &frames[k as usize + 5]);
            let r = v.plan.object_box(k);
            let mut inside = (0.0f64, 0usize);
            let mut outside = (0.0f64, 0usize);
            for i in 0..n {
                let (x, y) = ((i as u32) % SIDE, (i as u32) / SIDE);
                let d = f64::from(a[i].abs_diff(b[i]));
                let acc = if (r.x0..r.x1).contains(&x) && (r.y0..r.y1).contains(&y) {
                    &mut inside
                } else {
                    &mut outside
                };
                acc.0 += d;
                acc.1 += 1;
            }
            let (i, o) = (inside.0 / inside.1.max(1) as f64, outside.0 / outside.1.max(1) as f64);
            if i > best.0 {
                best = (i, o);
            }
        }
        let (inside, outside) = best;
        assert!(
            inside > 10.0 && inside > 2.0 * outside,
            "{}: object region changes by {inside:.2} in 0.2 s, the rest by {outside:.2}",
            v.rel_path
        );
    }
}

/// Runs `cvrl-shard synth` on a tiny easy-preset dataset (4 classes x 1 train video of 1 s)
/// with `extra` flags, returning its output.
fn synth_with(out: &Path, extra: &[&str]) -> std::process::Output {
    let flags = ["--preset", "easy", "--classes", "4", "--videos", "1", "--val", "0"];
    let flags = [&flags[..], &["--min-seconds", "1", "--max-seconds", "1", "--seed", "2"]];
    let flags = [&flags.concat()[..], extra, &["--quiet"]].concat();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"synth", &out];
    args.extend(flags.iter().map(|f| f as &dyn AsRef<std::ffi::OsStr>));
    run("cvrl-shard", &args)
}

/// The share of a video's first frame within 10 levels of `rgb` in every channel, as the
/// ffmpeg CLI decodes it.
fn share_near(video: &Path, rgb: [u8; 3]) -> f64 {
    let raw = ffmpeg_raw(video, "select=eq(n\\,0)", "rgb24");
    let near = raw.chunks_exact(3).filter(|p| (0..3).all(|c| p[c].abs_diff(rgb[c]) <= 10));
    near.count() as f64 / (raw.len() / 3) as f64
}

#[test]
fn textures_put_the_photographs_pixels_behind_the_object_deterministically() {
    let dir = tempdir();
    // One flat photograph, made by the ffmpeg CLI: every background pixel must take its
    // colour (the object covers at most a quarter of the frame).
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    let colour = [200u8, 60, 90];
    let png = photos.join("flat.png");
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", "color=c=0xC83C5A:s=96x80", "-frames:v", "1"])
        .arg(&png)
        .status()
        .expect("run ffmpeg");
    assert!(made.success());
    let tex = photos.to_str().unwrap();
    let (a, b, plain) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("plain"));
    for (out, extra) in [(&a, &["--textures", tex][..]), (&b, &["--textures", tex]), (&plain, &[])]
    {
        let o = synth_with(out, extra);
        assert!(o.status.success(), "{}", text(&o));
    }
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(fa, fb, "the same seed and photographs must give the same bytes");
    let videos = mp4s(&fa);
    assert_eq!(videos.len(), 4);
    for v in videos {
        let photo = share_near(&a.join(v), colour);
        let procedural = share_near(&plain.join(v), colour);
        assert!(
            photo > 0.7,
            "{}: {photo:.2} of the frame has the photograph's colour",
            v.display()
        );
        assert!(
            procedural < 0.05,
            "{}: procedural background near it: {procedural:.2}",
            v.display()
        );
    }
    let params = String::from_utf8(fa[Path::new("synth.json")].clone()).unwrap();
    assert!(params.contains("\"flat.png\""), "{params}");

    // A file that is not a PNG is named, and nothing is written.
    std::fs::write(photos.join("broken.png"), b"GIF89a").unwrap();
    let out = dir.path().join("refused");
    let o = synth_with(&out, &["--textures", tex]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("broken.png") && text(&o).contains("not a readable PNG"),
        "{}",
        text(&o)
    );
    assert!(!out.exists());
}
