//! Finding the videos to shard: a Kinetics class-folder tree, or a Kinetics CSV plus the
//! folder holding its downloads.
//!
//! The result is one ordered list of [`InputVideo`]s (sorted by video id, so every run and
//! every `--part` of a cluster job sees the same order) and the class list of the whole
//! dataset. CSV rows whose file cannot be found stay in the list with no path, so they are
//! reported as failures in their place instead of silently vanishing.
//!
//! A factors CSV ([`Inputs::attach_factors`], written by `cvrl-shard synth`) labels videos
//! with their factors of variation; the build stores them as the index's `factor_<name>`
//! columns.

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// File extensions treated as videos in a class-folder tree.
pub const VIDEO_EXTENSIONS: &[&str] =
    &["mp4", "webm", "mkv", "avi", "mov", "m4v", "mpg", "mpeg", "flv", "ts", "3gp", "ogv"];

/// Folder names recognised as splits above the class folders (`train/<class>/x.mp4`).
const SPLIT_DIRS: &[&str] = &["train", "val", "validate", "valid", "test"];

/// One video to shard.
#[derive(Clone, Debug, PartialEq)]
pub struct InputVideo {
    /// Unique id: `[split/]label/stem` for folders, `label/youtube_id_start_end` for CSV rows.
    pub video_id: String,
    /// The file, or `None` when a CSV row's file was not found.
    pub path: Option<PathBuf>,
    pub label: Option<String>,
    pub split: Option<String>,
    /// Seconds of the source to keep (CSV rows matched to an untrimmed download).
    pub trim: Option<(f64, f64)>,
    /// Factors of variation from a factors CSV, name -> value.
    pub factors: BTreeMap<String, String>,
}

/// The whole input of a build.
#[derive(Debug, Default)]
pub struct Inputs {
    pub videos: Vec<InputVideo>,
    pub classes: Vec<String>,
    /// The folder the videos were found under: the class-folder root, or the CSV's video root.
    pub root: PathBuf,
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

/// `root/<class>/<video>`, optionally `root/<split>/<class>/<video>`; videos directly in
/// `root` get no label.
fn from_folders(root: &Path) -> Result<Inputs> {
    let entries = sorted_entries(root)?;
    let dirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    let split_layout =
        !dirs.is_empty() && dirs.iter().all(|d| SPLIT_DIRS.contains(&name_of(d).as_str()));
    let mut videos = Vec::new();
    let mut classes = BTreeSet::new();
    let mut add_class_dir = |class_dir: &Path,
                             split: Option<String>,
                             videos: &mut Vec<InputVideo>|
     -> Result<()> {
        let label = name_of(class_dir);
        classes.insert(label.clone());
        for file in sorted_entries(class_dir)?.into_iter().filter(|p| p.is_file() && is_video(p)) {
            let prefix = split.as_deref().map(|s| format!("{s}/")).unwrap_or_default();
            videos.push(InputVideo {
                video_id: format!("{prefix}{label}/{}", stem_of(&file)),
                path: Some(file),
                label: Some(label.clone()),
                split: split.clone(),
                trim: None,
                factors: BTreeMap::new(),
            });
        }
        Ok(())
    };
    for dir in &dirs {
        if split_layout {
            for class_dir in sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()) {
                add_class_dir(&class_dir, Some(normalise_split(&name_of(dir))), &mut videos)?;
            }
        } else {
            add_class_dir(dir, None, &mut videos)?;
        }
    }
    for file in entries.iter().filter(|p| p.is_file() && is_video(p)) {
        videos.push(InputVideo {
            video_id: stem_of(file),
            path: Some(file.clone()),
            label: None,
            split: None,
            trim: None,
            factors: BTreeMap::new(),
        });
    }
    if videos.is_empty() {
        bail!(
            "{}: no video files found (expected <class>/<video>.mp4; extensions: {})",
            root.display(),
            VIDEO_EXTENSIONS.join(", ")
        );
    }
    Ok(Inputs { videos, classes: classes.into_iter().collect(), root: root.to_path_buf() })
}

fn normalise_split(s: &str) -> String {
    match s {
        "validate" | "valid" => "val".to_string(),
        other => other.to_string(),
    }
}

/// A Kinetics CSV: `label,youtube_id,time_start,time_end,split[,is_cc]` with a header row.
/// A row matches `<youtube_id>_<start:06>_<end:06>.<ext>` (already trimmed) or
/// `<youtube_id>.<ext>` (trimmed to the window while decoding), anywhere under `root`.
fn from_csv(csv_path: &Path, root: &Path) -> Result<Inputs> {
    let files = index_files(root)?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(csv_path)
        .with_context(|| format!("cannot read {}", csv_path.display()))?;
    let headers =
        reader.headers().with_context(|| format!("{}: no header row", csv_path.display()))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(yt), Some(ts), Some(te)) = (col("youtube_id"), col("time_start"), col("time_end"))
    else {
        bail!(
            "{}: header must have youtube_id, time_start, time_end (and label, split); found {:?}",
            csv_path.display(),
            headers.iter().collect::<Vec<_>>()
        );
    };
    let (label_col, split_col) = (col("label"), col("split"));
    let mut videos = Vec::new();
    let mut classes = BTreeSet::new();
    for (line, record) in reader.records().enumerate() {
        let record =
            record.with_context(|| format!("{}: bad row {}", csv_path.display(), line + 2))?;
        let field = |i: usize| record.get(i).unwrap_or("").to_string();
        let num = |i: usize| -> Result<f64> {
            field(i).parse().with_context(|| {
                format!("{}: row {}: {:?} is not a number", csv_path.display(), line + 2, field(i))
            })
        };
        let (id, start, end) = (field(yt), num(ts)?, num(te)?);
        let label = label_col.map(field).filter(|l| !l.is_empty());
        if let Some(l) = &label {
            classes.insert(l.clone());
        }
        let trimmed = format!("{id}_{:06}_{:06}", start as u64, end as u64);
        let (path, trim) = match (files.get(&trimmed), files.get(&id)) {
            (Some(p), _) => (Some(p.clone()), None),
            (None, Some(p)) => (Some(p.clone()), Some((start, end))),
            (None, None) => (None, None),
        };
        let label_prefix = label.as_deref().map(|l| format!("{l}/")).unwrap_or_default();
        videos.push(InputVideo {
            video_id: format!("{label_prefix}{trimmed}"),
            path,
            label,
            split: split_col.map(field).filter(|s| !s.is_empty()).map(|s| normalise_split(&s)),
            trim,
            factors: BTreeMap::new(),
        });
    }
    if videos.is_empty() {
        bail!("{}: no rows", csv_path.display());
    }
    Ok(Inputs { videos, classes: classes.into_iter().collect(), root: root.to_path_buf() })
}

/// Every video file under `root` (recursively) by file stem.
fn index_files(root: &Path) -> Result<HashMap<String, PathBuf>> {
    let mut out = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for path in sorted_entries(&dir)? {
            if path.is_dir() {
                stack.push(path);
            } else if is_video(&path) {
                out.entry(stem_of(&path)).or_insert(path);
            }
        }
    }
    Ok(out)
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
