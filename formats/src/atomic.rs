//! Writing files atomically: a file is written under a temporary name, synced, and renamed
//! into place, so a reader (or a rerun after a crash) sees the old file or the whole new
//! one, never half of one. Shards, indexes, manifests and checkpoints all go through here.

use crate::error::{IoContext, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The temporary name a file is written under before its atomic rename: `<path>.tmp`.
pub fn tmp_path(path: &Path) -> PathBuf {
    with_name_suffix(path, ".tmp")
}

/// Like [`tmp_path`] with this process's id in the name, `<path>.<pid>.tmp`, for a file that
/// two processes may write at once: each writes its own temporary file and renames a whole one.
pub fn process_tmp_path(path: &Path) -> PathBuf {
    with_name_suffix(path, &format!(".{}.tmp", std::process::id()))
}

/// `path` with `suffix` appended to its file name (not replacing an extension).
fn with_name_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Best effort: makes a rename durable. Failure only weakens crash safety, so it is ignored.
pub(crate) fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Writes `path` atomically: `write` fills `<path>.tmp`, which is synced and renamed.
pub fn atomic_write(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = tmp_path(path);
    let mut file = File::create(&tmp).at(&tmp)?;
    write(&mut file).at(&tmp)?;
    file.sync_all().at(&tmp)?;
    drop(file);
    std::fs::rename(&tmp, path).at(path)?;
    sync_parent(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn temporary_names_append_to_the_file_name() {
        let p = Path::new("out/index.parquet");
        assert_eq!(tmp_path(p), Path::new("out/index.parquet.tmp"));
        let pid = std::process::id();
        assert_eq!(process_tmp_path(p), Path::new(&format!("out/index.parquet.{pid}.tmp")));
    }

    #[test]
    fn a_write_replaces_the_file_whole_and_a_failed_one_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        atomic_write(&path, |f| f.write_all(b"one")).unwrap();
        atomic_write(&path, |f| f.write_all(b"two")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let err = atomic_write(&path, |_| Err(std::io::Error::other("disk full"))).unwrap_err();
        assert!(err.to_string().contains("manifest.json.tmp: disk full"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
    }
}
