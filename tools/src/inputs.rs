//! Finding the videos to shard: a Kinetics class-folder tree, or a Kinetics CSV plus the
//! folder holding its downloads.
//!
//! The result is one ordered list of [`InputVideo`]s (sorted by video id, so every run and
//! every `--part` of a cluster job sees the same order) and the class list of the whole
//! dataset. CSV rows that cannot be used (times that are not numbers, an empty window, a
//! clip listed twice) and rows whose file cannot be found stay in the list, marked
//! [`Rejection`], so they are reported as failures in their place, naming their CSV line,
//! instead of stopping the build or silently vanishing: at 240,000 rows one bad row must
//! not cost the others. Files that are not videos are listed in [`Inputs::skipped`] for the
//! build's summary.
//!
//! A factors CSV ([`Inputs::attach_factors`], written by `cvrl-shard synth`) labels videos
//! with their factors of variation; the build stores them as the index's `factor_<name>`
//! columns.

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// File extensions treated as videos in a class-folder tree.
pub const VIDEO_EXTENSIONS: &[&str] =
    &["mp4", "webm", "mkv", "avi", "mov", "m4v", "mpg", "mpeg", "flv", "ts", "3gp", "ogv"];

/// Folder names recognised as splits above the class folders (`train/<class>/x.mp4`).
const SPLIT_DIRS: &[&str] = &["train", "val", "validate", "valid", "test"];

/// Failure stage (FORMAT.md §4) of a Kinetics CSV row that cannot be used: its times are
/// not a window, it repeats an earlier row's clip, or its window starts after its video ends.
pub const STAGE_CSV: &str = "csv";
/// Failure stage of a CSV row whose video file is not under the video root.
pub const STAGE_MISSING: &str = "missing";

/// One video to shard.
#[derive(Clone, Debug, PartialEq)]
pub struct InputVideo {
    /// Unique id: `[split/]label/stem` for folders, `label/youtube_id_start_end` for CSV rows
    /// (for a row rejected before it names a clip, a sort key: see [`InputVideo::stored_id`]).
    pub video_id: String,
    /// The file, or `None` when a CSV row's file was not found or the row was rejected.
    pub path: Option<PathBuf>,
    pub label: Option<String>,
    pub split: Option<String>,
    /// Seconds of the source to keep (CSV rows matched to an untrimmed download).
    pub trim: Option<(f64, f64)>,
    /// Factors of variation from a factors CSV, name -> value.
    pub factors: BTreeMap<String, String>,
    /// The Kinetics CSV row this input came from, named in its failures.
    pub csv_row: Option<CsvRow>,
    /// Why this input fails before any decoding; it is listed in failures.parquet in its place.
    pub rejected: Option<Rejection>,
}

impl InputVideo {
    fn from_file(video_id: String, path: PathBuf, label: Option<String>) -> InputVideo {
        InputVideo {
            video_id,
            path: Some(path),
            label,
            split: None,
            trim: None,
            factors: BTreeMap::new(),
            csv_row: None,
            rejected: None,
        }
    }

    /// The id the video is stored under: `None` for a CSV row rejected before it named a
    /// clip, whose `video_id` is only a sort key unique to its line.
    pub fn stored_id(&self) -> Option<&str> {
        match &self.rejected {
            Some(r) if r.stage == STAGE_CSV => None,
            _ => Some(&self.video_id),
        }
    }
}

/// Where a CSV input came from: `train.csv line 7` (the header is line 1).
#[derive(Clone, Debug, PartialEq)]
pub struct CsvRow {
    /// The CSV's file name.
    pub file: String,
    pub line: u64,
}

impl fmt::Display for CsvRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}", self.file, self.line)
    }
}

/// Why an input is a failure before decoding: a failure stage ([`STAGE_CSV`],
/// [`STAGE_MISSING`]) and what is wrong, saying what to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    pub stage: &'static str,
    pub reason: String,
}

/// The whole input of a build.
#[derive(Debug, Default)]
pub struct Inputs {
    pub videos: Vec<InputVideo>,
    pub classes: Vec<String>,
    /// The folder the videos were found under: the class-folder root, or the CSV's video root.
    pub root: PathBuf,
    /// Files found that are not videos (by extension), relative to `root`, and folders inside
    /// class folders (`cat/extra/`): not built, named in the summary. Factors CSVs and the
    /// input CSV are not listed.
    pub skipped: Vec<String>,
}

/// The name of a factors CSV that `cvrl-shard build` picks up at the root of an input folder.
pub const FACTORS_FILE: &str = "factors.csv";

/// How the rows of a factors CSV matched the inputs.
#[derive(Debug, Default, PartialEq)]
pub struct FactorsMatch {
    /// Factor names (the CSV's columns after `path`).
    pub names: Vec<String>,
    /// Inputs that got factors.
    pub matched: usize,
    /// Paths of rows that name no input (the first few, and how many in all).
    pub unmatched: Vec<String>,
    pub unmatched_count: usize,
}

impl Inputs {
    /// Reads `source`: a directory of class folders, or a `.csv` file (videos looked up under
    /// `video_root`, default the CSV's folder).
    pub fn discover(source: &Path, video_root: Option<&Path>) -> Result<Inputs> {
        let meta = std::fs::metadata(source)
            .with_context(|| format!("cannot read input {}", source.display()))?;
        let mut inputs = if meta.is_dir() {
            from_folders(source)?
        } else if source.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
            let root = video_root
                .map(Path::to_path_buf)
                .unwrap_or_else(|| source.parent().unwrap_or(Path::new(".")).to_path_buf());
            from_csv(source, &root)?
        } else {
            bail!(
                "{}: expected a folder of class folders or a Kinetics .csv file",
                source.display()
            );
        };
        inputs.videos.sort_by(|a, b| a.video_id.cmp(&b.video_id));
        if let Some(w) = inputs.videos.windows(2).find(|w| w[0].video_id == w[1].video_id) {
            bail!("two inputs have the same video id {:?}; rename one of them", w[0].video_id);
        }
        Ok(inputs)
    }

    /// Labels the inputs from a factors CSV: a header row `path,<factor>,<factor>...`, then
    /// one row per video with its path relative to [`Inputs::root`] (`train/disc_spin/x.mp4`)
    /// and its value of each factor; an empty cell leaves that factor unset. Inputs without
    /// a row get no factors. A CSV none of whose rows names an input is an error (it
    /// belongs to another folder); some unmatched rows are reported, not fatal.
    pub fn attach_factors(&mut self, csv_path: &Path) -> Result<FactorsMatch> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(csv_path)
            .with_context(|| format!("cannot read factors file {}", csv_path.display()))?;
        let headers = reader
            .headers()
            .with_context(|| format!("{}: no header row", csv_path.display()))?
            .clone();
        let Some(path_col) = headers.iter().position(|h| h == "path") else {
            bail!(
                "{}: the header must have a `path` column (then one column per factor); found {:?}",
                csv_path.display(),
                headers.iter().collect::<Vec<_>>()
            );
        };
        let names: Vec<(usize, String)> = headers
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != path_col)
            .map(|(i, h)| (i, h.to_string()))
            .collect();
        let mut seen = BTreeSet::new();
        for (_, name) in &names {
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                bail!("{}: factor name {name:?} must be letters, digits and _", csv_path.display());
            }
            if !seen.insert(name.as_str()) {
                bail!("{}: factor {name:?} appears twice in the header", csv_path.display());
            }
        }
        let by_path: HashMap<PathBuf, usize> = self
            .videos
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                Some((v.path.as_ref()?.strip_prefix(&self.root).ok()?.to_path_buf(), i))
            })
            .collect();
        let mut report = FactorsMatch {
            names: names.iter().map(|(_, n)| n.clone()).collect(),
            ..FactorsMatch::default()
        };
        for (line, record) in reader.records().enumerate() {
            let record =
                record.with_context(|| format!("{}: bad row {}", csv_path.display(), line + 2))?;
            let rel = record.get(path_col).unwrap_or("");
            let Some(&i) = by_path.get(Path::new(rel)) else {
                report.unmatched_count += 1;
                if report.unmatched.len() < 5 {
                    report.unmatched.push(rel.to_string());
                }
                continue;
            };
            let factors = &mut self.videos[i].factors;
            if !factors.is_empty() {
                bail!("{}: row {}: {rel} is listed twice", csv_path.display(), line + 2);
            }
            for (col, name) in &names {
                if let Some(value) = record.get(*col).filter(|v| !v.is_empty()) {
                    factors.insert(name.clone(), value.to_string());
                }
            }
            report.matched += 1;
        }
        if report.matched == 0 && report.unmatched_count > 0 {
            bail!(
                "{}: none of its {} rows names a video under {} (first: {:?}); paths must be relative to that folder",
                csv_path.display(),
                report.unmatched_count,
                self.root.display(),
                report.unmatched[0]
            );
        }
        Ok(report)
    }

    /// Index of `label` in the class list.
    pub fn label_index(&self, label: &str) -> Option<i32> {
        self.classes.binary_search_by(|c| c.as_str().cmp(label)).ok().map(|i| i as i32)
    }
}

fn is_video(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        out.push(entry.with_context(|| format!("cannot list {}", dir.display()))?.path());
    }
    out.sort();
    Ok(out)
}

fn name_of(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn stem_of(p: &Path) -> String {
    p.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

impl Inputs {
    /// Notes an entry that is not built: a file that is not a video, or a folder where only
    /// videos are looked for. Factors CSVs are inputs of the build, not skipped files.
    fn skip(&mut self, path: &Path) {
        if name_of(path) == FACTORS_FILE {
            return;
        }
        let rel = path.strip_prefix(&self.root).unwrap_or(path).display().to_string();
        self.skipped.push(if path.is_dir() { format!("{rel}/") } else { rel });
    }

    /// The videos of one class folder; anything else in it is skipped.
    fn add_class_dir(
        &mut self,
        classes: &mut BTreeSet<String>,
        class_dir: &Path,
        split: Option<&str>,
    ) -> Result<()> {
        let label = name_of(class_dir);
        classes.insert(label.clone());
        let prefix = split.map(|s| format!("{s}/")).unwrap_or_default();
        for entry in sorted_entries(class_dir)? {
            if entry.is_file() && is_video(&entry) {
                let id = format!("{prefix}{label}/{}", stem_of(&entry));
                let mut video = InputVideo::from_file(id, entry, Some(label.clone()));
                video.split = split.map(str::to_string);
                self.videos.push(video);
            } else {
                self.skip(&entry);
            }
        }
        Ok(())
    }
}

/// `root/<class>/<video>`, optionally `root/<split>/<class>/<video>`; videos directly in
/// `root` get no label.
fn from_folders(root: &Path) -> Result<Inputs> {
    let entries = sorted_entries(root)?;
    let dirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    let split_layout =
        !dirs.is_empty() && dirs.iter().all(|d| SPLIT_DIRS.contains(&name_of(d).as_str()));
    let mut inputs = Inputs { root: root.to_path_buf(), ..Inputs::default() };
    let mut classes = BTreeSet::new();
    for dir in &dirs {
        if !split_layout {
            inputs.add_class_dir(&mut classes, dir, None)?;
            continue;
        }
        let split = normalise_split(&name_of(dir));
        for entry in sorted_entries(dir)? {
            if entry.is_dir() {
                inputs.add_class_dir(&mut classes, &entry, Some(&split))?;
            } else {
                inputs.skip(&entry);
            }
        }
    }
    for entry in entries.iter().filter(|p| !p.is_dir()) {
        if entry.is_file() && is_video(entry) {
            inputs.videos.push(InputVideo::from_file(stem_of(entry), entry.clone(), None));
        } else {
            inputs.skip(entry);
        }
    }
    if inputs.videos.is_empty() {
        let others = match inputs.skipped.first() {
            Some(first) => format!("; {} other files, such as {first}", inputs.skipped.len()),
            None => String::new(),
        };
        bail!(
            "{}: no video files found (expected <class>/<video>.mp4; extensions: {}){others}",
            root.display(),
            VIDEO_EXTENSIONS.join(", ")
        );
    }
    inputs.classes = classes.into_iter().collect();
    inputs.skipped.sort();
    Ok(inputs)
}

fn normalise_split(s: &str) -> String {
    match s {
        "validate" | "valid" => "val".to_string(),
        other => other.to_string(),
    }
}

/// The columns of a Kinetics CSV, found by name in its header: any order, any case.
struct CsvColumns {
    youtube_id: usize,
    time_start: usize,
    time_end: usize,
    label: Option<usize>,
    split: Option<usize>,
}

impl CsvColumns {
    fn find(headers: &csv::StringRecord) -> Option<CsvColumns> {
        let col = |name: &str| {
            headers.iter().position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case(name))
        };
        Some(CsvColumns {
            youtube_id: col("youtube_id")?,
            time_start: col("time_start")?,
            time_end: col("time_end")?,
            label: col("label"),
            split: col("split"),
        })
    }

    /// The seconds of a row's window, or why they are not one.
    fn window(&self, record: &csv::StringRecord) -> Result<(f64, f64), String> {
        let time = |col: usize, name: &str| -> Result<f64, String> {
            let raw = record.get(col).unwrap_or("");
            if raw.is_empty() {
                return Err(format!("no {name}"));
            }
            match raw.parse::<f64>() {
                Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
                _ => Err(format!("{name} {raw:?} is not a number of seconds")),
            }
        };
        let (start, end) = (time(self.time_start, "time_start")?, time(self.time_end, "time_end")?);
        if end <= start {
            return Err(format!("time_end {end} is not after time_start {start}"));
        }
        Ok((start, end))
    }
}

/// A cell, `None` when absent or empty.
fn cell(record: &csv::StringRecord, col: Option<usize>) -> Option<String> {
    col.and_then(|c| record.get(c)).filter(|v| !v.is_empty()).map(str::to_string)
}

/// A Kinetics CSV: `label,youtube_id,time_start,time_end,split[,is_cc]` with a header row.
/// A row matches `<youtube_id>_<start:06>_<end:06>.<ext>` (already trimmed) or
/// `<youtube_id>.<ext>` (trimmed to the window while decoding), anywhere under `root`.
/// Every row becomes one input; a row that cannot be used is a [`Rejection`].
fn from_csv(csv_path: &Path, root: &Path) -> Result<Inputs> {
    let (files, skipped) = index_files(root, csv_path)?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_path(csv_path)
        .with_context(|| format!("cannot read {}", csv_path.display()))?;
    let headers =
        reader.headers().with_context(|| format!("{}: no header row", csv_path.display()))?.clone();
    let Some(cols) = CsvColumns::find(&headers) else {
        bail!(
            "{}: header must have youtube_id, time_start, time_end (and label, split); found {:?}",
            csv_path.display(),
            headers.iter().collect::<Vec<_>>()
        );
    };
    let mut rows = CsvRows {
        cols,
        file: name_of(csv_path),
        root,
        files,
        first_row: HashMap::new(),
        classes: BTreeSet::new(),
    };
    let mut inputs = Inputs { root: root.to_path_buf(), skipped, ..Inputs::default() };
    for result in reader.records() {
        let video = match result {
            Ok(record) => rows.row(&record),
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                return Err(e).with_context(|| format!("cannot read {}", csv_path.display()));
            }
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                let mut video = rows.input(line, None, String::new());
                video.rejected = reject(format!("unreadable row ({e})"), "");
                video
            }
        };
        inputs.videos.push(video);
    }
    if inputs.videos.is_empty() {
        bail!("{}: no rows", csv_path.display());
    }
    inputs.classes = rows.classes.into_iter().collect();
    Ok(inputs)
}

/// A [`STAGE_CSV`] rejection of a row naming `youtube_id` (may be empty).
fn reject(why: String, youtube_id: &str) -> Option<Rejection> {
    let id = if youtube_id.is_empty() { String::new() } else { format!(" ({youtube_id})") };
    Some(Rejection { stage: STAGE_CSV, reason: format!("{why}{id}; fix or delete the row") })
}

/// The state of reading a Kinetics CSV's rows into inputs.
struct CsvRows<'a> {
    cols: CsvColumns,
    file: String,
    root: &'a Path,
    files: HashMap<String, PathBuf>,
    /// Clip name (`<youtube_id>_<start>_<end>`) -> the first line naming it, and its label.
    first_row: HashMap<String, (u64, Option<String>)>,
    classes: BTreeSet<String>,
}

impl CsvRows<'_> {
    /// An input for line `line`, with a sort key unique to the line as its id until the row
    /// names a clip.
    fn input(&self, line: u64, label: Option<String>, youtube_id: String) -> InputVideo {
        let label_prefix = label.as_deref().map(|l| format!("{l}/")).unwrap_or_default();
        InputVideo {
            video_id: format!("{label_prefix}{youtube_id}#line{line}"),
            path: None,
            label,
            split: None,
            trim: None,
            factors: BTreeMap::new(),
            csv_row: Some(CsvRow { file: self.file.clone(), line }),
            rejected: None,
        }
    }

    fn row(&mut self, record: &csv::StringRecord) -> InputVideo {
        let line = record.position().map_or(0, csv::Position::line);
        let label = cell(record, self.cols.label);
        if let Some(l) = &label {
            self.classes.insert(l.clone());
        }
        let youtube_id = cell(record, Some(self.cols.youtube_id)).unwrap_or_default();
        let mut video = self.input(line, label.clone(), youtube_id.clone());
        video.split = cell(record, self.cols.split).map(|s| normalise_split(&s));
        let window = if youtube_id.is_empty() {
            Err("no youtube_id".into())
        } else {
            self.cols.window(record)
        };
        let (start, end) = match window {
            Ok(w) => w,
            Err(why) => {
                video.rejected = reject(why, &youtube_id);
                return video;
            }
        };
        let clip = format!("{youtube_id}_{:06}_{:06}", start as u64, end as u64);
        if let Some((first, first_label)) = self.first_row.get(&clip) {
            let labelled = match first_label {
                Some(l) if *first_label != label => format!(", labelled {l:?}"),
                _ => String::new(),
            };
            let why = format!(
                "repeats the clip {clip} of line {first}{labelled}, which is stored once, from line {first}"
            );
            video.rejected = reject(why, "");
            return video;
        }
        self.first_row.insert(clip.clone(), (line, label));
        video.video_id = format!(
            "{}{clip}",
            video.label.as_deref().map(|l| format!("{l}/")).unwrap_or_default()
        );
        (video.path, video.trim) = match (self.files.get(&clip), self.files.get(&youtube_id)) {
            (Some(p), _) => (Some(p.clone()), None),
            (None, Some(p)) => (Some(p.clone()), Some((start, end))),
            (None, None) => (None, None),
        };
        if video.path.is_none() {
            let reason = format!(
                "no file {youtube_id}.<ext> or {clip}.<ext> under {} (is the download missing?)",
                self.root.display()
            );
            video.rejected = Some(Rejection { stage: STAGE_MISSING, reason });
        }
        video
    }
}

/// Every video file under `root` (recursively) by file stem, and the other files there
/// (relative to `root`), less the CSV being read.
fn index_files(root: &Path, csv_path: &Path) -> Result<(HashMap<String, PathBuf>, Vec<String>)> {
    let mut out = HashMap::new();
    let mut skipped = Vec::new();
    let csv_file = csv_path.canonicalize().ok();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for path in sorted_entries(&dir)? {
            if path.is_dir() {
                stack.push(path);
            } else if is_video(&path) {
                out.entry(stem_of(&path)).or_insert(path);
            } else if name_of(&path) != FACTORS_FILE && path.canonicalize().ok() != csv_file {
                skipped.push(path.strip_prefix(root).unwrap_or(&path).display().to_string());
            }
        }
    }
    skipped.sort();
    Ok((out, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn class_folders_give_sorted_ids_labels_and_classes() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("b/z.mp4"));
        touch(&d.path().join("a/y.webm"));
        touch(&d.path().join("a/notes.txt"));
        let inputs = Inputs::discover(d.path(), None).unwrap();
        let ids: Vec<_> = inputs.videos.iter().map(|v| v.video_id.as_str()).collect();
        assert_eq!(ids, ["a/y", "b/z"]);
        assert_eq!(inputs.classes, ["a", "b"]);
        assert_eq!(inputs.label_index("b"), Some(1));
    }

    #[test]
    fn split_folders_are_recognised() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("train/cat/1.mp4"));
        touch(&d.path().join("validate/dog/2.mp4"));
        let inputs = Inputs::discover(d.path(), None).unwrap();
        assert_eq!(inputs.videos[1].split.as_deref(), Some("val"));
        assert_eq!(inputs.videos[1].video_id, "val/dog/2");
        assert_eq!(inputs.classes, ["cat", "dog"]);
    }

    #[test]
    fn csv_rows_match_trimmed_then_untrimmed_files_and_keep_missing_ones() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("dl/abc_000010_000020.mp4"));
        touch(&d.path().join("dl/sub/def.mkv"));
        let csv = d.path().join("k.csv");
        std::fs::write(&csv, "label,youtube_id,time_start,time_end,split\nrun,abc,10,20,train\njump,def,3,13,val\nrun,ghi,0,10,train\n").unwrap();
        let inputs = Inputs::discover(&csv, Some(&d.path().join("dl"))).unwrap();
        assert_eq!(inputs.classes, ["jump", "run"]);
        let by_id: HashMap<_, _> = inputs.videos.iter().map(|v| (v.video_id.as_str(), v)).collect();
        assert_eq!(by_id["run/abc_000010_000020"].trim, None);
        assert!(by_id["run/abc_000010_000020"].path.is_some());
        assert_eq!(by_id["jump/def_000003_000013"].trim, Some((3.0, 13.0)));
        assert_eq!(by_id["jump/def_000003_000013"].split.as_deref(), Some("val"));
        assert_eq!(by_id["run/ghi_000000_000010"].path, None);
    }

    #[test]
    fn csv_rows_that_cannot_be_used_are_kept_as_rejections_naming_their_line() {
        let d = tempfile::tempdir().unwrap();
        for f in ["aaa", "bbb", "ccc", "ddd"] {
            touch(&d.path().join(format!("{f}.mp4")));
        }
        let csv = d.path().join("k.csv");
        // Another column order, header case and a byte-order mark; quoted labels with a
        // comma and over two lines.
        let text = "\u{feff}Youtube_ID,time_end,LABEL,split,time_start\n\
                    aaa,10,\"dancing, ballet\",train,0\n\
                    bbb,abc,jumping,train,0\n\
                    ccc,5,jumping,train,5\n\
                    ddd,nan,jumping,train,0\n\
                    aaa,10,jumping,train,0\n\
                    aaa,10,\"dancing, ballet\",train,0\n\
                    eee,3,\"two\nlines\",val,1\n\
                    ,10,jumping,train,0\n\
                    ddd,20,jumping\n";
        std::fs::write(&csv, text).unwrap();
        let inputs = Inputs::discover(&csv, None).unwrap();
        let by_line: HashMap<u64, &InputVideo> =
            inputs.videos.iter().map(|v| (v.csv_row.as_ref().unwrap().line, v)).collect();
        assert_eq!(by_line.len(), 9, "one input per row");
        let ok = by_line[&2];
        assert_eq!(ok.video_id, "dancing, ballet/aaa_000000_000010");
        assert_eq!((ok.trim, ok.rejected.as_ref()), (Some((0.0, 10.0)), None));
        assert_eq!(ok.csv_row.as_ref().unwrap().to_string(), "k.csv line 2");
        let reason = |line: u64| {
            let r = by_line[&line].rejected.as_ref().unwrap_or_else(|| panic!("line {line}"));
            assert_eq!(r.stage, STAGE_CSV, "line {line}");
            assert_eq!(by_line[&line].stored_id(), None);
            r.reason.clone()
        };
        assert!(reason(3).starts_with("time_end \"abc\" is not a number of seconds (bbb)"));
        assert!(reason(4).starts_with("time_end 5 is not after time_start 5 (ccc)"));
        assert!(reason(5).starts_with("time_end \"nan\" is not a number"));
        assert!(
            reason(6).starts_with(
                "repeats the clip aaa_000000_000010 of line 2, labelled \"dancing, ballet\""
            ),
            "{}",
            reason(6)
        );
        assert!(reason(7).contains("of line 2, which"), "same label: {}", reason(7));
        let missing = by_line[&8];
        assert_eq!(missing.video_id, "two\nlines/eee_000001_000003");
        assert_eq!(missing.rejected.as_ref().unwrap().stage, STAGE_MISSING);
        assert!(reason(10).starts_with("no youtube_id"), "line after a two-line row");
        assert!(reason(11).starts_with("no time_start (ddd)"), "short row: {}", reason(11));
        assert_eq!(inputs.classes, ["dancing, ballet", "jumping", "two\nlines"]);
    }

    #[test]
    fn a_row_that_is_not_utf8_is_rejected_and_the_rows_after_it_are_read() {
        let d = tempfile::tempdir().unwrap();
        let csv = d.path().join("k.csv");
        let mut bytes = b"label,youtube_id,time_start,time_end\nrun,a\xff,0,1\n".to_vec();
        bytes.extend_from_slice(b"run,b,0,1\n");
        std::fs::write(&csv, bytes).unwrap();
        let inputs = Inputs::discover(&csv, None).unwrap();
        let line = |v: &InputVideo| v.csv_row.as_ref().unwrap().line;
        let bad = inputs.videos.iter().find(|v| line(v) == 2).unwrap();
        let r = bad.rejected.as_ref().unwrap();
        assert!(r.stage == STAGE_CSV && r.reason.contains("invalid UTF-8"), "{r:?}");
        let good = inputs.videos.iter().find(|v| line(v) == 3).unwrap();
        assert_eq!(good.rejected.as_ref().map(|r| r.stage), Some(STAGE_MISSING));
    }

    #[test]
    fn files_that_are_not_videos_are_listed_relative_to_the_root() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("cat/a.mp4"));
        touch(&d.path().join("cat/notes.txt"));
        touch(&d.path().join("cat/extra/b.mp4"));
        touch(&d.path().join("cover.jpg"));
        touch(&d.path().join(FACTORS_FILE));
        let inputs = Inputs::discover(d.path(), None).unwrap();
        assert_eq!(inputs.skipped, ["cat/extra/", "cat/notes.txt", "cover.jpg"]);
        let csv = d.path().join("k.csv");
        std::fs::write(&csv, "label,youtube_id,time_start,time_end\ncat,a,0,1\n").unwrap();
        let inputs = Inputs::discover(&csv, None).unwrap();
        assert_eq!(inputs.skipped, ["cat/notes.txt", "cover.jpg"], "not the CSV itself");
    }

    #[test]
    fn a_csv_without_the_kinetics_columns_is_refused_with_the_columns_found() {
        let d = tempfile::tempdir().unwrap();
        let csv = d.path().join("k.csv");
        std::fs::write(&csv, "a,b\n1,2\n").unwrap();
        let err = format!("{:#}", Inputs::discover(&csv, None).unwrap_err());
        assert!(err.contains("youtube_id") && err.contains("\"a\""), "{err}");
    }

    #[test]
    fn a_factors_csv_labels_the_videos_it_names_by_relative_path() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("train/disc_spin/a.mp4"));
        touch(&d.path().join("val/ring_zoom/b.mp4"));
        touch(&d.path().join("val/ring_zoom/c.mp4"));
        let csv = d.path().join(FACTORS_FILE);
        std::fs::write(
            &csv,
            "path,object,motion,colour\ntrain/disc_spin/a.mp4,disc,spin,red\nval/ring_zoom/b.mp4,ring,zoom,\ngone/x.mp4,disc,spin,red\n",
        )
        .unwrap();
        let mut inputs = Inputs::discover(d.path(), None).unwrap();
        let m = inputs.attach_factors(&csv).unwrap();
        assert_eq!((m.matched, m.unmatched_count), (2, 1));
        assert_eq!(m.names, ["object", "motion", "colour"]);
        assert_eq!(m.unmatched, ["gone/x.mp4"]);
        let f = |i: usize| inputs.videos[i].factors.clone().into_iter().collect::<Vec<_>>();
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(f(0), [kv("colour", "red"), kv("motion", "spin"), kv("object", "disc")]);
        assert_eq!(f(1), [kv("motion", "zoom"), kv("object", "ring")], "empty cell: unset");
        assert!(inputs.videos[2].factors.is_empty());
    }

    #[test]
    fn a_factors_csv_for_another_folder_or_without_path_is_refused() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("cat/a.mp4"));
        let csv = d.path().join("f.csv");
        std::fs::write(&csv, "path,object\nother/a.mp4,disc\n").unwrap();
        let mut inputs = Inputs::discover(d.path(), None).unwrap();
        let err = format!("{:#}", inputs.attach_factors(&csv).unwrap_err());
        assert!(err.contains("none of its 1 rows") && err.contains("f.csv"), "{err}");
        std::fs::write(&csv, "file,object\ncat/a.mp4,disc\n").unwrap();
        let err = format!("{:#}", inputs.attach_factors(&csv).unwrap_err());
        assert!(err.contains("`path` column"), "{err}");
        std::fs::write(&csv, "path,object,object\ncat/a.mp4,disc,ring\n").unwrap();
        let err = format!("{:#}", inputs.attach_factors(&csv).unwrap_err());
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn an_empty_folder_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let err = format!("{:#}", Inputs::discover(d.path(), None).unwrap_err());
        assert!(err.contains("no video files"), "{err}");
    }
}
