//! The `cvrl` Python package (formats/python), as installed into the venv by
//! `scripts/python-package.sh` (which scripts/setup.sh, and so `just test`, runs): its
//! frames are the Rust reader's byte for byte for every predictor and both pixel formats,
//! `load_encoder` gives `cvrl-eval`'s pooled features, `CvrlPairs` in a DataLoader with
//! worker processes repeats itself for a seed and draws the Rust sampler's pairs, and a
//! damaged chunk raises a Python exception naming the video. The scripts in tests/python
//! do the Python side; each checks what it can alone and writes what the Rust side compares.

use cvrl_e2e::{root, run_ok, sample_videos, tempdir, text, venv_python, TINY_RUN};
use cvrl_formats::pixel::yuv420p_to_rgb24;
use cvrl_formats::sampler::{sample_pair, sample_rng, ClipSpec, IntervalDistribution};
use cvrl_formats::{FrameLayout, PixelFormat, ShardSet};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Runs `tests/python/SCRIPT` with the venv's python, once the package is known to import.
fn python(script: &str, args: &[&dyn AsRef<OsStr>]) -> Output {
    python_file(&Path::new("tests/python").join(script), args)
}

/// Runs the script at `path` (from the repository root) with the venv's python, once the
/// package is known to import.
fn python_file(path: &Path, args: &[&dyn AsRef<OsStr>]) -> Output {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let o = Command::new(venv_python()).args(["-c", "import cvrl.torch"]).output();
        let o = o.expect("run the venv's python");
        assert!(
            o.status.success(),
            "the cvrl Python package is not installed in .venv: run `bash \
             scripts/python-package.sh` (`just test` does): {}",
            text(&o)
        );
    });
    let mut cmd = Command::new(venv_python());
    cmd.arg(root().join(path));
    for a in args {
        cmd.arg(a);
    }
    cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()))
}

/// Shards the sample videos at a short side of 48 pixels with `flags`.
fn build(out: &Path, flags: &[&str]) {
    let videos = sample_videos().join("videos");
    let mut args: Vec<&dyn AsRef<OsStr>> =
        vec![&"build", &videos, &out, &"--short-side", &"48", &"--quiet"];
    args.extend(flags.iter().map(|f| f as &dyn AsRef<OsStr>));
    run_ok("cvrl-shard", &args);
}

/// The stored frames `indices` of `video` as RGB, converted as every cvrl RGB reader does.
fn rust_rgb(set: &ShardSet, video: usize, indices: &[u32]) -> (Vec<u8>, Vec<u8>) {
    let mut stored = Vec::new();
    set.reader().unwrap().read_indices(video, indices, &mut stored).unwrap();
    let layout: FrameLayout = set.layout(video);
    let rgb = match layout.format() {
        PixelFormat::Rgb24 => stored.clone(),
        PixelFormat::Yuv420p => {
            let rgb_frame = 3 * layout.width() as usize * layout.height() as usize;
            let mut rgb = vec![0; indices.len() * rgb_frame];
            for (src, dst) in
                stored.chunks_exact(layout.frame_bytes()).zip(rgb.chunks_exact_mut(rgb_frame))
            {
                yuv420p_to_rgb24(&layout, src, dst);
            }
            rgb
        }
    };
    (stored, rgb)
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

#[test]
fn python_read_frames_equals_the_rust_reader_for_every_predictor_and_pixel_format() {
    let dir = tempdir();
    for format in ["yuv420p", "rgb24"] {
        for predictor in ["raw", "temporal", "med", "adaptive", "plain", "interleaved"] {
            let name = format!("{format}-{predictor}");
            let set_dir = dir.path().join(&name);
            build(&set_dir, &["--pixel-format", format, "--predictor", predictor]);
            let set = ShardSet::open(&set_dir).unwrap();
            // Every frame backwards, then a strided run across chunks, then a repeat: orders
            // a reader must not assume away.
            let requests: BTreeMap<String, Vec<u32>> = set
                .videos()
                .iter()
                .map(|v| {
                    let mut idx: Vec<u32> = (0..v.num_frames).rev().collect();
                    idx.extend((1..v.num_frames).step_by(3));
                    idx.extend([0, 0]);
                    (v.video_id.clone(), idx)
                })
                .collect();
            let request_file = dir.path().join(format!("{name}.json"));
            std::fs::write(&request_file, serde_json::to_string(&requests).unwrap()).unwrap();
            let out = dir.path().join(format!("{name}-py"));
            std::fs::create_dir(&out).unwrap();

            let o = python("pkg_frames.py", &[&set_dir, &request_file, &out]);
            assert!(o.status.success(), "{name}: {}", text(&o));
            for (i, v) in set.videos().iter().enumerate() {
                let (stored, rgb) = rust_rgb(&set, i, &requests[&v.video_id]);
                let got = std::fs::read(out.join(format!("{i}.rgb"))).unwrap();
                assert_eq!(got.len(), rgb.len(), "{name} {}: RGB length", v.video_id);
                assert!(
                    got == rgb,
                    "{name} {}: RGB frames differ from the Rust reader's at byte {:?}",
                    v.video_id,
                    first_difference(&got, &rgb)
                );
                if format == "yuv420p" {
                    let got = std::fs::read(out.join(format!("{i}.yuv"))).unwrap();
                    assert!(
                        got == stored,
                        "{name} {}: yuv420p planes differ from the stored frames at byte {:?}",
                        v.video_id,
                        first_difference(&got, &stored)
                    );
                }
            }
        }
    }
}

#[test]
fn load_encoder_gives_the_pooled_features_of_cvrl_eval_on_the_same_clips() {
    let dir = tempdir();
    let train_set = dir.path().join("yuv");
    build(&train_set, &[]);
    // Test views of an rgb24 set at its short side are stored pixels on both sides.
    let rgb_set = dir.path().join("rgb");
    build(&rgb_set, &["--pixel-format", "rgb24"]);
    let models: [(&str, &[&str]); 2] = [
        ("r3d18-small-stem", &["--model", "r3d18", "--stem", "small", "--base-width", "8"]),
        ("r3d50-x2", &["--model", "r3d50", "--base-width", "8", "--width-multiplier", "2"]),
    ];
    for (name, model) in models {
        let run_dir = dir.path().join(name);
        let mut args: Vec<&dyn AsRef<OsStr>> = vec![&"--shards", &train_set, &"--out", &run_dir];
        let flags = ["--steps", "2", "--frames", "8", "--crop", "32"];
        args.extend(flags.iter().chain(TINY_RUN).chain(model).map(|f| f as &dyn AsRef<OsStr>));
        run_ok("cvrl-train", &args);

        let eval = dir.path().join(format!("{name}-eval"));
        let args: [&dyn AsRef<OsStr>; 21] = [
            &"knn",
            &"--run",
            &run_dir,
            &"--train",
            &rgb_set,
            &"--val",
            &rgb_set,
            &"--out",
            &eval,
            &"--device",
            &"cpu",
            &"--k",
            &"3",
            &"--size",
            &"48",
            &"--train-clips",
            &"1",
            &"--temporal-views",
            &"2",
            // Four crops along long sides of 64, 80 and 86 pixels put some at fractional
            // positions, which both sides must round alike.
            &"--spatial-crops",
            &"4",
        ];
        run_ok("cvrl-eval", &args);
        let cache = eval.join("cache");
        let o = python("pkg_encoder.py", &[&run_dir, &cache, &rgb_set, &"8", &"2", &"4"]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        eprintln!("{name}: {}", String::from_utf8_lossy(&o.stdout).trim());
    }
}

#[test]
fn a_dataloader_with_two_worker_processes_repeats_its_pairs_and_draws_the_rust_samplers() {
    let dir = tempdir();
    let set_dir = dir.path().join("shards");
    build(&set_dir, &[]);
    let out = dir.path().join("py");
    std::fs::create_dir(&out).unwrap();
    let o = python("pkg_pairs.py", &[&set_dir, &out]);
    assert!(o.status.success(), "{}", text(&o));

    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("pairs.json")).unwrap()).unwrap();
    let field = |k: &str| info[k].as_u64().unwrap_or_else(|| panic!("pairs.json: no {k}"));
    let clip =
        ClipSpec { frames: field("frames") as u32, stride: field("stride") as u32, base_fps: 25.0 };
    let set = ShardSet::open(&set_dir).unwrap();
    let mut indices = Vec::new();
    for (i, v) in set.videos().iter().enumerate() {
        // The draw of cvrl's loader for (seed, epoch 0, position i).
        let mut rng = sample_rng(field("seed"), 0, i as u64);
        let starts =
            sample_pair(&mut rng, IntervalDistribution::Decreasing, &clip, v.num_frames, v.fps());
        let mut expected = Vec::new();
        for start in [starts.first, starts.second] {
            clip.indices(start, v.num_frames, v.fps(), &mut indices);
            expected.extend(rust_rgb(&set, i, &indices).1);
        }
        let got = std::fs::read(out.join(format!("{i}.pair"))).unwrap();
        assert!(
            got == expected,
            "{}: CvrlPairs' clips are not the Rust sampler's (lengths {} and {}, first \
             difference {:?})",
            v.video_id,
            got.len(),
            expected.len(),
            first_difference(&got, &expected)
        );
    }
}

#[test]
fn a_damaged_chunk_raises_a_python_exception_naming_the_video() {
    let dir = tempdir();
    let set_dir = dir.path().join("shards");
    build(&set_dir, &[]);
    let set = ShardSet::open(&set_dir).unwrap();
    let id = "bowling/smptebars_mpeg4";
    let v = set.videos()[set.find(id).unwrap()].clone();
    drop(set);
    assert!(v.chunks.len() >= 3, "{id}: {} chunks", v.chunks.len());
    let shard = set_dir.join(&v.shard);
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[(v.offset + v.chunks[1].offset) as usize + 5] ^= 0x40;
    std::fs::write(&shard, bytes).unwrap();

    let bad = v.chunks[1].first_frame.to_string();
    let o = python("pkg_damaged.py", &[&set_dir, &id, &"0", &bad]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("chunk 1"), "the message should name the chunk: {stdout}");
}

/// The package's own transform tests (`formats/python/tests/test_transforms.py`):
/// `resize_clip` within one grey level of TF's resize, written there in numpy.
#[test]
fn the_clip_transforms_match_tf_resize_within_one_level() {
    let o = python_file(Path::new("formats/python/tests/test_transforms.py"), &[]);
    assert!(o.status.success(), "test_transforms.py failed: {}", text(&o));
}
