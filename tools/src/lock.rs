//! One writer per output: the lock a `cvrl-shard build` (or `merge`) holds on its output
//! folder for as long as it runs.
//!
//! Two builds writing one folder delete and rename each other's temporary files, and one of
//! them dies of it at random, or both leave a damaged set. So a build first takes an
//! exclusive `flock` on `OUT/.building/build.lock` (`part-I-of-N.build.lock` for a `--part`
//! build: different parts of one set write different files and still build at once), and a
//! second build refuses before it touches anything, naming the first: the lock file holds
//! the holder's pid, host, start time and command line.
//!
//! The kernel drops a `flock` when its process ends, however it ends, so a build killed with
//! `kill -9` leaves no stale lock: its file may stay, and the next build simply locks it.
//! The holder removes the file, still locked, when it finishes; a process that opened the
//! file before that could then lock the removed file, so after locking it checks that the
//! path still names the file it holds, and starts over if not.
//!
//! A file system that cannot lock at all (some cluster file systems are mounted without
//! `flock`) does not stop a build: the lock is then [`OutputLock::unenforced`] and the CLI
//! says so.

use anyhow::{bail, Context, Result};
use cvrl_formats::{Part, SetFiles};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The folder of a build's uncommitted state in its output folder, where the locks are too.
pub const STATE_DIR: &str = ".building";

/// A held lock on an output folder (or one part of it); released when dropped or when the
/// process ends.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    out: PathBuf,
    part: Option<Part>,
    /// Kept open: closing it releases the lock.
    _file: File,
    /// Why the folder is not actually locked, when its file system cannot lock.
    pub unenforced: Option<String>,
}

/// Who holds a lock: what the lock file says.
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    pid: u32,
    host: String,
    started: String,
    command: String,
}

impl OutputLock {
    /// Locks the existing folder `out` for a build of `part` (`None`: the whole set, which
    /// `merge` writes too). Fails at once, naming the holder, when another process holds it.
    pub fn acquire(out: &Path, part: Option<Part>) -> Result<OutputLock> {
        let state = out.join(STATE_DIR);
        match std::fs::create_dir(&state) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(e).with_context(|| format!("cannot create {}", state.display()));
            }
            _ => {}
        }
        let name = SetFiles::new(part).shard(0).replace("shard-00000.cvrs", "build.lock");
        let path = state.join(name);
        // Starting over is needed only when a holder removed the file between our open and
        // our lock; a few tries are plenty.
        for _ in 0..20 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("cannot open the lock file {}", path.display()))?;
            let unenforced = match try_flock(&file) {
                Ok(()) => None,
                Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    bail!("{}", busy_message(out, part, &path, &text));
                }
                Err(e) if lock_unsupported(&e) => Some(format!(
                    "cannot lock {} ({e}): this file system does not support locks, so make sure \
                     no other cvrl-shard writes to {} at the same time",
                    path.display(),
                    out.display()
                )),
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()));
                }
            };
            if unenforced.is_none() && !names_file(&path, &file) {
                continue;
            }
            let holder = serde_json::to_string(&Holder::this_process())?;
            file.set_len(0)
                .and_then(|()| file.write_all(holder.as_bytes()))
                .with_context(|| format!("cannot write the lock file {}", path.display()))?;
            return Ok(OutputLock { path, out: out.to_path_buf(), part, _file: file, unenforced });
        }
        bail!("cannot lock {}: another process keeps replacing it", path.display())
    }

    /// Whether this lock is the one for a build of `part` into `out`.
    pub fn covers(&self, out: &Path, part: Option<Part>) -> bool {
        self.out == out && self.part == part
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still held (see the module doc); the state folder goes too once
        // nothing else is in it. The lock itself is released when the file closes, after this.
        let _ = std::fs::remove_file(&self.path);
        if let Some(state) = self.path.parent() {
            let _ = std::fs::remove_dir(state);
        }
    }
}

impl Holder {
    fn this_process() -> Holder {
        let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Holder {
            pid: std::process::id(),
            host: host_name(),
            started: utc_time(started),
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
    }
}

fn busy_message(out: &Path, part: Option<Part>, path: &Path, lock_text: &str) -> String {
    let what = match part {
        Some(p) => format!("part {}/{} of {}", p.index, p.count, out.display()),
        None => out.display().to_string(),
    };
    let who = match serde_json::from_str::<Holder>(lock_text) {
        Ok(h) => format!("pid {} on host {}, started {}: {}", h.pid, h.host, h.started, h.command),
        Err(_) => format!("a process that is just starting; see {}", path.display()),
    };
    format!(
        "{what} is being written by another cvrl-shard ({who}); wait for it to finish, or stop \
         it and run this again (a stopped build leaves no lock behind, and a rerun resumes it)"
    )
}

/// `flock(LOCK_EX | LOCK_NB)`.
fn try_flock(file: &File) -> std::io::Result<()> {
    loop {
        // SAFETY: flock only reads the descriptor, which `file` keeps open for this call.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn lock_unsupported(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOLCK | libc::ENOSYS | libc::EOPNOTSUPP))
}

/// Whether `path` still names the open `file` (not removed or replaced since it was opened).
fn names_file(path: &Path, file: &File) -> bool {
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`, which it owns.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if r == 0 && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown".to_string()
    }
}

/// `secs` since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC` (days to a civil date as in
/// Howard Hinnant's `civil_from_days`).
fn utc_time(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_matches_known_dates() {
        // Values from `date -u -d @SECS '+%F %T'`.
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_time(1_780_000_000), "2026-05-28 20:26:40 UTC");
    }

    #[test]
    fn a_second_lock_on_a_folder_is_refused_naming_the_holder_and_parts_lock_apart() {
        let d = tempfile::tempdir().unwrap();
        let first = OutputLock::acquire(d.path(), None).unwrap();
        assert!(first.unenforced.is_none(), "{:?}", first.unenforced);
        let err = format!("{:#}", OutputLock::acquire(d.path(), None).unwrap_err());
        let pid = format!("pid {} on host {}", std::process::id(), host_name());
        assert!(err.contains(&pid) && err.contains("another cvrl-shard"), "{err}");
        let part = |index| Some(Part { index, count: 2 });
        let p0 = OutputLock::acquire(d.path(), part(0)).unwrap();
        let p1 = OutputLock::acquire(d.path(), part(1)).unwrap();
        let err = format!("{:#}", OutputLock::acquire(d.path(), part(1)).unwrap_err());
        assert!(err.contains("part 1/2 of"), "{err}");
        drop((first, p0, p1));
        assert!(!d.path().join(STATE_DIR).exists(), "the lock files and their folder go");
        drop(OutputLock::acquire(d.path(), None).unwrap());
    }

    #[test]
    fn a_lock_file_left_by_a_dead_process_is_taken_over() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join(STATE_DIR)).unwrap();
        let stale = d.path().join(STATE_DIR).join("build.lock");
        std::fs::write(&stale, r#"{"pid":1,"host":"gone","started":"then","command":"x"}"#)
            .unwrap();
        let lock = OutputLock::acquire(d.path(), None).unwrap();
        let text = std::fs::read_to_string(&stale).unwrap();
        assert!(text.contains(&format!("\"pid\":{}", std::process::id())), "{text}");
        drop(lock);
    }
}
