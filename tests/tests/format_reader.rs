//! FORMAT.md is complete: `tests/python/format_reader.py`, a reader written from the
//! specification text alone (Python, numpy, zstandard, pyarrow), returns exactly the frames
//! that `cvrl-formats` returns, which match the ffmpeg CLI's decode, and rejects a damaged
//! chunk by its checksum.

use cvrl_e2e::{ffmpeg_raw, psnr, root, run, sample_videos, tempdir, text, venv_python};
use cvrl_formats::ShardSet;
use std::path::Path;
use std::process::{Command, Output};

const SIDE: &str = "48";

fn build(out: &Path) {
    let o = run(
        "cvrl-shard",
        &[&"build", &sample_videos().join("videos"), &out, &"--short-side", &SIDE, &"--quiet"],
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
