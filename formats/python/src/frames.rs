//! `cvrl._cvrl.Frames`: the bytes one read returns, owned by Rust and viewed by numpy
//! through `__array_interface__`, and the memory that reads reuse.
//!
//! A clip pair is several MB, and memory the process has not touched costs a page fault per
//! 4 KiB on its first write: with a fresh buffer per read (a `bytearray`, the reader's chunk
//! buffer) the faults were about a fifth of a read's CPU time. So a read takes its output
//! from a small pool of buffers that earlier reads returned when Python let go of their
//! frames ([`Frames`]'s `Drop`), and its reader's buffers from the set's spares
//! ([`Spares`]). Both are [`Pool`]s that stay in the process, bounded by [`SPARE_BUFFERS`]
//! (and output buffers by [`SPARE_BYTES`] each: a one-off huge read gives its memory back).

use std::sync::Mutex;

use cvrl_formats::ReaderBuffers;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// At most this many output buffers, and this many reader buffer sets, wait for reuse.
const SPARE_BUFFERS: usize = 16;

/// Output buffers larger than this are freed, not kept: a training clip is a few MB.
const SPARE_BYTES: usize = 64 << 20;

/// Things waiting for reuse, at most [`SPARE_BUFFERS`] of them.
struct Pool<T>(Mutex<Vec<T>>);

impl<T> Pool<T> {
    const fn new() -> Self {
        Pool(Mutex::new(Vec::new()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<T>> {
        // A panic while the lock was held leaves whole buffers behind, still reusable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The one whose `cost` is lowest, among those with a cost at all.
    fn take_best(&self, cost: impl Fn(&T) -> Option<usize>) -> Option<T> {
        let mut pool = self.lock();
        let best = (0..pool.len()).filter_map(|i| Some((cost(&pool[i])?, i))).min();
        best.map(|(_, i)| pool.swap_remove(i))
    }

    /// Any one.
    fn take(&self) -> Option<T> {
        self.lock().pop()
    }

    /// Keeps `item` for reuse, or drops it when the pool is full.
    fn put(&self, item: T) {
        let mut pool = self.lock();
        if pool.len() < SPARE_BUFFERS {
            pool.push(item);
        }
    }
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Output buffers whose frames Python has dropped.
static OUTPUT: Pool<Vec<u8>> = Pool::new();

/// An output buffer of `len` initialised bytes: the smallest spare that holds them, else a
/// new one. Its contents are whatever the last read left (every read overwrites all of it).
pub fn output_buffer(len: usize) -> Vec<u8> {
    let spare = OUTPUT.take_best(|b| (b.capacity() >= len).then_some(b.capacity()));
    let mut buf = spare.unwrap_or_default();
    // Only bytes past the buffer's last length are zeroed; within its capacity they were
    // touched before, so only a fresh buffer pays its page faults here.
    buf.resize(len, 0);
    buf
}

/// The frames of one clip: bytes a read filled, which `cvrl.ShardSet` views as a numpy
/// array (`numpy.asarray(frames)`, writable, alive as long as any view of it). When the last
/// view goes, the bytes go back to the pool for a later read.
#[pyclass(frozen, module = "cvrl._cvrl")]
pub struct Frames {
    bytes: Vec<u8>,
    /// `bytes.as_mut_ptr()`, taken while this owned them mutably: the address numpy writes
    /// through (Rust never reads or writes `bytes` again before dropping them).
    addr: usize,
}

impl Frames {
    pub fn new(mut bytes: Vec<u8>) -> Self {
        let addr = bytes.as_mut_ptr() as usize;
        Frames { bytes, addr }
    }
}

#[pymethods]
impl Frames {
    fn __len__(&self) -> usize {
        self.bytes.len()
    }

    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        byte_array_interface(py, self.addr, self.bytes.len())
    }
}

/// numpy's array interface (version 3) for `len` writable bytes at `addr`: one dimension of
/// `uint8`. The object returning it must keep the bytes alive (numpy holds it as the base).
pub fn byte_array_interface(
    py: Python<'_>,
    addr: usize,
    len: usize,
) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("version", 3)?;
    d.set_item("shape", (len,))?;
    d.set_item("typestr", "|u1")?;
    d.set_item("data", (addr, false))?;
    Ok(d)
}

impl Drop for Frames {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.bytes);
        if bytes.capacity() <= SPARE_BYTES {
            OUTPUT.put(bytes);
        }
    }
}

/// What a read needs besides its output: a reader's buffers and a chunk's worth of decoded
/// frames, taken for one read and put back after it.
#[derive(Default)]
pub struct Spares(Pool<Spare>);

/// One read's reusable buffers.
pub struct Spare {
    pub reader: ReaderBuffers,
    pub frames: Vec<u8>,
}

impl Spares {
    /// A spare set of buffers, or new ones.
    pub fn take(&self) -> Result<Spare, cvrl_formats::FormatError> {
        match self.0.take() {
            Some(s) => Ok(s),
            None => Ok(Spare { reader: ReaderBuffers::new()?, frames: Vec::new() }),
        }
    }

    pub fn put(&self, spare: Spare) {
        self.0.put(spare);
    }
}
