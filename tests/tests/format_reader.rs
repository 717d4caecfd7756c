//! FORMAT.md is complete: `tests/python/format_reader.py`, a reader written from the
//! specification text alone (Python, numpy, zstandard, pyarrow), returns exactly the frames
//! that `cvrl-formats` returns, which match the ffmpeg CLI's decode, and rejects a damaged
//! chunk by its checksum; an index that pyarrow writes from the spec's column table, with
//! pyarrow's defaults, is one cvrl reads; and `tests/python/resample_rule.py`, the frame
//! rate rule of FORMAT.md §6.2-6.3 written from the text, picks the frames cvrl stores.

use cvrl_e2e::{ffmpeg_raw, psnr, root, run, sample_videos, tempdir, text, venv_python};
use cvrl_formats::ShardSet;
use std::path::Path;
use std::process::{Command, Output};

const SIDE: &str = "48";

fn build(out: &Path) {
    build_with(out, "adaptive");
}

fn build_with(out: &Path, predictor: &str) {
    let videos = sample_videos().join("videos");
    let o = run(
        "cvrl-shard",
        &[&"build", &videos, &out, &"--short-side", &SIDE, &"--predictor", &predictor, &"--quiet"],
    );
    assert!(o.status.success(), "{}", text(&o));
}

/// Runs the Python reader; returns its output and the bytes it wrote.
fn python_read(set: &Path, id: &str, start: u32, count: u32) -> (Output, Vec<u8>) {
    let dir = tempdir();
    let file = dir.path().join("frames.raw");
    let o = Command::new(venv_python())
        .arg(root().join("tests/python/format_reader.py"))
        .arg(set)
        .arg(id)
        .arg(start.to_string())
        .arg(count.to_string())
        .arg(&file)
        .output()
        .expect("run tests/python/format_reader.py");
    let bytes = std::fs::read(&file).unwrap_or_default();
    (o, bytes)
}

#[test]
fn the_python_reader_written_from_the_spec_returns_the_frames_of_the_rust_reader_and_of_ffmpeg() {
    let out = tempdir();
    build(out.path());
    let set = ShardSet::open(out.path()).unwrap();
    let mut reader = set.reader().unwrap();
    for (id, file) in [
        ("archery/testsrc2_h264", "archery/testsrc2_h264.mp4"),
        ("bowling/smptebars_mpeg4", "bowling/smptebars_mpeg4.avi"),
        ("juggling/long_640x360", "juggling/long_640x360.mp4"),
    ] {
        let i = set.find(id).unwrap();
        let v = set.videos()[i].clone();
        assert!(
            v.num_frames >= 40 && v.chunks.len() >= 3,
            "{id}: {} frames in {} chunks",
            v.num_frames,
            v.chunks.len()
        );
        assert!(
            v.chunks.last().unwrap().num_frames < v.chunks[0].num_frames,
            "{id}: the last chunk should be partial"
        );

        let (o, got) = python_read(out.path(), id, 0, v.num_frames);
        assert!(o.status.success(), "{id}: {}", text(&o));
        let mut rust = Vec::new();
        reader.read_frames(i, 0, v.num_frames, 1, &mut rust).unwrap();
        assert_eq!(
            got.len(),
            rust.len(),
            "{id}: the Python reader returned a different number of bytes"
        );
        assert!(got == rust, "{id}: the Python reader's frames differ from the Rust reader's (first differing byte {:?})", got.iter().zip(&rust).position(|(a, b)| a != b));

        let expected = ffmpeg_raw(
            &sample_videos().join("videos").join(file),
            &format!("scale={}:{}", v.width, v.height),
            "yuv420p",
        );
        assert_eq!(got.len(), expected.len(), "{id}: frame count differs from ffmpeg");
        let db = psnr(&got, &expected);
        assert!(db > 50.0, "{id}: PSNR {db:.1} dB against ffmpeg");
    }

    // A window that starts and ends inside chunks.
    let id = "juggling/long_640x360";
    let i = set.find(id).unwrap();
    let (o, got) = python_read(out.path(), id, 13, 21);
    assert!(o.status.success(), "{id}: {}", text(&o));
    let mut rust = Vec::new();
    reader.read_frames(i, 13, 21, 1, &mut rust).unwrap();
    assert!(got == rust, "{id}: frames 13..34 differ");
}

#[test]
fn the_python_reader_reads_plain_and_interleaved_chunks_as_the_rust_reader_does() {
    let adaptive = tempdir();
    build(adaptive.path());
    let a = ShardSet::open(adaptive.path()).unwrap();
    let mut ra = a.reader().unwrap();
    for predictor in ["plain", "interleaved"] {
        let other = tempdir();
        build_with(other.path(), predictor);
        let p = ShardSet::open(other.path()).unwrap();
        assert_eq!(p.manifest().params.predictor.to_string(), predictor);
        let mut rp = p.reader().unwrap();
        for id in ["archery/testsrc2_h264", "juggling/long_640x360"] {
            let (ia, ip) = (a.find(id).unwrap(), p.find(id).unwrap());
            let n = p.videos()[ip].num_frames;
            let (mut fa, mut fp) = (Vec::new(), Vec::new());
            ra.read_frames(ia, 0, n, 1, &mut fa).unwrap();
            rp.read_frames(ip, 0, n, 1, &mut fp).unwrap();
            assert!(fa == fp, "{id}: {predictor} and adaptive shards hold different frames");
            // Stride 2 from an odd frame: the interleaved codec decodes only the odd chain.
            let (mut odd_a, mut odd_p) = (Vec::new(), Vec::new());
            ra.read_frames(ia, 3, 12, 2, &mut odd_a).unwrap();
            rp.read_frames(ip, 3, 12, 2, &mut odd_p).unwrap();
            assert!(odd_a == odd_p, "{id}: {predictor}: stride-2 frames differ");
            // A window that starts and ends inside chunks, through the spec's reader.
            let (o, got) = python_read(other.path(), id, 5, 19);
            assert!(o.status.success(), "{id}: {}", text(&o));
            let fb = fp.len() / n as usize;
            assert!(
                got == fp[5 * fb..24 * fb],
                "{id}: the Python reader's {predictor} frames differ"
            );
        }
    }
}

#[test]
fn the_python_reader_rejects_a_chunk_with_a_flipped_byte_by_its_checksum() {
    let out = tempdir();
    build(out.path());
    let set = ShardSet::open(out.path()).unwrap();
    let id = "bowling/smptebars_mpeg4";
    let v = set.videos()[set.find(id).unwrap()].clone();
    drop(set);
    let shard = out.path().join(&v.shard);
    let mut bytes = std::fs::read(&shard).unwrap();
    let at = (v.offset + v.chunks[1].offset) as usize + 5;
    bytes[at] ^= 0x40;
    std::fs::write(&shard, bytes).unwrap();

    let (o, got) = python_read(out.path(), id, 0, v.chunks[0].num_frames);
    assert!(o.status.success(), "chunk 0 is intact: {}", text(&o));
    assert!(!got.is_empty());

    let (o, _) = python_read(out.path(), id, v.chunks[1].first_frame, 4);
    assert!(!o.status.success(), "a damaged chunk must be rejected: {}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("checksum") && stderr.contains("chunk 1") && stderr.contains(id),
        "{}",
        text(&o)
    );
}

/// Rewrites `SET/index.parquet` as a Python user would from FORMAT.md §4's table: the types
/// declared, everything else pyarrow's defaults (SNAPPY, nullable fields, list items named
/// `element`), or with `compression=` given as the second argument.
const PYARROW_INDEX: &str = r#"
import sys, pyarrow as pa, pyarrow.parquet as pq
path = sys.argv[1] + "/index.parquet"
rows = pq.read_table(path).to_pylist()
s, i32, u32, u64, f64 = pa.string(), pa.int32(), pa.uint32(), pa.uint64(), pa.float64()
chunk = pa.struct([("offset", u64), ("length", u32), ("first_frame", u32),
                   ("num_frames", u32), ("crc32c", u32)])
schema = pa.schema([
    ("video_id", s), ("source_path", s), ("label", s), ("label_index", i32), ("split", s),
    ("shard", s), ("offset", u64), ("length", u64), ("num_frames", u32), ("width", u32),
    ("height", u32), ("fps_num", u32), ("fps_den", u32), ("fps", f64), ("duration_s", f64),
    ("pixel_format", s), ("source_bytes", u64), ("source_codec", s), ("time_start_s", f64),
    ("time_end_s", f64), ("chunks", pa.list_(chunk)), ("checksum", u32)])
table = pa.Table.from_pylist(rows, schema=schema)
if len(sys.argv) > 2:
    pq.write_table(table, path, compression=sys.argv[2])
else:
    pq.write_table(table, path)
f = pq.ParquetFile(path)
print(f.metadata.row_group(0).column(0).compression, "element" in str(f.schema))
"#;

fn pyarrow_rewrite(set: &Path, compression: Option<&str>) -> String {
    let o = Command::new(venv_python())
        .arg("-c")
        .arg(PYARROW_INDEX)
        .arg(set)
        .args(compression)
        .output()
        .expect("run python");
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn an_index_written_by_pyarrow_with_its_defaults_opens_and_reads_the_same_frames() {
    let out = tempdir();
    build(out.path());
    let before = ShardSet::open(out.path()).unwrap();
    let mut reader = before.reader().unwrap();
    let frames = |set: &ShardSet, reader: &mut cvrl_formats::FrameReader<'_>| {
        let mut all = Vec::new();
        for (i, v) in set.videos().iter().enumerate() {
            reader.read_frames(i, 0, v.num_frames, 1, &mut all).unwrap();
        }
        all
    };
    let expected = frames(&before, &mut reader);

    assert_eq!(pyarrow_rewrite(out.path(), None), "SNAPPY True");
    let after = ShardSet::open(out.path()).expect("cvrl reads pyarrow's default index");
    assert_eq!(after.videos(), before.videos());
    assert!(frames(&after, &mut after.reader().unwrap()) == expected);
    for codec in ["gzip", "zstd", "none"] {
        pyarrow_rewrite(out.path(), Some(codec));
        let set = ShardSet::open(out.path()).unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_eq!(set.videos(), before.videos(), "{codec}");
    }
    // A codec FORMAT.md does not list is refused, naming the file.
    pyarrow_rewrite(out.path(), Some("brotli"));
    let err = ShardSet::open(out.path()).err().expect("brotli is not a codec cvrl reads");
    assert!(err.to_string().contains("index.parquet"), "{err}");
}

/// Runs `tests/python/resample_rule.py` on video `id` of `set`, made from `source`, with
/// the frames the Rust reader returns.
fn resample_rule(set: &Path, id: &str, source: &Path) -> Output {
    let shards = ShardSet::open(set).unwrap();
    let i = shards.find(id).unwrap();
    let mut frames = Vec::new();
    let n = shards.videos()[i].num_frames;
    shards.reader().unwrap().read_frames(i, 0, n, 1, &mut frames).unwrap();
    let dir = tempdir();
    let stored = dir.path().join("stored.raw");
    std::fs::write(&stored, frames).unwrap();
    Command::new(venv_python())
        .arg(root().join("tests/python/resample_rule.py"))
        .arg(set)
        .arg(id)
        .arg(source)
        .arg(&stored)
        .output()
        .expect("run tests/python/resample_rule.py")
}

#[test]
fn the_resampling_rule_of_the_spec_picks_the_frames_cvrl_stores() {
    let d = tempdir();
    let videos = sample_videos().join("videos");
    // A variable-rate mp4, a webm (millisecond timestamps) and a constant-rate mp4, at their
    // own size so that a stored frame is a decoded frame byte for byte.
    let input = d.path().join("in");
    let sources = [
        ("a/vfr", "juggling/vfr_15_30.mp4"),
        ("a/webm", "archery/mandelbrot_vp9.webm"),
        ("b/cfr", "archery/testsrc2_h264.mp4"),
    ];
    for (id, file) in sources {
        let ext = Path::new(file).extension().unwrap().to_str().unwrap();
        std::fs::create_dir_all(input.join(&id[..1])).unwrap();
        std::fs::copy(videos.join(file), input.join(format!("{id}.{ext}"))).unwrap();
    }
    for fps in [None, Some("24"), Some("29.97"), Some("10")] {
        let out = d.path().join(format!("out-{}", fps.unwrap_or("own")));
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&"build", &input, &out, &"--short-side", &"0", &"--quiet"];
        if let Some(f) = &fps {
            args.extend([&"--fps" as &dyn AsRef<std::ffi::OsStr>, f]);
        }
        let o = run("cvrl-shard", &args);
        assert!(o.status.success(), "{}", text(&o));
        for (id, file) in sources {
            let o = resample_rule(&out, id, &videos.join(file));
            assert!(o.status.success(), "fps {fps:?}: {}", text(&o));
        }
    }

    // CSV windows on untrimmed downloads (§6.3), starting and ending between frames.
    let dl = d.path().join("downloads");
    std::fs::create_dir_all(&dl).unwrap();
    std::fs::copy(videos.join("juggling/vfr_15_30.mp4"), dl.join("vfrvfrvfr01.mp4")).unwrap();
    std::fs::copy(videos.join("archery/mandelbrot_vp9.webm"), dl.join("webmwebm001.webm")).unwrap();
    let csv = d.path().join("k.csv");
    std::fs::write(
        &csv,
        "label,youtube_id,time_start,time_end,split\nx,vfrvfrvfr01,0.3,1.7,train\ny,webmwebm001,0.52,1.0,train\n",
    )
    .unwrap();
    let out = d.path().join("out-csv");
    let o = run(
        "cvrl-shard",
        &[&"build", &csv, &out, &"--video-root", &dl, &"--short-side", &"0", &"--fps", &"24"],
    );
    assert!(o.status.success(), "{}", text(&o));
    for (id, file) in [
        ("x/vfrvfrvfr01_000000_000001", "vfrvfrvfr01.mp4"),
        ("y/webmwebm001_000000_000001", "webmwebm001.webm"),
    ] {
        let o = resample_rule(&out, id, &dl.join(file));
        assert!(o.status.success(), "{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("differing frames []"), "{}", text(&o));
    }
}
