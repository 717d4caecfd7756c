//! Writing a shard set with the library and reading it back: frames equal, any damage gives
//! an error or the original frames (never a panic, never other frames), and the reader
//! validates the index at open.

use cvrl_formats::codec::{ChunkDecoder, ChunkEncoder, PredictorMode};
use cvrl_formats::manifest::ShardInfo;
use cvrl_formats::shard::{self, parse_record, records, RecordHeader};
use cvrl_formats::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::path::Path;

/// A moving gradient: every frame differs, neighbouring pixels correlate like real video.
fn frames(layout: &FrameLayout, n: u32, seed: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|t| {
            let mut f = Vec::with_capacity(layout.frame_bytes());
            for (p, plane) in layout.planes().iter().enumerate() {
                for y in 0..plane.height {
                    for x in 0..plane.width {
                        let v = (x as u32 * 3 + y as u32 * 2 + t * 5 + p as u32 * 40 + seed * 17)
                            ^ (x as u32 * y as u32 / 7);
                        f.push(v as u8);
                    }
                }
            }
            f
        })
        .collect()
}

struct Video {
    id: &'static str,
    layout: FrameLayout,
    frames: Vec<Vec<u8>>,
}

fn videos() -> Vec<Video> {
    let yuv = FrameLayout::new(40, 24, PixelFormat::Yuv420p).unwrap();
    let rgb = FrameLayout::new(13, 7, PixelFormat::Rgb24).unwrap();
    vec![
        Video { id: "a/one", layout: yuv, frames: frames(&yuv, 37, 1) },
        Video { id: "a/two", layout: yuv, frames: frames(&yuv, 1, 2) },
        Video { id: "b/three", layout: rgb, frames: frames(&rgb, 20, 3) },
    ]
}

/// Writes `videos` into a set at `dir` with chunks of 8 frames, two shards.
fn write_set(dir: &Path, videos: &[Video]) {
    write_set_with(dir, videos, PredictorMode::Adaptive);
}

/// [`write_set`] with the chunks coded by `predictor`.
fn write_set_with(dir: &Path, videos: &[Video], predictor: PredictorMode) {
    let split = videos.len().min(2);
    let mut enc = ChunkEncoder::new(3, predictor).unwrap();
    let mut rows = Vec::new();
    let mut shards = Vec::new();
    for (s, group) in
        [&videos[..split], &videos[split..]].iter().enumerate().filter(|(_, g)| !g.is_empty())
    {
        let name = format!("shard-{s:05}.cvrs");
        let mut w = ShardWriter::create(&dir.join(&name)).unwrap();
        for v in group.iter() {
            let spec =
                VideoSpec { video_id: v.id.into(), layout: v.layout, fps_num: 25, fps_den: 1 };
            let mut b = RecordBuilder::new(spec, 8, &mut enc).unwrap();
            for f in &v.frames {
                b.push_frame(f).unwrap();
            }
            let rec = b.finish().unwrap();
            let loc = w.append(&rec).unwrap();
            rows.push(VideoRow {
                label: Some(v.id[..1].into()),
                label_index: Some(i32::from(v.id.as_bytes()[0] - b'a')),
                source_bytes: 1,
                source_codec: "h264".into(),
                ..VideoRow::for_record(&rec, &name, loc, format!("{}.mp4", v.id))
            });
        }
        let bytes = w.finish().unwrap();
        shards.push(ShardInfo { file: name, bytes, videos: group.len() as u64 });
    }
    let params = BuildParams {
        short_side: None,
        fps: None,
        pixel_format: PixelFormat::Yuv420p,
        chunk_frames: 8,
        zstd_level: 3,
        predictor,
        shard_bytes: 1,
    };
    let classes = vec!["a".into(), "b".into()];
    let manifest = Manifest::new("test", params, classes, None, shards, &rows, &[]);
    cvrl_formats::write_set(dir, &manifest, &rows, &[]).unwrap();
}

#[test]
fn every_frame_reads_back_exactly_at_any_start_and_stride() {
    for predictor in [PredictorMode::Adaptive, PredictorMode::Plain, PredictorMode::Interleaved] {
        every_frame_reads_back(predictor);
    }
}

fn every_frame_reads_back(predictor: PredictorMode) {
    let dir = tempfile::tempdir().unwrap();
    let vs = videos();
    write_set_with(dir.path(), &vs, predictor);
    let set = ShardSet::open(dir.path()).unwrap();
    assert_eq!(set.len(), 3);
    let mut reader = set.reader().unwrap();
    for v in &vs {
        let i = set.find(v.id).unwrap();
        assert_eq!(set.layout(i), v.layout);
        let n = v.frames.len() as u32;
        for (start, count, stride) in
            [(0, n, 1), (n - 1, 1, 1), (3 % n, (n - 3 % n).div_ceil(2), 2), (0, n.div_ceil(5), 5)]
        {
            let mut out = Vec::new();
            reader.read_frames(i, start, count, stride, &mut out).unwrap();
            let expected: Vec<u8> =
                (0..count).flat_map(|k| v.frames[(start + k * stride) as usize].clone()).collect();
            assert!(out == expected, "{}: frames {start}+{count}x{stride} differ", v.id);
        }
        // Index lists decode a chunk only up to the last frame they need; a later read of
        // the same chunk that needs more (or `frame`) must decode further, not reuse it.
        for idx in [vec![0], vec![1 % n, 0], vec![n - 1, 0, n / 2], vec![0, 0, n / 3, n - 1]] {
            let mut out = Vec::new();
            reader.read_indices(i, &idx, &mut out).unwrap();
            let expected: Vec<u8> =
                idx.iter().flat_map(|&k| v.frames[k as usize].clone()).collect();
            assert!(out == expected, "{}: frames {idx:?} differ", v.id);
            assert_eq!(reader.frame(i, n - 1).unwrap(), &v.frames[n as usize - 1][..]);
            let mut one = Vec::new();
            reader.read_frames(i, 0, 1, 1, &mut one).unwrap();
            assert!(one == v.frames[0]);
        }
        let err = reader.read_indices(i, &[0, n], &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains(v.id) && err.contains(&format!("has {n}")), "{err}");
        assert_eq!(reader.frame(i, n - 1).unwrap(), &v.frames[n as usize - 1][..]);
        let err = reader.read_frames(i, n - 1, 2, 1, &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains(v.id) && err.contains(&format!("has {n}")), "{err}");
        set.verify_video(i, &mut reader).unwrap();
    }
}

#[test]
fn a_reader_made_from_another_readers_buffers_reads_its_own_set() {
    // Two sets of the same videos with other pixels: a reader made from the buffers of one
    // that has just decoded set A's chunk must decode set B's, not serve A's from its buffer.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let va = videos();
    let mut vb = videos();
    for f in vb.iter_mut().flat_map(|v| v.frames.iter_mut()) {
        f.iter_mut().for_each(|x| *x = x.wrapping_add(1));
    }
    for predictor in [PredictorMode::Adaptive, PredictorMode::Plain, PredictorMode::Interleaved] {
        write_set_with(a.path(), &va, predictor);
        write_set_with(b.path(), &vb, predictor);
        let (sa, sb) = (ShardSet::open(a.path()).unwrap(), ShardSet::open(b.path()).unwrap());
        let mut reader = sa.reader().unwrap();
        for v in [&va[0], &vb[0]] {
            let set = if std::ptr::eq(v, &va[0]) { &sa } else { &sb };
            reader = set.reader_with(reader.into_buffers());
            let i = set.find(v.id).unwrap();
            let mut out = Vec::new();
            reader.read_indices(i, &[0, 5], &mut out).unwrap();
            assert!(out == [&v.frames[0][..], &v.frames[5][..]].concat(), "{predictor:?}");
            assert_eq!(reader.frame(i, 3).unwrap(), &v.frames[3][..], "{predictor:?}");
        }
    }
}

#[test]
fn a_chunk_is_decoded_once_for_frames_read_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let vs = videos();
    write_set(dir.path(), &vs);
    let set = ShardSet::open(dir.path()).unwrap();
    let mut reader = set.reader().unwrap();
    for v in &vs {
        let i = set.find(v.id).unwrap();
        let before = reader.decoded_frames();
        for k in 0..v.frames.len() as u32 {
            assert_eq!(reader.frame(i, k).unwrap(), &v.frames[k as usize][..]);
        }
        assert_eq!(reader.decoded_frames() - before, v.frames.len() as u64, "{}", v.id);
        // An index list decodes chunk 0 only as far as frame 0, once, unless the video has
        // one chunk (of 8 frames), which the loop above left decoded whole.
        let before = reader.decoded_frames();
        reader.read_indices(i, &[0], &mut Vec::new()).unwrap();
        reader.read_indices(i, &[0], &mut Vec::new()).unwrap();
        let expected = u64::from(v.frames.len() > 8);
        assert_eq!(reader.decoded_frames() - before, expected, "{}: frame 0 twice", v.id);
    }
}

#[test]
fn plain_and_interleaved_sets_decode_only_the_frames_a_strided_clip_uses() {
    let dir = tempfile::tempdir().unwrap();
    let vs = videos();
    let count = |predictor| {
        write_set_with(dir.path(), &vs, predictor);
        let set = ShardSet::open(dir.path()).unwrap();
        let mut reader = set.reader().unwrap();
        let i = set.find("a/one").unwrap();
        let mut out = Vec::new();
        // Frames 1, 3, ..., 31 of 37: chunks 0-3, the last one up to its frame 7.
        reader.read_frames(i, 1, 16, 2, &mut out).unwrap();
        let expected: Vec<u8> = (0..16).flat_map(|k| vs[0].frames[1 + 2 * k].clone()).collect();
        assert!(out == expected, "{predictor}: frames differ");
        std::fs::remove_dir_all(dir.path()).unwrap();
        std::fs::create_dir(dir.path()).unwrap();
        reader.decoded_frames()
    };
    assert_eq!(count(PredictorMode::Plain), 16);
    // The odd frames of each chunk are a chain of their own.
    assert_eq!(count(PredictorMode::Interleaved), 16);
    assert_eq!(count(PredictorMode::Adaptive), 32);
}

#[test]
fn the_reader_refuses_a_flipped_byte_in_a_chunk_of_every_codec() {
    // Codec 2 and 3 frames carry no zstd checksum and may decode a flipped literal into
    // other pixels: the chunk's CRC-32C, checked before decoding, is what refuses it.
    let vs = videos();
    for predictor in [PredictorMode::Adaptive, PredictorMode::Plain, PredictorMode::Interleaved] {
        let dir = tempfile::tempdir().unwrap();
        write_set_with(dir.path(), &vs, predictor);
        let set = ShardSet::open(dir.path()).unwrap();
        let i = set.find("a/one").unwrap();
        let (row, path) = (&set.videos()[i], set.shard_path(i).to_path_buf());
        let chunk = row.chunks[1];
        let at = (row.offset + chunk.offset) as usize + chunk.length as usize / 2;
        drop(set);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let set = ShardSet::open(dir.path()).unwrap();
        let mut reader = set.reader().unwrap();
        let mut out = Vec::new();
        reader.read_frames(i, 0, 8, 1, &mut out).unwrap();
        let err = reader.read_frames(i, 8, 8, 1, &mut out).unwrap_err();
        assert!(matches!(err, FormatError::ChunkChecksum { chunk: 1, .. }), "{predictor}: {err}");
    }
}

#[test]
fn a_shard_file_lists_its_records_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), &videos());
    let path = dir.path().join("shard-00000.cvrs");
    let bytes = std::fs::read(&path).unwrap();
    let recs: Vec<_> = records(&path, &bytes).unwrap().collect::<Result<_>>().unwrap();
    let ids: Vec<_> = recs.iter().map(|(_, h)| h.video_id.as_str()).collect();
    assert_eq!(ids, ["a/one", "a/two"]);
    assert_eq!(recs[0].1.chunks.len(), 5, "37 frames in chunks of 8");
    assert_eq!(recs[1].0 % 8, 0, "records are 8-aligned");
}

#[test]
fn a_shard_file_opened_alone_reads_and_verifies_through_the_frame_reader() {
    let dir = tempfile::tempdir().unwrap();
    let vs = videos();
    write_set(dir.path(), &vs);
    let path = dir.path().join("shard-00000.cvrs");
    let file = ShardFile::open(&path).unwrap();
    assert!(file.damage().is_none());
    let set = ShardSet::open(dir.path()).unwrap();
    let mut reader = file.reader().unwrap();
    for (i, v) in file.videos().iter().enumerate() {
        let row = &set.videos()[set.find(&v.video_id).unwrap()];
        assert_eq!(
            (v.offset, v.length, &v.chunks, v.checksum),
            (row.offset, row.length, &row.chunks, row.checksum)
        );
        let mut out = Vec::new();
        reader.read_frames(i, 0, v.num_frames, 1, &mut out).unwrap();
        let expected: Vec<u8> = vs[i].frames.concat();
        assert!(out == expected, "{}", v.video_id);
        file.verify_video(i, &mut reader).unwrap();
    }

    let mut bytes = std::fs::read(&path).unwrap();
    let row = &file.videos()[1];
    bytes[(row.offset + row.chunks[0].offset + 2) as usize] ^= 4;
    bytes.extend([0; 5]);
    drop(file);
    std::fs::write(&path, &bytes).unwrap();
    let file = ShardFile::open(&path).unwrap();
    assert_eq!(file.videos().len(), 2, "a damaged chunk does not stop the walk");
    let damage = file.damage().map(ToString::to_string).unwrap_or_default();
    assert!(damage.contains("5 bytes after the last record"), "{damage}");
    let mut reader = file.reader().unwrap();
    file.verify_video(0, &mut reader).unwrap();
    let err = file.verify_video(1, &mut reader).unwrap_err();
    assert!(matches!(err, FormatError::ChunkChecksum { chunk: 0, .. }), "{err}");
}

/// `bytes` with `byte` set at `at` and the CRC-32C of `bytes[crc_of]` stored after that
/// range, so only the byte itself is wrong.
fn with_byte(bytes: &[u8], at: usize, byte: u8, crc_of: std::ops::Range<usize>) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] = byte;
    let crc = crc32c::crc32c(&b[crc_of.clone()]);
    b[crc_of.end..crc_of.end + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

fn walk_err(path: &Path, bytes: &[u8]) -> String {
    match records(path, bytes).and_then(|it| it.collect::<Result<Vec<_>>>()) {
        Ok(recs) => panic!("{} records accepted", recs.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn non_zero_reserved_bytes_id_padding_and_post_checksum_bytes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), &videos());
    let path = dir.path().join("shard-00000.cvrs");
    let bytes = std::fs::read(&path).unwrap();
    let reserved = with_byte(&bytes, 20, 1, 0..28);
    assert!(walk_err(&path, &reserved).contains("reserved bytes 16..28 are not zero"));
    std::fs::write(&path, &reserved).unwrap();
    let err = open_err(dir.path());
    assert!(err.contains("shard-00000.cvrs") && err.contains("reserved"), "{err}");

    // The first record, "a/one": 5 id bytes, 3 of padding; 5 chunks.
    let hlen = shard::header_len(5, 5);
    let padding = with_byte(&bytes, 32 + 48 + 6, 1, 32..32 + hlen - 8);
    assert!(walk_err(&path, &padding).contains("video id padding is not zero"));
    let after_crc = with_byte(&bytes, 32 + hlen - 2, 1, 32..32 + hlen - 8);
    let err = parse_record(&path, &after_crc, 32).unwrap_err().to_string();
    assert!(err.contains("a/one") && err.contains("after the header checksum"), "{err}");
    parse_record(&path, &bytes, 32).unwrap();
}

#[test]
fn bytes_between_or_after_records_fail_a_walk_and_verify_but_not_the_index_reader() {
    let dir = tempfile::tempdir().unwrap();
    // "b/three" first: its record's length is not a multiple of 8, so padding follows it.
    let mut vs = videos();
    vs.rotate_right(1);
    write_set(dir.path(), &vs);
    let path = dir.path().join("shard-00000.cvrs");
    let bytes = std::fs::read(&path).unwrap();
    let recs: Vec<_> = records(&path, &bytes).unwrap().collect::<Result<_>>().unwrap();
    let end0 = (recs[0].0 + recs[0].1.record_len) as usize;
    assert!(end0 < recs[1].0 as usize, "the test needs padding after record 0");

    let mut padded = bytes.clone();
    padded[end0] = 7;
    let mut variants = vec![("non-zero byte between records", padded)];
    for extra in [1, 8, 13] {
        let mut longer = bytes.clone();
        longer.resize(bytes.len() + extra, 0);
        variants.push(("", longer));
    }
    for (what, damaged) in variants {
        let walk = walk_err(&path, &damaged);
        assert!(walk.contains(what) && walk.contains("shard-00000.cvrs"), "{walk}");
        std::fs::write(&path, &damaged).unwrap();
        let set = ShardSet::open(dir.path()).expect("the index reader never reads those bytes");
        let mut reader = set.reader().unwrap();
        for i in 0..set.len() {
            set.verify_video(i, &mut reader).unwrap();
        }
        let s = (0..set.num_shards()).find(|&s| set.shard_file_name(s) == "shard-00000.cvrs");
        let err = set.verify_shard(s.unwrap()).unwrap_err().to_string();
        let expected = if what.is_empty() { "bytes after the last record" } else { what };
        assert!(err.contains(expected), "{err}");
    }
    std::fs::write(&path, &bytes).unwrap();
    let set = ShardSet::open(dir.path()).unwrap();
    for s in 0..set.num_shards() {
        set.verify_shard(s).unwrap();
    }
}

fn open_err(dir: &Path) -> String {
    match ShardSet::open(dir) {
        Ok(_) => panic!("damaged set opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_truncated_shard_or_a_bad_header_is_refused_at_open_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), &videos());
    let path = dir.path().join("shard-00001.cvrs");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let err = open_err(dir.path());
    assert!(
        err.contains("index.parquet") && err.contains("b/three") && err.contains("outside shard"),
        "{err}"
    );
    let mut bad = bytes.clone();
    bad[0] = b'X';
    std::fs::write(&path, &bad).unwrap();
    let err = open_err(dir.path());
    assert!(err.contains("shard-00001.cvrs") && err.contains("not a cvrl shard file"), "{err}");
    let mut newer = bytes.clone();
    newer[8] = 2;
    std::fs::write(&path, &newer).unwrap();
    assert!(open_err(dir.path()).contains("version 2 is not supported"));
    std::fs::remove_file(&path).unwrap();
    assert!(open_err(dir.path()).contains("shard-00001.cvrs"));
}

#[test]
fn a_missing_or_foreign_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(open_err(dir.path()).contains("not a cvrl shard set"));
    write_set(dir.path(), &videos());
    let m = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
    std::fs::write(
        dir.path().join("manifest.json"),
        m.replace("\"format_version\": 1", "\"format_version\": 9"),
    )
    .unwrap();
    assert!(open_err(dir.path()).contains("version 9"));
}

#[test]
fn a_flipped_bit_in_any_chunk_is_a_checksum_error_naming_video_and_chunk() {
    for predictor in [PredictorMode::Adaptive, PredictorMode::Plain, PredictorMode::Interleaved] {
        a_flipped_bit_is_a_checksum_error(predictor);
    }
}

fn a_flipped_bit_is_a_checksum_error(predictor: PredictorMode) {
    let dir = tempfile::tempdir().unwrap();
    write_set_with(dir.path(), &videos(), predictor);
    let set = ShardSet::open(dir.path()).unwrap();
    let i = set.find("a/one").unwrap();
    let row = set.videos()[i].clone();
    drop(set);
    let path = dir.path().join(&row.shard);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(row.offset + row.chunks[2].offset + 3) as usize] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let set = ShardSet::open(dir.path()).unwrap();
    let mut reader = set.reader().unwrap();
    let err = reader.read_frames(i, 16, 2, 1, &mut Vec::new()).unwrap_err().to_string();
    assert!(err.contains("a/one") && err.contains("chunk 2") && err.contains("checksum"), "{err}");
    reader.read_frames(i, 0, 16, 1, &mut Vec::new()).expect("other chunks still read");
    let err = set.verify_video(i, &mut reader).unwrap_err().to_string();
    assert!(err.contains("chunk 2") && err.contains("checksum"), "{err}");
}

/// Decodes every chunk of `h` (a record at byte 32 of `file`) without checking its CRC-32C,
/// so that only zstd's checksum and the codec's own checks stand between damage and the
/// caller, and fails the case if a chunk decodes to anything but the original frames.
fn chunks_decode_to_original(
    file: &[u8],
    h: &RecordHeader,
    frames: &[Vec<u8>],
) -> Result<(), TestCaseError> {
    let mut decoder = ChunkDecoder::new().unwrap();
    let record = &file[32..];
    for (c, e) in h.chunks.iter().enumerate() {
        let data = &record[e.offset as usize..(e.offset + u64::from(e.length)) as usize];
        let mut out = vec![0u8; e.num_frames as usize * h.layout.frame_bytes()];
        if decoder.decode(&h.layout, e.num_frames as usize, data, &mut out).is_ok() {
            let first = e.first_frame as usize;
            let original = frames[first..first + e.num_frames as usize].concat();
            prop_assert!(out == original, "damaged chunk {} decoded to other frames", c);
        }
    }
    Ok(())
}

/// Where a damaging flip lands: half in the first 512 bytes (the file header, the record
/// header and chunk table, the first chunk), half anywhere in the file (taken modulo its length).
fn flip_at() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..512, any::<usize>()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever the damage, parsing and reading never panic or read out of bounds, and
    /// whatever they return instead of an error is exactly what was written: the original
    /// record header, the original frames of every chunk, never other frames.
    #[test]
    fn damaged_records_give_errors_or_the_original_frames(flips in proptest::collection::vec((flip_at(), any::<u8>()), 1..8), cut in proptest::option::weighted(0.25, any::<prop::sample::Index>())) {
        let dir = tempfile::tempdir().unwrap();
        let vs = videos();
        let v = &vs[0];
        write_set(dir.path(), &vs[..1]);
        let path = dir.path().join("shard-00000.cvrs");
        let mut bytes = std::fs::read(&path).unwrap();
        let original = parse_record(&path, &bytes, 32).unwrap();
        for (at, x) in flips {
            let n = bytes.len();
            bytes[at % n] ^= x;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Ok(h) = parse_record(&path, &bytes, 32) {
            prop_assert_eq!(&h, &original);
            chunks_decode_to_original(&bytes, &h, &v.frames)?;
        }
        if let Ok(it) = records(&path, &bytes) {
            for (at, h) in it.flatten() {
                prop_assert_eq!((at, &h), (32, &original));
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(set) = ShardSet::open(dir.path()) {
            let mut reader = set.reader().unwrap();
            let row = set.videos()[0].clone();
            for c in &row.chunks {
                let mut out = Vec::new();
                if reader.read_frames(0, c.first_frame, c.num_frames, 1, &mut out).is_ok() {
                    let first = c.first_frame as usize;
                    let original = v.frames[first..first + c.num_frames as usize].concat();
                    prop_assert!(out == original, "frames {}.. read as other frames", first);
                }
            }
            let n = row.num_frames;
            let mut out = Vec::new();
            if reader.read_indices(0, &[n - 1, 0, n / 2], &mut out).is_ok() {
                let original = [n - 1, 0, n / 2].map(|k| &v.frames[k as usize][..]).concat();
                prop_assert!(out == original, "frames by index read as other frames");
            }
            if set.verify_video(0, &mut reader).is_ok() {
                let mut out = Vec::new();
                reader.read_frames(0, 0, n, 1, &mut out).unwrap();
                prop_assert!(out == v.frames.concat(), "a verified video read as other frames");
            }
        }
    }
}
