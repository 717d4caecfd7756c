//! Writes the seed corpora of the fuzz targets from real shard sets (FUZZING.md, "Seeds").
//!
//! Usage: `seeds CORPUS_DIR SET_DIR...`. For each set, into `CORPUS_DIR/<target>/`:
//! - `index_read`: its `index.parquet` and `failures.parquet`, and the one-row index of
//!   each video's small set (below);
//! - `shard_file`: each shard file up to 32 KiB whole, and for each video a small shard of
//!   one record holding its first 4 frames re-encoded with the set's own parameters in
//!   chunks of 2 (as is, and in the CRC-fixing mode);
//! - `chunk_decode` (codec 1 sets) and `interleaved_decode` (codec 3 sets): the first two
//!   chunks of each video as stored, and their decompressed payloads (codec 3: each zstd
//!   frame's contents, length-prefixed);
//! - `codec_roundtrip`: the first two frames of each video;
//! - `set_open`: each video's small set (manifest, one-row index, the small shard).

use anyhow::{Context, Result};
use cvrl_formats::codec::{ChunkEncoder, PredictorMode};
use cvrl_formats::manifest::ShardInfo;
use cvrl_formats::{
    write_set, FrameLayout, Manifest, RecordBuilder, ShardSet, ShardWriter, VideoRow, VideoSpec,
};
use cvrl_formats_fuzz::{join_set, ChunkCase, MAX_CASE_DIM, SHARD_AS_IS, SHARD_FIX_CRCS};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const SMALL_SHARD: u64 = 32 << 10;
const SHARD_NAME: &str = "shard-00000.cvrs";

fn main() -> Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let Some((corpus, sets)) = args.split_first().filter(|(_, s)| !s.is_empty()) else {
        anyhow::bail!("usage: seeds CORPUS_DIR SET_DIR...");
    };
    let out = Corpus { root: corpus.clone() };
    for dir in sets {
        seed_set(&out, dir).with_context(|| format!("seeding from {}", dir.display()))?;
    }
    Ok(())
}

struct Corpus {
    root: PathBuf,
}

impl Corpus {
    fn put(&self, target: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(name.replace(['/', ' '], "_"));
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn seed_set(out: &Corpus, dir: &Path) -> Result<()> {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("set").to_string();
    let set = ShardSet::open(dir)?;
    let m = set.manifest();
    out.put("index_read", &format!("{name}-index.parquet"), &read(&dir.join(&m.index))?)?;
    out.put("index_read", &format!("{name}-failures.parquet"), &read(&dir.join(&m.failures))?)?;
    let mut shards_seen = BTreeSet::new();
    let mut reader = set.reader()?;
    for (i, row) in set.videos().iter().enumerate() {
        let shard_path = set.shard_path(i);
        let shard = read(shard_path)?;
        if shards_seen.insert(shard_path.to_path_buf()) && shard.len() as u64 <= SMALL_SHARD {
            out.put(
                "shard_file",
                &format!("{name}-{}", row.shard),
                &[&[SHARD_AS_IS], &shard[..]].concat(),
            )?;
        }
        let tag = format!("{name}-{}", row.video_id);
        let layout = set.layout(i);
        let record = &shard[row.offset as usize..(row.offset + row.length) as usize];
        let interleaved = m.params.predictor == PredictorMode::Interleaved;
        seed_chunks(out, &tag, &layout, record, row, interleaved)?;
        let k = row.num_frames.min(4);
        let mut frames = Vec::new();
        reader.read_frames(i, 0, k, 1, &mut frames)?;
        if layout.width() <= MAX_CASE_DIM && layout.height() <= MAX_CASE_DIM {
            let mode = m.params.predictor;
            let two = k.min(2) as usize;
            let flags = mode_index(mode) | 0b1111_1100;
            let case = ChunkCase { flags, layout, n_frames: two, upto: 1 };
            let bytes = [&case.header()[..], &frames[..two * layout.frame_bytes()]].concat();
            out.put("codec_roundtrip", &tag, &bytes)?;
        }
        seed_small_set(out, &tag, m, row, &layout, &frames, k)?;
    }
    Ok(())
}

/// Index of `mode` in the `codec_roundtrip` target's mode table.
fn mode_index(mode: PredictorMode) -> u8 {
    match mode {
        PredictorMode::Raw => 0,
        PredictorMode::Temporal => 1,
        PredictorMode::Med => 2,
        // Not in the target's table (its flags have two bits for the mode): plain and
        // interleaved chunks take adaptive's slot.
        PredictorMode::Adaptive | PredictorMode::Plain | PredictorMode::Interleaved => 3,
    }
}

/// `chunk_decode` seeds (codec 1 sets), or `interleaved_decode` seeds (codec 3): the first
/// two chunks of each video as stored, and unpacked (codec 1: the payload; codec 3: each zstd
/// frame's contents, length-prefixed).
fn seed_chunks(
    out: &Corpus,
    tag: &str,
    layout: &FrameLayout,
    record: &[u8],
    row: &VideoRow,
    interleaved: bool,
) -> Result<()> {
    if layout.width() > MAX_CASE_DIM || layout.height() > MAX_CASE_DIM {
        return Ok(());
    }
    let (target, unpacked) =
        if interleaved { ("interleaved_decode", "parts") } else { ("chunk_decode", "payload") };
    for (c, entry) in row.chunks.iter().take(2).enumerate() {
        let n = entry.num_frames as usize;
        if n > cvrl_formats_fuzz::MAX_CASE_FRAMES {
            continue;
        }
        let data =
            &record[entry.offset as usize..(entry.offset + u64::from(entry.length)) as usize];
        let stored = ChunkCase { flags: 1, layout: *layout, n_frames: n, upto: n };
        out.put(target, &format!("{tag}-c{c}-zst"), &[&stored.header()[..], data].concat())?;
        let body = if interleaved {
            frame_contents(data)?
        } else {
            zstd::decode_all(data).context("decompressing a chunk")?
        };
        let split = ChunkCase { flags: 0, upto: n.div_ceil(2), ..stored };
        let name = format!("{tag}-c{c}-{unpacked}");
        out.put(target, &name, &[&split.header()[..], &body[..]].concat())?;
    }
    Ok(())
}

/// The contents of each zstd frame of `data`, each as a `u16` LE length and its bytes.
fn frame_contents(data: &[u8]) -> Result<Vec<u8>> {
    let mut parts = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let len = zstd::zstd_safe::find_frame_compressed_size(&data[at..])
            .map_err(|e| anyhow::anyhow!("a zstd frame of a chunk: error {e}"))?;
        let part = zstd::decode_all(&data[at..at + len]).context("decompressing a frame")?;
        let len16 = u16::try_from(part.len()).context("a part over 64 KiB")?;
        parts.extend_from_slice(&len16.to_le_bytes());
        parts.extend_from_slice(&part);
        at += len;
    }
    Ok(parts)
}

/// A set of one video holding its first `k` frames (`frames`), re-encoded with the set's
/// own parameters in chunks of 2: seeds for `shard_file`, `index_read` and `set_open`.
fn seed_small_set(
    out: &Corpus,
    tag: &str,
    m: &Manifest,
    row: &VideoRow,
    layout: &FrameLayout,
    frames: &[u8],
    k: u32,
) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mode = m.params.predictor;
    let mut enc = ChunkEncoder::new(m.params.zstd_level, mode)?;
    let spec = VideoSpec {
        video_id: row.video_id.clone(),
        layout: *layout,
        fps_num: row.fps_num,
        fps_den: row.fps_den,
    };
    let mut builder = RecordBuilder::new(spec, 2, &mut enc)?;
    for f in frames.chunks_exact(layout.frame_bytes()).take(k as usize) {
        builder.push_frame(f)?;
    }
    let rec = builder.finish()?;
    let shard_path = tmp.path().join(SHARD_NAME);
    let mut w = ShardWriter::create(&shard_path)?;
    let loc = w.append(&rec)?;
    let bytes = w.finish()?;
    let shard = read(&shard_path)?;
    out.put("shard_file", &format!("{tag}-small"), &[&[SHARD_AS_IS], &shard[..]].concat())?;
    out.put("shard_file", &format!("{tag}-small-fix"), &[&[SHARD_FIX_CRCS], &shard[..]].concat())?;
    let small = VideoRow {
        label: row.label.clone(),
        label_index: row.label_index,
        split: row.split.clone(),
        source_bytes: row.source_bytes,
        source_codec: row.source_codec.clone(),
        factors: row.factors.clone(),
        ..VideoRow::for_record(&rec, SHARD_NAME, loc, row.source_path.clone())
    };
    let shards = vec![ShardInfo { file: SHARD_NAME.into(), bytes, videos: 1 }];
    let rows = [small];
    let manifest = Manifest::new(
        m.tool.clone(),
        m.params.clone(),
        m.classes.clone(),
        None,
        shards,
        &rows,
        &[],
    );
    write_set(tmp.path(), &manifest, &rows, &[])?;
    let index = read(&tmp.path().join(&manifest.index))?;
    out.put("index_read", &format!("{tag}-index.parquet"), &index)?;
    let manifest = read(&tmp.path().join("manifest.json"))?;
    out.put("set_open", tag, &join_set(&manifest, &index, &shard))
}
