//! A write-only file for shards that bypasses the page cache where the file system allows.
//!
//! Buffered `write` copies every byte into the page cache. On the machines the sharder was
//! profiled on, that copy into pages the kernel had just handed out was 11 % of a `plain`
//! build's CPU (BENCHMARKS.md, "What limits us, and the defaults"), for data that nobody
//! reads back soon (a shard set is written once and read by training later). With
//! `O_DIRECT` the device reads the bytes straight from this process's memory: the writer
//! copies them into a page-aligned staging buffer (which stays hot in the cache) and writes
//! whole aligned blocks; [`DirectFile::finish`] writes the last partial block through the
//! page cache. Where the file system refuses `O_DIRECT` at open or at the first write (tmpfs
//! before Linux 6.6, some network file systems), the file falls back to buffered writes with
//! the same results.

use std::alloc::{alloc, dealloc, Layout};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Alignment of buffer addresses, sizes and file offsets for `O_DIRECT` (the largest
/// logical block size in common use).
const ALIGN: usize = 4096;

/// Bytes staged before a write: large enough that the device sees long sequential writes.
const STAGE: usize = 4 << 20;

/// A page-aligned heap buffer of [`STAGE`] bytes.
struct Stage {
    ptr: std::ptr::NonNull<u8>,
}

// SAFETY: the buffer is owned memory with no thread affinity.
unsafe impl Send for Stage {}

impl Stage {
    fn layout() -> Layout {
        Layout::from_size_align(STAGE, ALIGN).expect("constant layout")
    }

    fn new() -> Self {
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc(Self::layout()) };
        let ptr = std::ptr::NonNull::new(p)
            .unwrap_or_else(|| std::alloc::handle_alloc_error(Self::layout()));
        Stage { ptr }
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` holds STAGE bytes owned by self, borrowed mutably here.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), STAGE) }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with the same layout.
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout()) };
    }
}

/// A new file written front to back, through `O_DIRECT` where possible.
pub struct DirectFile {
    file: File,
    /// Bytes not yet written, at the start of `stage`; the file holds `written` bytes.
    stage: Stage,
    staged: usize,
    written: u64,
    /// Whether writes bypass the page cache (false after a fallback).
    direct: bool,
}

impl DirectFile {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        let (file, direct) = match open(path, true) {
            Ok(f) => (f, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(path, false)?, false),
            Err(e) => return Err(e),
        };
        Ok(DirectFile { file, stage: Stage::new(), staged: 0, written: 0, direct })
    }

    /// Appends `data`.
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = (STAGE - self.staged).min(data.len());
            self.stage.bytes()[self.staged..self.staged + n].copy_from_slice(&data[..n]);
            self.staged += n;
            data = &data[n..];
            if self.staged == STAGE {
                self.flush_stage(STAGE)?;
            }
        }
        Ok(())
    }

    /// Writes what is staged and returns the file (not yet synced). The whole blocks go
    /// direct, the last partial block through the page cache: padding it would make the
    /// file briefly longer than its bytes, which a file size limit or a full disk can refuse.
    pub fn finish(mut self) -> io::Result<File> {
        let whole = if self.direct { self.staged / ALIGN * ALIGN } else { self.staged };
        let tail = self.staged - whole;
        if whole > 0 {
            self.flush_stage(whole)?;
        }
        if tail > 0 {
            if self.direct {
                set_direct(&self.file, false)?;
            }
            self.file.write_all(&self.stage.bytes()[whole..whole + tail])?;
        }
        Ok(self.file)
    }

    /// Writes the first `n` staged bytes (whole blocks when direct) and empties the stage.
    fn flush_stage(&mut self, n: usize) -> io::Result<()> {
        let bytes = &self.stage.bytes()[..n];
        match self.file.write_all(bytes) {
            Err(e)
                if self.direct && self.written == 0 && e.raw_os_error() == Some(libc::EINVAL) =>
            {
                // The file system took O_DIRECT at open but not at write: go buffered.
                set_direct(&self.file, false)?;
                self.direct = false;
                self.file.write_all(bytes)?;
            }
            r => r?,
        }
        self.written += n as u64;
        self.staged = 0;
        Ok(())
    }
}

fn open(path: &Path, direct: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    if direct {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_DIRECT);
    }
    o.open(path)
}

fn set_direct(file: &File, on: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this file owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    let flags = if on { flags | libc::O_DIRECT } else { flags & !libc::O_DIRECT };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that differ at every position of a block, so a misplaced block shows.
    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[3] ^ seed).collect()
    }

    #[test]
    fn the_file_holds_exactly_the_bytes_written_across_stage_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        // Pieces smaller than a block, a stage and more, and an unaligned end.
        let pieces = [pattern(32, 1), pattern(STAGE - 32 + 5, 2), pattern(3 * STAGE + 7, 3)];
        for n in [0, 1, 2, 3] {
            let path = dir.path().join(format!("f{n}"));
            let mut f = DirectFile::create(&path).unwrap();
            let mut expected = Vec::new();
            for p in &pieces[..n] {
                f.write_all(p).unwrap();
                expected.extend_from_slice(p);
            }
            f.finish().unwrap().sync_all().unwrap();
            let got = std::fs::read(&path).unwrap();
            assert_eq!(got.len(), expected.len(), "{n} pieces");
            assert!(got == expected, "{n} pieces: contents differ");
        }
    }

    #[test]
    fn a_file_that_refuses_a_direct_write_is_written_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = DirectFile::create(&path).unwrap();
        let data = pattern(STAGE + 4097, 9);
        if f.direct {
            // A write of 5 bytes is not whole blocks: O_DIRECT refuses it with EINVAL.
            f.stage.bytes()[..5].copy_from_slice(&data[..5]);
            f.flush_stage(5).unwrap();
            assert!(!f.direct, "still direct after a refused write");
            f.write_all(&data[5..]).unwrap();
        } else {
            f.write_all(&data).unwrap();
        }
        f.finish().unwrap().sync_all().unwrap();
        assert!(std::fs::read(&path).unwrap() == data);
    }
}
