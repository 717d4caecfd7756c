//! `cvrl._cvrl.SharedBatches`: shared memory that DataLoader worker processes collate
//! batches into and that the main process reads them from, reused from batch to batch.
//!
//! torch sends a worker's batch to the main process in fresh shared memory: a new file per
//! batch, zero-filled, faulted in page by page by the copy into it, mapped again by the main
//! process and unmapped when the batch is dropped. For a few-MB clip batch that is most of
//! what a DataLoader adds to a read (BENCHMARKS.md, "The cvrl Python package"). Here the
//! dataset maps one shared region, a memory file (memfd), in the main process: forked
//! workers inherit the mapping, and workers started by spawn or forkserver map the file,
//! whose descriptor goes with the pickled dataset (`SharedBatches.attach`). So every process
//! of the loader sees the same pages; a worker collates into a *slot* of the region, sends
//! only the slot's number, and the main process views the slot as a tensor. When that
//! tensor goes, the slot is free for a later batch, its pages already faulted in on both
//! sides.
//!
//! A slot's life: `UNUSED` (no memory yet) or `FREE` -> `BUSY` (claimed by a worker, or held
//! by the main process after it received it) -> `FREE` when its owner drops it. Only the
//! process named as the slot's owner frees it: a forked child that inherits a Python object
//! viewing a slot never does. A batch that was sent but never received (an iterator dropped
//! with batches in flight) leaves its slot `BUSY` with a dead owner; once the owner has been
//! gone [`ORPHAN_SECS`], a worker that finds no free slot takes it back. When no slot fits,
//! `claim` returns `None` and the caller makes the batch as torch would.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::frames::byte_array_interface;

/// Slots in a region: batches in flight at once (workers x prefetch x tensors per batch,
/// plus those the training loop holds).
const SLOTS: usize = 64;

/// Slot memory is aligned to pages.
const PAGE: u64 = 4096;

/// A `BUSY` slot whose owner has been dead this long is taken back (by default): a DataLoader
/// reads a worker's batches only while the worker lives, so by then nobody will receive it.
const ORPHAN_SECS: u64 = 60;

const UNUSED: u32 = 0;
const FREE: u32 = 1;
const BUSY: u32 = 2;

/// One slot's record in the region's header. Fields other than `state` are written by the
/// process that moved `state` to `BUSY` (or, for `owner`, took ownership with a CAS), and
/// read after an acquiring load of `state`.
#[repr(C)]
struct Entry {
    state: AtomicU32,
    /// Process id of the owner: the worker filling or sending it, then the receiver.
    owner: AtomicU32,
    /// Seconds since the epoch when the owner last changed.
    since: AtomicU64,
    /// Byte offset of the slot's memory from the start of the region.
    offset: AtomicU64,
    capacity: AtomicU64,
}

/// The region's header, at its start: the slot records and the bump pointer that gives
/// `UNUSED` slots their memory.
#[repr(C)]
struct Header {
    next: AtomicU64,
    entries: [Entry; SLOTS],
}

/// Bytes before the first slot's memory.
const HEADER_BYTES: u64 = (std::mem::size_of::<Header>() as u64).div_ceil(PAGE) * PAGE;

/// The mapping: unmapped when the pool and every slot viewing it are gone (in each process
/// separately; a fork inherits it).
struct Region {
    base: NonNull<u8>,
    len: usize,
    /// The memory's file (a memfd on Linux), which a process started by spawn or forkserver
    /// maps instead of inheriting the mapping. `None` where there is none.
    file: Option<OwnedFd>,
}

// SAFETY: the region is plain shared memory; the header is only accessed through atomics and
// each slot's bytes by the one process and Python object that own the slot.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    fn header(&self) -> &Header {
        // SAFETY: the mapping is at least HEADER_BYTES long, page-aligned, zero-filled at
        // creation (all atomics zero: a valid Header), and lives as long as `self`.
        unsafe { &*(self.base.as_ptr() as *const Header) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: base and len are the mapping made in `SharedBatches::new`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

fn pid() -> u32 {
    std::process::id()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists. EPERM means it does.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// A region of shared memory for batches, made in the process that creates the dataset.
#[pyclass(frozen, weakref, module = "cvrl._cvrl")]
pub struct SharedBatches {
    region: Arc<Region>,
    /// Tells regions apart in the message a worker sends (a fork keeps the same id).
    id: u64,
    orphan_secs: u64,
}

#[pymethods]
impl SharedBatches {
    /// Reserves `max_bytes` of address space (memory is used only as slots are filled).
    /// `orphan_secs`: how long a slot's owner must have been dead before a claim takes it.
    #[new]
    #[pyo3(signature = (max_bytes, orphan_secs = ORPHAN_SECS))]
    fn new(max_bytes: u64, orphan_secs: u64) -> PyResult<Self> {
        let len = region_len(max_bytes)?;
        // Without a memory file the region still serves forked workers.
        let file = memory_file(len).ok();
        let base = map(len, file.as_ref())?;
        let id = (u64::from(pid()) << 32) ^ (base.as_ptr() as u64) ^ now().rotate_left(17);
        Ok(SharedBatches { region: Arc::new(Region { base, len, file }), id, orphan_secs })
    }

    /// The region `id` of another process, from its memory file `fd` (which this takes
    /// over): what a worker started by spawn or forkserver maps.
    #[staticmethod]
    fn attach(fd: i32, max_bytes: u64, id: u64, orphan_secs: u64) -> PyResult<Self> {
        // SAFETY: the caller hands over an open descriptor it no longer uses
        // (`multiprocessing.reduction.DupFd.detach`).
        let file = unsafe { OwnedFd::from_raw_fd(fd) };
        let len = region_len(max_bytes)?;
        let size = File::from(file.try_clone()?).metadata()?.len();
        if size != len as u64 {
            return Err(PyValueError::new_err(format!(
                "shared batch memory {id:#x} holds {size} bytes, not {len}"
            )));
        }
        let base = map(len, Some(&file))?;
        Ok(SharedBatches {
            region: Arc::new(Region { base, len, file: Some(file) }),
            id,
            orphan_secs,
        })
    }

    /// The memory file's descriptor, for `attach` in another process (`None` without one).
    #[getter]
    fn fd(&self) -> Option<i32> {
        self.region.file.as_ref().map(|f| f.as_raw_fd())
    }

    #[getter]
    fn max_bytes(&self) -> u64 {
        (self.region.len as u64) - HEADER_BYTES
    }

    #[getter]
    fn orphan_secs(&self) -> u64 {
        self.orphan_secs
    }

    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// A slot of at least `nbytes` owned by this process, or `None` when none is free and
    /// the region has no room for another.
    fn claim(&self, nbytes: u64) -> Option<Slot> {
        let h = self.region.header();
        let me = pid();
        let take = |i: usize| {
            let e = &h.entries[i];
            e.owner.store(me, Ordering::Relaxed);
            e.since.store(now(), Ordering::Relaxed);
            Some(self.slot(i, nbytes, me))
        };
        // The smallest free slot that fits; another process may take it first, so retry.
        loop {
            let best = (0..SLOTS)
                .filter(|&i| h.entries[i].state.load(Ordering::Acquire) == FREE)
                .map(|i| (h.entries[i].capacity.load(Ordering::Relaxed), i))
                .filter(|&(cap, _)| cap >= nbytes)
                .min();
            let Some((_, i)) = best else { break };
            let state = &h.entries[i].state;
            if state.compare_exchange(FREE, BUSY, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return take(i);
            }
        }
        // A new slot from the unused memory.
        let capacity = nbytes.max(1).div_ceil(PAGE) * PAGE;
        for i in 0..SLOTS {
            let e = &h.entries[i];
            if e.state.compare_exchange(UNUSED, BUSY, Ordering::Acquire, Ordering::Relaxed).is_err()
            {
                continue;
            }
            let offset = HEADER_BYTES + h.next.fetch_add(capacity, Ordering::Relaxed);
            if offset + capacity > self.region.len as u64 {
                // Full: the bump pointer stays past the end, so later tries fail fast.
                e.state.store(UNUSED, Ordering::Release);
                break;
            }
            e.offset.store(offset, Ordering::Relaxed);
            e.capacity.store(capacity, Ordering::Relaxed);
            return take(i);
        }
        // Batches sent but never received, whose worker has long exited.
        for i in 0..SLOTS {
            let e = &h.entries[i];
            let owner = e.owner.load(Ordering::Acquire);
            if e.state.load(Ordering::Acquire) != BUSY
                || owner == 0
                || e.capacity.load(Ordering::Relaxed) < nbytes
                || now().saturating_sub(e.since.load(Ordering::Relaxed)) < self.orphan_secs
                || alive(owner)
            {
                continue;
            }
            if e.owner.compare_exchange(owner, me, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                return take(i);
            }
        }
        None
    }

    /// The slot a worker sent (`Slot.send`), now owned by this process: freed when Python
    /// drops it here.
    fn receive(&self, entry: usize, sender: u32, nbytes: u64) -> PyResult<Slot> {
        let h = self.region.header();
        let e = h.entries.get(entry).ok_or_else(|| {
            PyValueError::new_err(format!("shared batch slot {entry} out of range"))
        })?;
        let me = pid();
        let ok = e.state.load(Ordering::Acquire) == BUSY
            && e.capacity.load(Ordering::Relaxed) >= nbytes
            && e.owner.compare_exchange(sender, me, Ordering::AcqRel, Ordering::Relaxed).is_ok();
        if !ok {
            return Err(PyValueError::new_err(format!(
                "shared batch slot {entry} is no longer the one process {sender} sent \
                 (it was taken back after {} s unreceived)",
                self.orphan_secs
            )));
        }
        e.since.store(now(), Ordering::Relaxed);
        Ok(self.slot(entry, nbytes, me))
    }

    /// `(slots in use, slots with memory, bytes given to slots)`, for tests.
    fn usage(&self) -> (usize, usize, u64) {
        let h = self.region.header();
        let states = h.entries.iter().map(|e| e.state.load(Ordering::Acquire));
        let busy = states.clone().filter(|&s| s == BUSY).count();
        let made = states.filter(|&s| s != UNUSED).count();
        (busy, made, h.next.load(Ordering::Relaxed))
    }
}

fn region_len(max_bytes: u64) -> PyResult<usize> {
    HEADER_BYTES
        .checked_add(max_bytes)
        .and_then(|l| usize::try_from(l).ok())
        .ok_or_else(|| PyValueError::new_err(format!("max_bytes {max_bytes} is too large")))
}

/// A file of `len` bytes in memory, all of them holes until written.
#[cfg(target_os = "linux")]
fn memory_file(len: usize) -> std::io::Result<OwnedFd> {
    // SAFETY: a C string literal; the flags are memfd_create's.
    let fd = unsafe { libc::memfd_create(c"cvrl-batches".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just opened and owned by nothing else.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.set_len(len as u64)?;
    Ok(file.into())
}

#[cfg(not(target_os = "linux"))]
fn memory_file(_len: usize) -> std::io::Result<OwnedFd> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// Maps `len` bytes of `file`, or of new anonymous memory, shared with child processes.
fn map(len: usize, file: Option<&OwnedFd>) -> PyResult<NonNull<u8>> {
    let (flags, fd) = match file {
        Some(f) => (libc::MAP_SHARED, f.as_raw_fd()),
        None => (libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1),
    };
    // SAFETY: a fresh mapping of a file of at least `len` bytes, or anonymous memory;
    // MAP_NORESERVE so that only the pages slots touch count against memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags | libc::MAP_NORESERVE,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let e = std::io::Error::last_os_error();
        return Err(PyOSError::new_err(format!(
            "cannot map {len} bytes of shared memory for batches: {e}"
        )));
    }
    Ok(NonNull::new(p.cast::<u8>()).expect("mmap returned null without failing"))
}

impl SharedBatches {
    fn slot(&self, entry: usize, len: u64, owner: u32) -> Slot {
        let offset = self.region.header().entries[entry].offset.load(Ordering::Relaxed);
        Slot {
            region: self.region.clone(),
            region_id: self.id,
            entry,
            offset: offset as usize,
            len: len as usize,
            owner,
            sent: AtomicBool::new(false),
        }
    }
}

/// `len` bytes of a region that this process owns, viewed by numpy through
/// `__array_interface__` (writable). Dropping it frees the slot, unless it was sent to
/// another process or this is not the owner (a forked copy).
#[pyclass(frozen, module = "cvrl._cvrl")]
pub struct Slot {
    region: Arc<Region>,
    region_id: u64,
    entry: usize,
    offset: usize,
    len: usize,
    owner: u32,
    sent: AtomicBool,
}

#[pymethods]
impl Slot {
    fn __len__(&self) -> usize {
        self.len
    }

    /// The `SharedBatches.id` of its region.
    #[getter]
    fn region_id(&self) -> u64 {
        self.region_id
    }

    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        // SAFETY: offset + len lies inside the mapping (checked when the slot got memory).
        let addr = unsafe { self.region.base.as_ptr().add(self.offset) } as usize;
        byte_array_interface(py, addr, self.len)
    }

    /// Hands the slot to the process that will `receive` it: `(entry, sender)`. This
    /// process's object no longer frees it.
    fn send(&self) -> PyResult<(usize, u32)> {
        if self.sent.swap(true, Ordering::AcqRel) {
            return Err(PyValueError::new_err("this shared batch was already sent"));
        }
        let e = &self.region.header().entries[self.entry];
        e.since.store(now(), Ordering::Relaxed);
        Ok((self.entry, self.owner))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.sent.load(Ordering::Acquire) || self.owner != pid() {
            return;
        }
        let e = &self.region.header().entries[self.entry];
        // No owner while free: a claim's CAS to BUSY happens before it names itself, and
        // the orphan search skips owner 0 meanwhile.
        if e.owner.compare_exchange(self.owner, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            e.state.store(FREE, Ordering::Release);
        }
    }
}
