//! Opening a shard set: the validating, memory-mapped reader's front end, and merging and
//! writing a set's index files.
//!
//! [`ShardSet::open`] loads the manifest and index, memory-maps every shard, and checks
//! every index row against the shard it points into (ranges, chunk tables, sizes), so that
//! later reads can trust offsets. [`FrameReader`] (`crate::reader`) then gives random access
//! to any frames of any video, decompressing only the chunks they lie in.
//!
//! ```no_run
//! # fn main() -> Result<(), cvrl_formats::FormatError> {
//! let set = cvrl_formats::ShardSet::open("out/".as_ref())?;
//! let mut reader = set.reader()?;
//! let mut frames = Vec::new();
//! reader.read_frames(0, 10, 16, 2, &mut frames)?; // 16 frames from frame 10 at stride 2
//! # Ok(()) }
//! ```

use crate::error::{FormatError, IoContext, Result};
use crate::index::{read_failures, read_index, write_failures, write_index, FailureRow, VideoRow};
use crate::manifest::{Counts, Manifest, Part, SetFiles};
use crate::pixel::FrameLayout;
use crate::reader::{MappedShard, MappedVideos};
use crate::shard::{check_chunk_table, header_len, parse_file_header, parse_record};
use memmap2::Mmap;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

pub use crate::reader::{FrameReader, ReaderBuffers};

/// An open, validated shard set (one directory, or several opened together).
pub struct ShardSet {
    manifest: Manifest,
    /// The videos of the index, each checked against its shard at open.
    store: MappedVideos,
    failures: Vec<FailureRow>,
}

impl ShardSet {
    /// Opens the set in `dir`: `manifest.json` + `index.parquet`, or, where those are absent,
    /// all `part-I-of-N.*` files of a partitioned build (every part must be there).
    pub fn open(dir: &Path) -> Result<ShardSet> {
        let (manifest, videos, failures) = load_dir(dir)?;
        let mut set = ShardSet { manifest, store: MappedVideos::default(), failures };
        set.add_videos(dir, videos)?;
        Ok(set)
    }

    /// Opens several sets as one (train + val, or parts kept in separate directories). Their
    /// class lists and pixel formats must agree; video ids must be unique across them.
    pub fn open_many(dirs: &[PathBuf]) -> Result<ShardSet> {
        let (first, rest) = dirs.split_first().ok_or_else(|| FormatError::Invalid {
            what: "shard sets".into(),
            reason: "no directory given".into(),
        })?;
        let mut set = ShardSet::open(first)?;
        for dir in rest {
            let (m, videos, failures) = load_dir(dir)?;
            check_compatible(&set.manifest, &m).map_err(|reason| {
                FormatError::IncompatibleSets {
                    dir: dir.clone(),
                    reason: format!("cannot be opened with {}: {reason}", first.display()),
                }
            })?;
            set.failures.extend(failures);
            set.add_videos(dir, videos)?;
            set.manifest.counts = sum_counts(&set.manifest.counts, &m.counts);
            set.manifest.shards.extend(m.shards);
        }
        Ok(set)
    }

    fn add_videos(&mut self, dir: &Path, videos: Vec<VideoRow>) -> Result<()> {
        let index_path = dir.join(&self.manifest.index);
        let mut shard_ids: HashMap<String, u32> = HashMap::new();
        let mut seen: HashSet<String> =
            self.store.videos.iter().map(|v| v.video_id.clone()).collect();
        for row in videos {
            if !seen.insert(row.video_id.clone()) {
                return Err(bad_row(&index_path, &row, "video id appears twice".into()));
            }
            let shard = match shard_ids.get(&row.shard) {
                Some(&s) => s,
                None => {
                    let s = self.map_shard(dir, &index_path, &row)?;
                    shard_ids.insert(row.shard.clone(), s);
                    s
                }
            };
            let layout = self.check_row(&index_path, &row, shard)?;
            self.store.layouts.push(layout);
            self.store.video_shard.push(shard);
            self.store.videos.push(row);
        }
        Ok(())
    }

    fn map_shard(&mut self, dir: &Path, index_path: &Path, row: &VideoRow) -> Result<u32> {
        let plain = Path::new(&row.shard).file_name().is_some_and(|n| n == row.shard.as_str());
        if !plain {
            return Err(bad_row(
                index_path,
                row,
                format!("shard {:?} is not a file name", row.shard),
            ));
        }
        let path = dir.join(&row.shard);
        let file = File::open(&path).at(&path)?;
        // SAFETY: shards are immutable once renamed into place; cvrl never rewrites one. A
        // file truncated by another process under the map would fault, as with any mmap.
        let map = unsafe { Mmap::map(&file) }.at(&path)?;
        parse_file_header(&path, &map)?;
        self.store.shards.push(MappedShard { path, map });
        Ok((self.store.shards.len() - 1) as u32)
    }

    /// Checks an index row against its shard without reading chunk data.
    fn check_row(&self, index_path: &Path, row: &VideoRow, shard: u32) -> Result<FrameLayout> {
        let bad = |reason: String| bad_row(index_path, row, reason);
        let map = &self.store.shards[shard as usize].map;
        let end =
            row.offset.checked_add(row.length).ok_or_else(|| bad("byte range overflows".into()))?;
        if end > map.len() as u64
            || !row.offset.is_multiple_of(8)
            || row.offset < crate::shard::FILE_HEADER_LEN as u64
        {
            return Err(bad(format!(
                "record {}..{end} outside shard of {} bytes",
                row.offset,
                map.len()
            )));
        }
        let format = row.pixel_format.parse().map_err(&bad)?;
        let layout = FrameLayout::new(row.width, row.height, format).map_err(&bad)?;
        let data_start = header_len(row.video_id.len(), row.chunks.len()) as u64;
        check_chunk_table(&row.chunks, data_start, row.length, row.num_frames).map_err(&bad)?;
        if row.fps_num == 0 || row.fps_den == 0 {
            return Err(bad("frame rate is zero".into()));
        }
        if let Some(i) = row.label_index {
            if i < 0 || i as usize >= self.manifest.classes.len() {
                return Err(bad(format!(
                    "label index {i} outside the {} classes",
                    self.manifest.classes.len()
                )));
            }
        }
        Ok(layout)
    }

    /// Opens the sets `paths` name together (as [`ShardSet::open_many`]) and keeps the
    /// split they name, if any; all must name the same split, or none.
    pub fn open_paths(paths: &[SetPath]) -> Result<ShardSet> {
        let split = paths.first().and_then(|p| p.split.clone());
        if let Some(other) = paths.iter().find(|p| p.split != split) {
            return Err(FormatError::Invalid {
                what: other.to_string(),
                reason: format!(
                    "sets opened together must name the same split (the first names {})",
                    split.as_deref().unwrap_or("none")
                ),
            });
        }
        let dirs: Vec<PathBuf> = paths.iter().map(|p| p.dir.clone()).collect();
        let mut set = ShardSet::open_many(&dirs)?;
        if let Some(split) = split {
            set.retain_split(&split).map_err(|e| match e {
                FormatError::NoSuchSplit { split, available, .. } => {
                    let sets = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>();
                    FormatError::NoSuchSplit { sets: sets.join(", "), split, available }
                }
                other => other,
            })?;
        }
        Ok(set)
    }

    /// The splits of the set's videos (the index's `split` column), sorted, each once;
    /// empty when no video has one.
    pub fn splits(&self) -> Vec<String> {
        let mut splits: Vec<String> =
            self.store.videos.iter().filter_map(|v| v.split.clone()).collect();
        splits.sort();
        splits.dedup();
        splits
    }

    /// Keeps only the videos of `split`, in their order. Fails, changing nothing, when no
    /// video has it.
    pub fn retain_split(&mut self, split: &str) -> Result<()> {
        let keep: Vec<bool> =
            self.store.videos.iter().map(|v| v.split.as_deref() == Some(split)).collect();
        if !keep.contains(&true) {
            let available = self.splits();
            return Err(FormatError::NoSuchSplit {
                sets: "the shard set".into(),
                split: split.to_owned(),
                available: if available.is_empty() { "none".into() } else { available.join(", ") },
            });
        }
        let mut k = keep.iter();
        self.store.videos.retain(|_| *k.next().unwrap_or(&false));
        let mut k = keep.iter();
        self.store.layouts.retain(|_| *k.next().unwrap_or(&false));
        let mut k = keep.iter();
        self.store.video_shard.retain(|_| *k.next().unwrap_or(&false));
        Ok(())
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    pub fn classes(&self) -> &[String] {
        &self.manifest.classes
    }
    pub fn videos(&self) -> &[VideoRow] {
        &self.store.videos
    }
    pub fn failures(&self) -> &[FailureRow] {
        &self.failures
    }
    pub fn len(&self) -> usize {
        self.store.videos.len()
    }
    pub fn is_empty(&self) -> bool {
        self.store.videos.is_empty()
    }
    /// The frame layout of video `i`.
    pub fn layout(&self, i: usize) -> FrameLayout {
        self.store.layouts[i]
    }
    /// Position of a video by id.
    pub fn find(&self, video_id: &str) -> Option<usize> {
        self.store.videos.iter().position(|v| v.video_id == video_id)
    }
    /// The path of the shard holding video `i`.
    pub fn shard_path(&self, i: usize) -> &Path {
        self.store.shard_path(i)
    }

    /// A reader with its own decompression buffers; make one per thread.
    pub fn reader(&self) -> Result<FrameReader<'_>> {
        FrameReader::new(&self.store)
    }

    /// A reader that decodes into `buffers`, taken from an earlier reader
    /// ([`FrameReader::into_buffers`]) of this or another set.
    pub fn reader_with(&self, buffers: ReaderBuffers) -> FrameReader<'_> {
        FrameReader::with_buffers(&self.store, buffers)
    }

    /// Recomputes every checksum of video `i`: the record header against the index row,
    /// every chunk (checksum, then a full decode, so a damaged chunk is named), and last the
    /// whole record against the index (which also covers header padding).
    pub fn verify_video(&self, i: usize, reader: &mut FrameReader<'_>) -> Result<()> {
        let row = &self.store.videos[i];
        let path = self.shard_path(i);
        let header = parse_record(path, self.store.shard_map(i), row.offset)?;
        let same = header.video_id == row.video_id
            && header.num_frames == row.num_frames
            && header.chunks == row.chunks
            && header.record_len == row.length
            && header.layout == self.store.layouts[i];
        if !same {
            return Err(FormatError::BadRecord {
                path: path.into(),
                video: row.video_id.clone(),
                offset: row.offset,
                reason: "record header does not match the index row".into(),
            });
        }
        reader.decode_video(i)?;
        let actual = crc32c::crc32c(self.store.record(i));
        if actual != row.checksum {
            return Err(FormatError::RecordChecksum {
                path: path.into(),
                video: row.video_id.clone(),
                expected: row.checksum,
                actual,
            });
        }
        Ok(())
    }

    /// Number of shard files the set's videos lie in.
    pub fn num_shards(&self) -> usize {
        self.store.shards.len()
    }

    /// The file name of shard `s` (`0..num_shards()`).
    pub fn shard_file_name(&self, s: usize) -> String {
        let path = &self.store.shards[s].path;
        path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into())
    }

    /// Checks that the records the index places in shard `s` tile the file as
    /// `FORMAT.md#2-shard-file` requires: the first at byte 32, each next one at the first
    /// multiple of 8 after the one before, only zero bytes between them, nothing after the
    /// last. What `cvrl-inspect --verify` adds to [`ShardSet::verify_video`] for a whole set.
    pub fn verify_shard(&self, s: usize) -> Result<()> {
        let shard = &self.store.shards[s];
        let bad = |offset: u64, reason: String| FormatError::BadShardLayout {
            path: shard.path.clone(),
            offset,
            reason,
        };
        let store = &self.store;
        let mut records: Vec<&VideoRow> = (0..store.videos.len())
            .filter(|&i| store.video_shard[i] as usize == s)
            .map(|i| &store.videos[i])
            .collect();
        records.sort_by_key(|r| r.offset);
        let map = &shard.map[..];
        // Offsets and lengths lie inside the file: checked in `check_row` at open.
        let mut end = crate::shard::FILE_HEADER_LEN as u64;
        for r in records {
            let start = end.next_multiple_of(8);
            if r.offset != start {
                let what =
                    if r.offset < start { "overlaps the one before" } else { "leaves a gap" };
                let reason = format!(
                    "video {:?} starts here, expected at byte {start}: it {what}",
                    r.video_id
                );
                return Err(bad(r.offset, reason));
            }
            if let Some(i) = map[end as usize..start as usize].iter().position(|&b| b != 0) {
                return Err(bad(end + i as u64, "non-zero byte between records".into()));
            }
            end = r.offset + r.length;
        }
        let len = map.len() as u64;
        if end != len {
            return Err(bad(end, format!("{} bytes after the last record", len - end)));
        }
        Ok(())
    }
}

fn bad_row(index_path: &Path, row: &VideoRow, reason: String) -> FormatError {
    FormatError::BadIndex {
        path: index_path.to_path_buf(),
        reason: format!("video {:?}: {reason}", row.video_id),
    }
}

fn sum_counts(a: &Counts, b: &Counts) -> Counts {
    Counts {
        videos: a.videos + b.videos,
        failures: a.failures + b.failures,
        frames: a.frames + b.frames,
        source_bytes: a.source_bytes + b.source_bytes,
        stored_bytes: a.stored_bytes + b.stored_bytes,
    }
}

fn check_compatible(a: &Manifest, b: &Manifest) -> std::result::Result<(), String> {
    if a.classes != b.classes {
        let only_a: Vec<_> = a.classes.iter().filter(|c| !b.classes.contains(c)).take(5).collect();
        let only_b: Vec<_> = b.classes.iter().filter(|c| !a.classes.contains(c)).take(5).collect();
        return Err(format!(
            "class lists differ ({} vs {} classes; only in the first: {only_a:?}; only in the second: {only_b:?}{})",
            a.classes.len(),
            b.classes.len(),
            if only_a.is_empty() && only_b.is_empty() { "; same names in another order" } else { "" }
        ));
    }
    if a.params.pixel_format != b.params.pixel_format {
        return Err(format!(
            "pixel formats differ ({} vs {})",
            a.params.pixel_format, b.params.pixel_format
        ));
    }
    Ok(())
}

/// Loads manifest, index and failures of one directory, joining parts when needed.
fn load_dir(dir: &Path) -> Result<(Manifest, Vec<VideoRow>, Vec<FailureRow>)> {
    let whole = SetFiles::new(None);
    let manifest_path = dir.join(whole.manifest());
    if manifest_path.exists() {
        let m = Manifest::load(&manifest_path)?;
        let videos = read_index(&dir.join(&m.index))?;
        let failures = read_failures(&dir.join(&m.failures))?;
        return Ok((m, videos, failures));
    }
    let parts = load_parts(dir)?;
    join_parts(dir, parts)
}

type PartData = (Manifest, Vec<VideoRow>, Vec<FailureRow>);

fn load_parts(dir: &Path) -> Result<Vec<PartData>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .at(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("part-") && n.ends_with(".manifest.json"))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(FormatError::NotAShardSet { dir: dir.to_path_buf() });
    }
    names
        .iter()
        .map(|n| {
            let m = Manifest::load(&dir.join(n))?;
            let videos = read_index(&dir.join(&m.index))?;
            let failures = read_failures(&dir.join(&m.failures))?;
            Ok((m, videos, failures))
        })
        .collect()
}

fn join_parts(dir: &Path, parts: Vec<PartData>) -> Result<PartData> {
    let incompatible =
        |reason: String| FormatError::IncompatibleSets { dir: dir.to_path_buf(), reason };
    let name = |m: &Manifest| SetFiles::new(m.part).manifest();
    let counts: BTreeSet<u32> = parts.iter().map(|p| p.0.part.map_or(1, |p| p.count)).collect();
    if counts.len() > 1 {
        let names: Vec<String> = parts.iter().map(|p| name(&p.0)).collect();
        return Err(incompatible(format!(
            "part files of builds in {counts:?} parts lie here together ({}); a set is the \
             parts of one build: delete the other build's part files",
            names.join(", ")
        )));
    }
    let count = parts[0].0.part.map(|p| p.count).unwrap_or(1);
    let mut present: Vec<u32> = parts.iter().filter_map(|p| p.0.part.map(|p| p.index)).collect();
    present.sort();
    let expected: Vec<u32> = (0..count).collect();
    if present != expected {
        let missing: Vec<u32> = expected.iter().copied().filter(|i| !present.contains(i)).collect();
        let files: Vec<String> = missing
            .iter()
            .map(|&index| SetFiles::new(Some(Part { index, count })).manifest())
            .collect();
        return Err(incompatible(format!(
            "a build in {count} parts, but parts {missing:?} are missing (no {}); build them \
             with --part I/{count} and the other parts' parameters, then merge",
            files.join(", ")
        )));
    }
    let first = &parts[0].0;
    for (m, _, _) in &parts {
        check_part_shards(dir, m).map_err(incompatible)?;
        let diff = first.params.differences(&m.params);
        if !diff.is_empty() {
            let (a, b) = (name(first), name(m));
            let what: Vec<String> =
                diff.iter().map(|(k, x, y)| format!("{k} {x} in {a}, {y} in {b}")).collect();
            return Err(incompatible(format!(
                "{a} and {b} were built with different parameters ({}); rebuild one of them \
                 with the other's (cvrl-shard build ... --part I/{count} --force)",
                what.join("; ")
            )));
        }
        check_compatible(first, m)
            .map_err(|reason| incompatible(format!("{} and {}: {reason}", name(first), name(m))))?;
    }
    let mut iter = parts.into_iter();
    let (mut manifest, mut videos, mut failures) = iter.next().expect("at least one part");
    for (m, v, f) in iter {
        manifest.counts = sum_counts(&manifest.counts, &m.counts);
        manifest.shards.extend(m.shards);
        videos.extend(v);
        failures.extend(f);
    }
    videos.sort_by(|a, b| a.video_id.cmp(&b.video_id));
    let whole = SetFiles::new(None);
    manifest.part = None;
    manifest.index = whole.index();
    manifest.failures = whole.failures();
    Ok((manifest, videos, failures))
}

/// Every shard a part's manifest lists is there, at the size it lists: a merge must not
/// write an index that points into a file that is gone or was replaced.
fn check_part_shards(dir: &Path, m: &Manifest) -> std::result::Result<(), String> {
    let manifest = SetFiles::new(m.part).manifest();
    for s in &m.shards {
        let why = match std::fs::metadata(dir.join(&s.file)) {
            Ok(meta) if meta.len() == s.bytes => continue,
            Ok(meta) => format!("is {} bytes, but {manifest} says {}", meta.len(), s.bytes),
            Err(e) => format!("cannot be read ({e}), but {manifest} lists it"),
        };
        return Err(format!("{} {why}; rebuild that part with --force", s.file));
    }
    Ok(())
}

/// Joins the part files of a partitioned build in `dir` into `index.parquet`,
/// `failures.parquet` and `manifest.json` (written atomically, manifest last). The part
/// files stay; shards are not moved. Returns the joined manifest.
pub fn merge_parts(dir: &Path) -> Result<Manifest> {
    let (manifest, videos, failures) = join_parts(dir, load_parts(dir)?)?;
    write_set(dir, &manifest, &videos, &failures)?;
    Ok(manifest)
}

/// Writes the index, the failures and, last, the manifest of a set (or of the part the
/// manifest names) into `dir`, each atomically: the manifest is the commit point, so a set
/// is never seen without its index. The shard files must already be there.
pub fn write_set(
    dir: &Path,
    manifest: &Manifest,
    videos: &[VideoRow],
    failures: &[FailureRow],
) -> Result<()> {
    write_index(&dir.join(&manifest.index), videos)?;
    write_failures(&dir.join(&manifest.failures), failures)?;
    manifest.save(&dir.join(SetFiles::new(manifest.part).manifest()))
}

/// A shard set on the command line: `DIR`, or `DIR:SPLIT` for the videos of one split of it
/// (the index's `split` column, e.g. `out/:val`). A `DIR` that exists as written is taken
/// whole, even if its name holds a colon.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct SetPath {
    pub dir: PathBuf,
    pub split: Option<String>,
}

impl std::str::FromStr for SetPath {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.is_empty() {
            return Err("an empty shard set path".into());
        }
        if !Path::new(s).exists() {
            if let Some((dir, split)) = s.rsplit_once(':') {
                if !dir.is_empty() && !split.is_empty() && !split.contains('/') {
                    return Ok(SetPath { dir: dir.into(), split: Some(split.into()) });
                }
            }
        }
        Ok(SetPath { dir: s.into(), split: None })
    }
}

impl std::fmt::Display for SetPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.split {
            Some(split) => write!(f, "{}:{split}", self.dir.display()),
            None => write!(f, "{}", self.dir.display()),
        }
    }
}

impl From<SetPath> for String {
    fn from(p: SetPath) -> String {
        p.to_string()
    }
}

impl TryFrom<String> for SetPath {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<PathBuf> for SetPath {
    fn from(dir: PathBuf) -> SetPath {
        SetPath { dir, split: None }
    }
}

#[cfg(test)]
mod set_path_tests {
    use super::SetPath;
    use std::path::PathBuf;

    #[test]
    fn a_set_path_names_a_directory_and_perhaps_a_split() {
        let p: SetPath = "out/k400:val".parse().unwrap();
        assert_eq!((p.dir, p.split.as_deref()), (PathBuf::from("out/k400"), Some("val")));
        let whole: SetPath = "out/k400".parse().unwrap();
        assert_eq!(whole.split, None);
        // A directory that exists as written is taken whole, colon and all.
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("a:b");
        std::fs::create_dir(&odd).unwrap();
        let p: SetPath = odd.to_str().unwrap().parse().unwrap();
        assert_eq!((p.dir, p.split), (odd, None));
        for text in ["out:val", "x/y", "/abs/set:train"] {
            assert_eq!(text.parse::<SetPath>().unwrap().to_string(), text);
        }
        assert!("".parse::<SetPath>().is_err());
        // serde goes through the same spelling.
        let json = serde_json::to_string(&"s:val".parse::<SetPath>().unwrap()).unwrap();
        assert_eq!(json, "\"s:val\"");
        assert_eq!(serde_json::from_str::<SetPath>(&json).unwrap().split.as_deref(), Some("val"));
    }
}
