//! `manifest.json`: the build parameters, class list, format version and file list of a
//! shard set (`FORMAT.md#5-manifestjson`), and the file names of a set and of a part of one
//! (`FORMAT.md#1-a-shard-set`).

use crate::codec::PredictorMode;
use crate::error::{FormatError, IoContext, Result};
use crate::index::{FailureRow, VideoRow};
use crate::pixel::PixelFormat;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// Value of the manifest's `format` field.
pub const FORMAT_NAME: &str = "cvrl-shards";

/// How the frames were decoded and stored; equal for every part of one set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BuildParams {
    /// Frames scaled so the shorter side is this many pixels; `None` kept the source size.
    pub short_side: Option<u32>,
    /// Constant frame rate frames were resampled to; `None` kept each source's average rate.
    pub fps: Option<f64>,
    pub pixel_format: PixelFormat,
    /// Frames per chunk (the last chunk of a video may hold fewer).
    pub chunk_frames: u32,
    pub zstd_level: i32,
    /// Predictor mode of the chunk codec; an unknown name in a manifest is an error.
    pub predictor: PredictorMode,
    /// Target shard size in bytes; a shard closes once it reaches this.
    pub shard_bytes: u64,
}

/// Which slice of the inputs a part build covers: videos whose position in the sorted input
/// list is `index` modulo `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub index: u32,
    pub count: u32,
}

impl Part {
    /// Parses `i/n` with `0 <= i < n`.
    pub fn parse(s: &str) -> std::result::Result<Part, String> {
        let err = || format!("--part {s:?}: expected I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(err)?;
        let (index, count) =
            (i.trim().parse().map_err(|_| err())?, n.trim().parse().map_err(|_| err())?);
        if count == 0 || index >= count {
            return Err(err());
        }
        Ok(Part { index, count })
    }

    /// File name prefix of this part's files: `part-0001-of-0004.`.
    pub fn prefix(self) -> String {
        format!("part-{:04}-of-{:04}.", self.index, self.count)
    }
}

/// File names of a set, or of one part of a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetFiles {
    prefix: String,
}

impl SetFiles {
    pub fn new(part: Option<Part>) -> Self {
        SetFiles { prefix: part.map(Part::prefix).unwrap_or_default() }
    }
    pub fn manifest(&self) -> String {
        format!("{}manifest.json", self.prefix)
    }
    pub fn index(&self) -> String {
        format!("{}index.parquet", self.prefix)
    }
    pub fn failures(&self) -> String {
        format!("{}failures.parquet", self.prefix)
    }
    pub fn shard(&self, n: usize) -> String {
        format!("{}shard-{n:05}.cvrs", self.prefix)
    }
}

/// One shard file of the set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub file: String,
    pub bytes: u64,
    pub videos: u64,
}

/// Totals over the set, for a quick look without opening the index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub videos: u64,
    pub failures: u64,
    pub frames: u64,
    pub source_bytes: u64,
    pub stored_bytes: u64,
}

/// Contents of `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// The program and version that wrote the set.
    pub tool: String,
    pub params: BuildParams,
    /// Class names; a video's `label_index` indexes this list.
    pub classes: Vec<String>,
    pub part: Option<Part>,
    pub index: String,
    pub failures: String,
    pub shards: Vec<ShardInfo>,
    pub counts: Counts,
}

impl Manifest {
    /// The manifest of a set (or of `part` of one) that `tool` wrote with `params`: this
    /// format's name and version, the standard file names, and totals counted from `videos`,
    /// `failures` and `shards`.
    pub fn new(
        tool: impl Into<String>,
        params: BuildParams,
        classes: Vec<String>,
        part: Option<Part>,
        shards: Vec<ShardInfo>,
        videos: &[VideoRow],
        failures: &[FailureRow],
    ) -> Manifest {
        let files = SetFiles::new(part);
        let counts = Counts {
            videos: videos.len() as u64,
            failures: failures.len() as u64,
            frames: videos.iter().map(|r| u64::from(r.num_frames)).sum(),
            source_bytes: videos.iter().map(|r| r.source_bytes).sum(),
            stored_bytes: shards.iter().map(|s| s.bytes).sum(),
        };
        Manifest {
            format: FORMAT_NAME.to_owned(),
            format_version: crate::shard::FORMAT_VERSION,
            tool: tool.into(),
            params,
            classes,
            part,
            index: files.index(),
            failures: files.failures(),
            shards,
            counts,
        }
    }

    /// Reads and checks a manifest: its format name and version must be ones this build reads.
    pub fn load(path: &Path) -> Result<Manifest> {
        let bytes = std::fs::read(path).at(path)?;
        let bad = |reason: String| FormatError::BadManifest { path: path.to_path_buf(), reason };
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if m.format != FORMAT_NAME {
            return Err(bad(format!("format {:?}, expected {FORMAT_NAME:?}", m.format)));
        }
        if m.format_version != crate::shard::FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: m.format_version,
                supported: crate::shard::FORMAT_VERSION,
            });
        }
        let names = [("index", &m.index), ("failures", &m.failures)]
            .into_iter()
            .chain(m.shards.iter().map(|s| ("shards[].file", &s.file)));
        for (field, name) in names {
            if Path::new(name).file_name().is_none_or(|n| n != name.as_str()) {
                return Err(bad(format!(
                    "{field} {name:?} is not a file name in the set's folder"
                )));
            }
        }
        Ok(m)
    }

    /// Writes the manifest atomically (pretty JSON).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("manifest serialises");
        crate::atomic::atomic_write(path, |f| f.write_all(&json))
    }
}

impl BuildParams {
    /// `(parameter, value in self, value in other)`, as JSON text, for each parameter that
    /// differs: what a refusal to mix two builds names.
    pub fn differences(&self, other: &BuildParams) -> Vec<(String, String, String)> {
        let (a, b) = (serde_json::to_value(self), serde_json::to_value(other));
        let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b) else {
            return Vec::new();
        };
        a.iter()
            .filter(|(k, v)| b.get(k.as_str()) != Some(v))
            .map(|(k, v)| {
                let other = b.get(k.as_str()).map(ToString::to_string).unwrap_or_default();
                (k.clone(), v.to_string(), other)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(predictor: PredictorMode) -> BuildParams {
        BuildParams {
            short_side: Some(128),
            fps: None,
            pixel_format: PixelFormat::Yuv420p,
            chunk_frames: 8,
            zstd_level: 1,
            predictor,
            shard_bytes: 1 << 30,
        }
    }

    #[test]
    fn every_predictor_is_stored_by_its_name_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        for mode in [
            PredictorMode::Raw,
            PredictorMode::Temporal,
            PredictorMode::Med,
            PredictorMode::Adaptive,
            PredictorMode::Plain,
            PredictorMode::Interleaved,
        ] {
            let m = Manifest::new("test", params(mode), vec![], None, vec![], &[], &[]);
            m.save(&path).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains(&format!("\"predictor\": \"{mode}\"")), "{text}");
            assert_eq!(Manifest::load(&path).unwrap(), m);
        }
    }

    #[test]
    fn a_manifest_with_an_unknown_predictor_is_refused_naming_the_file_and_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        let m = Manifest::new("test", params(PredictorMode::Med), vec![], None, vec![], &[], &[]);
        m.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"med\"", "\"fast\"")).unwrap();
        let err = Manifest::load(&path).unwrap_err();
        assert!(matches!(err, FormatError::BadManifest { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("manifest.json") && msg.contains("`fast`"), "{msg}");
    }

    #[test]
    fn part_parses_and_names_files() {
        let p = Part::parse("1/4").unwrap();
        assert_eq!(p, Part { index: 1, count: 4 });
        assert_eq!(SetFiles::new(Some(p)).shard(3), "part-0001-of-0004.shard-00003.cvrs");
        assert_eq!(SetFiles::new(None).index(), "index.parquet");
        for bad in ["4/4", "1", "a/b", "0/0", "-1/3"] {
            assert!(Part::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn differences_name_each_parameter_that_differs() {
        let a = BuildParams {
            short_side: Some(64),
            fps: None,
            pixel_format: PixelFormat::Yuv420p,
            chunk_frames: 8,
            zstd_level: 1,
            predictor: crate::codec::PredictorMode::Adaptive,
            shard_bytes: 1 << 30,
        };
        assert!(a.differences(&a.clone()).is_empty());
        let b = BuildParams { short_side: Some(48), fps: Some(25.0), ..a.clone() };
        let mut d = a.differences(&b);
        d.sort();
        let row = |k: &str, x: &str, y: &str| (k.to_string(), x.to_string(), y.to_string());
        assert_eq!(d, [row("fps", "null", "25.0"), row("short_side", "64", "48")]);
    }
}
