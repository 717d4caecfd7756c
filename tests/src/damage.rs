//! Every way the tests damage a shard set's `manifest.json` or `index.parquet`, and what an
//! error about each must say: one list, so that `ShardSet::open`, `cvrl-inspect`,
//! `cvrl-train` and `cvrl-eval` are all fed the same damage.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// What every refusal of a damaged manifest or index tells the user to do.
pub const WHAT_TO_DO: &str = "copy it again, or rebuild it with `cvrl-shard build`";

/// One damage: its name, the file it damages and the text the error must hold besides the
/// file's name and [`WHAT_TO_DO`].
pub struct Damage {
    pub name: &'static str,
    pub file: &'static str,
    pub says: &'static str,
    apply: fn(&Path),
}

/// Rewrites `dir/manifest.json` through `edit` of its JSON.
fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(m.as_object_mut().expect("a manifest is an object"));
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

/// Cuts `dir/name` to `keep(len)` bytes.
fn truncate(dir: &Path, name: &str, keep: fn(usize) -> usize) {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..keep(bytes.len())]).unwrap();
}

pub const DAMAGES: &[Damage] = &[
    Damage {
        name: "manifest cut in half",
        file: "manifest.json",
        says: "bad manifest: EOF while parsing",
        apply: |d| truncate(d, "manifest.json", |n| n / 2),
    },
    Damage {
        name: "manifest of binary bytes",
        file: "manifest.json",
        says: "bad manifest: expected value at line 1 column 1",
        apply: |d| std::fs::write(d.join("manifest.json"), [0xff, 0xfe, 0x00, 0x9c]).unwrap(),
    },
    Damage {
        name: "manifest without params",
        file: "manifest.json",
        says: "bad manifest: missing field `params`",
        apply: |d| edit_manifest(d, |m| drop(m.remove("params"))),
    },
    Damage {
        name: "manifest with classes of the wrong type",
        file: "manifest.json",
        says: "bad manifest: invalid type: integer `5`, expected a sequence",
        apply: |d| edit_manifest(d, |m| drop(m.insert("classes".into(), 5.into()))),
    },
    Damage {
        name: "manifest with a version of the wrong type",
        file: "manifest.json",
        says: "bad manifest: invalid type: string \"1\", expected u32",
        apply: |d| edit_manifest(d, |m| drop(m.insert("format_version".into(), "1".into()))),
    },
    Damage {
        name: "manifest naming an index outside the set",
        file: "manifest.json",
        says: "bad manifest: index \"../index.parquet\" is not a file name in the set's folder",
        apply: |d| edit_manifest(d, |m| drop(m.insert("index".into(), "../index.parquet".into()))),
    },
    Damage {
        name: "index cut in half",
        file: "index.parquet",
        says: "bad index: not a readable Parquet file",
        apply: |d| truncate(d, "index.parquet", |n| n / 2),
    },
    Damage {
        name: "index cut to nothing",
        file: "index.parquet",
        says: "bad index: not a readable Parquet file",
        apply: |d| truncate(d, "index.parquet", |_| 0),
    },
    Damage {
        name: "index replaced by another Parquet file",
        file: "index.parquet",
        says: "bad index: missing column",
        apply: |d| {
            std::fs::copy(d.join("failures.parquet"), d.join("index.parquet")).unwrap();
        },
    },
];

impl Damage {
    /// A copy of the set in `set` (a folder of files) at `into/<name>`, damaged.
    pub fn copy_of(&self, set: &Path, into: &Path) -> PathBuf {
        let dir = into.join(self.name.replace(' ', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(set).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
            }
        }
        (self.apply)(&dir);
        dir
    }

    /// Panics unless `message` (an error, or a tool's stderr) names the damaged file of
    /// `dir`, says what is wrong and what to do, and holds no panic.
    pub fn check(&self, dir: &Path, message: &str) {
        let file = dir.join(self.file).display().to_string();
        assert!(
            message.contains(&file) && message.contains(self.says) && message.contains(WHAT_TO_DO),
            "{}: expected {file:?}, {:?} and {WHAT_TO_DO:?} in:\n{message}",
            self.name,
            self.says
        );
        assert!(!message.contains("panicked"), "{}: {message}", self.name);
    }
}
