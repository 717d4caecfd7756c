//! The unsafe surface of [`crate::dist`]: declarations of the C functions in
//! `trainer/csrc/c10d_shim.cpp` (compiled by `build.rs`) and the one type that owns a group
//! handle, [`RawGroup`]. Every `unsafe` block of the distributed code is in this file.
//!
//! The shim's conventions, which the wrappers here rely on:
//! - a tensor crosses as tch's handle, a heap `at::Tensor*` (`tch::Tensor::as_ptr`); a tensor
//!   coming back is a fresh `new at::Tensor`, which [`Tensor::from_ptr`] takes over;
//! - every fallible call returns null or a `malloc`ed message, freed here with
//!   `cvrl_c10d_free_string` after copying it into a `String`; no C++ exception crosses;
//! - a group is reference counted on the C++ side: [`RawGroup`] owns one reference and drops
//!   it once; autograd nodes hold their own, so a graph may outlive the handle; a
//!   [`RawReducer`] holds one too.

use std::ffi::{c_char, c_int, CStr, CString};
use std::ptr::{self, NonNull};
use std::time::Duration;

use tch::Tensor;
use torch_sys::C_tensor;

/// The shim's group type, only ever behind a pointer.
#[repr(C)]
pub(crate) struct CGroup {
    _opaque: [u8; 0],
}

/// The shim's reducer type (a `c10d::Reducer` and its group), only ever behind a pointer.
#[repr(C)]
pub(crate) struct CReducer {
    _opaque: [u8; 0],
}

extern "C" {
    fn cvrl_c10d_free_string(s: *mut c_char);
    fn cvrl_c10d_has_nccl() -> c_int;
    fn cvrl_c10d_group_new(
        host: *const c_char,
        port: u16,
        rank: c_int,
        size: c_int,
        timeout_ms: i64,
        gloo_iface: *const c_char,
        with_nccl: c_int,
        out: *mut *mut CGroup,
    ) -> *mut c_char;
    fn cvrl_c10d_group_free(group: *mut CGroup);
    fn cvrl_c10d_all_reduce_sum(group: *mut CGroup, t: *mut C_tensor) -> *mut c_char;
    fn cvrl_c10d_all_gather(
        group: *mut CGroup,
        t: *const C_tensor,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn cvrl_c10d_broadcast(group: *mut CGroup, t: *mut C_tensor, root: c_int) -> *mut c_char;
    fn cvrl_c10d_barrier(group: *mut CGroup) -> *mut c_char;
    fn cvrl_c10d_heartbeats(
        group: *mut CGroup,
        timeout_ms: i64,
        out_ms: *mut i64,
        out_stopping: *mut c_int,
        n: usize,
    ) -> *mut c_char;
    fn cvrl_c10d_mark_stopping(group: *mut CGroup) -> *mut c_char;
    fn cvrl_c10d_all_gather_with_grad(
        group: *mut CGroup,
        t: *const C_tensor,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn cvrl_c10d_all_reduce_with_grad(
        group: *mut CGroup,
        t: *const C_tensor,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn cvrl_c10d_define_grad(param: *mut C_tensor) -> *mut c_char;
    fn cvrl_c10d_reducer_new(
        group: *mut CGroup,
        params: *const *mut C_tensor,
        n: usize,
        bucket_bytes: i64,
        out: *mut *mut CReducer,
    ) -> *mut c_char;
    fn cvrl_c10d_reducer_prepare(
        reducer: *mut CReducer,
        outputs: *const *mut C_tensor,
        n: usize,
    ) -> *mut c_char;
    fn cvrl_c10d_reducer_free(reducer: *mut CReducer);
}

/// The handles of `tensors`, for a C array argument.
fn handles(tensors: &[&Tensor]) -> Vec<*mut C_tensor> {
    tensors.iter().map(|t| t.as_ptr() as *mut C_tensor).collect()
}

/// Turns the shim's return value into a `Result`, freeing the message.
fn check(message: *mut c_char) -> Result<(), String> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string the shim malloc'ed for us; we copy
    // it before freeing it, and free it exactly once.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
    unsafe { cvrl_c10d_free_string(message) };
    Err(text)
}

/// Takes over a tensor the shim returned through an out-pointer.
fn take_tensor(message: *mut c_char, out: *mut C_tensor) -> Result<Tensor, String> {
    check(message)?;
    if out.is_null() {
        return Err("the c10d shim returned no tensor".to_owned());
    }
    // SAFETY: on success the shim stored a fresh `new at::Tensor`, owned by nobody else; the
    // returned Tensor deletes it on drop.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// Whether the shim was compiled with the NCCL backend (see `build.rs`).
pub(crate) fn nccl_compiled() -> bool {
    // SAFETY: reads a constant.
    unsafe { cvrl_c10d_has_nccl() != 0 }
}

/// Gives `param` a zero gradient if it has none (a no-op otherwise).
pub(crate) fn define_grad(param: &Tensor) -> Result<(), String> {
    // SAFETY: the pointer is a live tensor handle for the duration of the call; setting the
    // gradient goes through the tensor's shared implementation, which `param` keeps alive.
    check(unsafe { cvrl_c10d_define_grad(param.as_ptr() as *mut C_tensor) })
}

/// One reference to a c10d group: a TCPStore rendezvous, a Gloo backend and, on request, an
/// NCCL backend. Dropping it releases the reference.
pub(crate) struct RawGroup {
    ptr: NonNull<CGroup>,
}

// SAFETY: c10d backends take collectives from any thread (they queue work under their own
// locks), and the handle is only ever freed once, by Drop. What no lock can give, every rank
// issuing its collectives in the same order, is the caller's contract, as in PyTorch.
unsafe impl Send for RawGroup {}
// SAFETY: as for Send; `&RawGroup` only issues collectives.
unsafe impl Sync for RawGroup {}

impl RawGroup {
    /// Joins the group of `size` ranks whose rank 0 serves the store at `host:port`, with
    /// `timeout` for the rendezvous and every later collective.
    pub(crate) fn new(
        host: &str,
        port: u16,
        rank: usize,
        size: usize,
        timeout: Duration,
        gloo_interface: Option<&str>,
        nccl: bool,
    ) -> Result<Self, String> {
        let host = CString::new(host).map_err(|_| format!("host {host:?} contains a NUL"))?;
        let iface = gloo_interface
            .map(CString::new)
            .transpose()
            .map_err(|_| "the Gloo interface name contains a NUL".to_owned())?;
        let rank = c_int::try_from(rank).map_err(|_| format!("rank {rank} is too large"))?;
        let size = c_int::try_from(size).map_err(|_| format!("world size {size} is too large"))?;
        let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        let mut out: *mut CGroup = ptr::null_mut();
        // SAFETY: the strings are NUL-terminated and outlive the call; `out` is written only on
        // success.
        let message = unsafe {
            cvrl_c10d_group_new(
                host.as_ptr(),
                port,
                rank,
                size,
                timeout_ms,
                iface.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
                c_int::from(nccl),
                &mut out,
            )
        };
        check(message)?;
        let ptr = NonNull::new(out).ok_or("the c10d shim returned no group")?;
        Ok(RawGroup { ptr })
    }

    fn raw(&self) -> *mut CGroup {
        self.ptr.as_ptr()
    }

    /// Sums `t` over all ranks, in place.
    pub(crate) fn all_reduce_sum_(&self, t: &mut Tensor) -> Result<(), String> {
        // SAFETY: live group and tensor handles for the call; the shim writes the tensor's
        // data, which `t` (borrowed mutably) owns.
        check(unsafe { cvrl_c10d_all_reduce_sum(self.raw(), t.as_mut_ptr()) })
    }

    /// Every rank's `t`, concatenated along dim 0 in rank order (a 0-d `t` gives `[world]`).
    pub(crate) fn all_gather(&self, t: &Tensor) -> Result<Tensor, String> {
        let mut out = ptr::null_mut();
        // SAFETY: live handles; the shim only reads `t` and stores a new tensor in `out`.
        let message = unsafe { cvrl_c10d_all_gather(self.raw(), t.as_ptr(), &mut out) };
        take_tensor(message, out)
    }

    /// Overwrites `t` with rank `root`'s `t`.
    pub(crate) fn broadcast_(&self, t: &mut Tensor, root: usize) -> Result<(), String> {
        let root = c_int::try_from(root).map_err(|_| format!("root {root} is too large"))?;
        // SAFETY: as for all_reduce_sum_.
        check(unsafe { cvrl_c10d_broadcast(self.raw(), t.as_mut_ptr(), root) })
    }

    /// Returns once every rank has called it.
    pub(crate) fn barrier(&self) -> Result<(), String> {
        // SAFETY: live group handle.
        check(unsafe { cvrl_c10d_barrier(self.raw()) })
    }

    /// Every rank's last heartbeat, read through a new store connection that waits at most
    /// `timeout`: per rank, its wall-clock time at that beat in ms since the Unix epoch, and
    /// whether it said it is stopping on an error of its own.
    pub(crate) fn heartbeats(
        &self,
        size: usize,
        timeout: Duration,
    ) -> Result<Vec<(i64, bool)>, String> {
        let mut ms = vec![0i64; size];
        let mut stopping = vec![0 as c_int; size];
        let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        // SAFETY: live group handle; both arrays hold `size` elements, which the shim checks
        // against the world size before writing that many.
        check(unsafe {
            cvrl_c10d_heartbeats(
                self.raw(),
                timeout_ms,
                ms.as_mut_ptr(),
                stopping.as_mut_ptr(),
                size,
            )
        })?;
        Ok(ms.into_iter().zip(stopping).map(|(t, s)| (t, s != 0)).collect())
    }

    /// Makes this rank's heartbeat say, from now on, that it is stopping on its own error.
    pub(crate) fn mark_stopping(&self) -> Result<(), String> {
        // SAFETY: live group handle.
        check(unsafe { cvrl_c10d_mark_stopping(self.raw()) })
    }

    /// [`RawGroup::all_gather`] recorded for autograd: backward sums the gradient over ranks
    /// and keeps this rank's rows.
    pub(crate) fn all_gather_with_grad(&self, t: &Tensor) -> Result<Tensor, String> {
        let mut out = ptr::null_mut();
        // SAFETY: as for all_gather; the autograd node takes its own group reference.
        let message = unsafe { cvrl_c10d_all_gather_with_grad(self.raw(), t.as_ptr(), &mut out) };
        take_tensor(message, out)
    }

    /// The sum of `t` over ranks as a new tensor, recorded for autograd: backward sums the
    /// gradient over ranks.
    pub(crate) fn all_reduce_with_grad(&self, t: &Tensor) -> Result<Tensor, String> {
        let mut out = ptr::null_mut();
        // SAFETY: as for all_gather_with_grad.
        let message = unsafe { cvrl_c10d_all_reduce_with_grad(self.raw(), t.as_ptr(), &mut out) };
        take_tensor(message, out)
    }
}

impl Drop for RawGroup {
    fn drop(&mut self) {
        // SAFETY: we own exactly one reference, released here once.
        unsafe { cvrl_c10d_group_free(self.raw()) };
    }
}

/// A `c10d::Reducer` (DDP's gradient averaging during backward) over `params`, which keeps
/// its own reference to the group. Dropping it removes its autograd hooks.
pub(crate) struct RawReducer {
    ptr: NonNull<CReducer>,
}

// SAFETY: the reducer is only touched through `&mut self` (prepare) and Drop; its hooks run on
// autograd threads under its own mutex, as in PyTorch's DDP.
unsafe impl Send for RawReducer {}

impl RawReducer {
    /// Hooks `params` (in bucket order) for averaging over `group` in buckets of
    /// `bucket_bytes`.
    pub(crate) fn new(
        group: &RawGroup,
        params: &[&Tensor],
        bucket_bytes: usize,
    ) -> Result<Self, String> {
        let ptrs = handles(params);
        let bucket_bytes = i64::try_from(bucket_bytes).unwrap_or(i64::MAX);
        let mut out: *mut CReducer = ptr::null_mut();
        // SAFETY: live group and tensor handles for the call (the reducer keeps its own
        // references to the tensors' implementations); `out` is written only on success.
        let message = unsafe {
            cvrl_c10d_reducer_new(group.raw(), ptrs.as_ptr(), ptrs.len(), bucket_bytes, &mut out)
        };
        check(message)?;
        let ptr = NonNull::new(out).ok_or("the c10d shim returned no reducer")?;
        Ok(RawReducer { ptr })
    }

    /// Arms the hooks for the next backward of `outputs`.
    pub(crate) fn prepare(&mut self, outputs: &[&Tensor]) -> Result<(), String> {
        let ptrs = handles(outputs);
        // SAFETY: live reducer and tensor handles for the call.
        check(unsafe { cvrl_c10d_reducer_prepare(self.ptr.as_ptr(), ptrs.as_ptr(), ptrs.len()) })
    }
}

impl Drop for RawReducer {
    fn drop(&mut self) {
        // SAFETY: we own the reducer, freed here once.
        unsafe { cvrl_c10d_reducer_free(self.ptr.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    //! A world of one rank exercises every entry point in-process: its collectives are
    //! identities, so each result is known exactly. Two ranks are in `tests/dist.rs`.

    use super::*;
    use tch::{Device, Kind};

    /// A port nobody listens on right now (the OS picks it; a race with another process
    /// grabbing it in between is possible but needs that process to bind the same port).
    fn free_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.local_addr().expect("local address").port()
    }

    fn solo() -> RawGroup {
        RawGroup::new("127.0.0.1", free_port(), 0, 1, Duration::from_secs(20), None, false)
            .expect("a world of one on 127.0.0.1")
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1)).expect("f32 CPU tensor")
    }

    #[test]
    fn a_world_of_one_gives_identities() {
        let group = solo();
        let x = Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]);

        let mut reduced = x.copy();
        group.all_reduce_sum_(&mut reduced).unwrap();
        assert_eq!(values(&reduced), values(&x));

        // A transposed view is not contiguous: the shim reduces a copy and writes it back.
        let mut view = x.copy().tr();
        group.all_reduce_sum_(&mut view).unwrap();
        assert_eq!(values(&view), values(&x.tr()));

        let gathered = group.all_gather(&x).unwrap();
        assert_eq!(gathered.size(), [2, 3]);
        assert_eq!(values(&gathered), values(&x));
        assert_eq!(group.all_gather(&Tensor::from(2.5f32)).unwrap().size(), [1]);

        let mut b = x.copy();
        group.broadcast_(&mut b, 0).unwrap();
        assert_eq!(values(&b), values(&x));
        group.barrier().unwrap();
    }

    #[test]
    fn differentiable_collectives_of_one_rank_pass_gradients_through() {
        let group = solo();
        let x = Tensor::from_slice(&[1.0f32, -2.0, 3.0]).set_requires_grad(true);
        let weights = Tensor::from_slice(&[0.5f32, 4.0, -1.0]);
        let y = group.all_gather_with_grad(&x).unwrap();
        let z = group.all_reduce_with_grad(&y).unwrap();
        (z * &weights).sum(Kind::Float).backward();
        assert_eq!(values(&x.grad()), values(&weights));
    }

    #[test]
    fn errors_come_back_as_messages() {
        let group = solo();
        let err = group.broadcast_(&mut Tensor::zeros([2], (Kind::Float, Device::Cpu)), 3);
        assert!(err.unwrap_err().contains("root 3"), "broadcast from a rank outside the world");

        let err =
            RawGroup::new("127.0.0.1", free_port(), 2, 2, Duration::from_secs(1), None, false)
                .err()
                .expect("rank 2 of 2 is refused");
        assert!(err.contains("rank 2"), "{err}");
        assert!(RawGroup::new("a\0b", 1, 0, 1, Duration::from_secs(1), None, false).is_err());
        // Without a GPU an NCCL backend is refused with a message, whether the shim was built
        // without NCCL or NCCL finds no device.
        if !tch::Cuda::is_available() {
            let err =
                RawGroup::new("127.0.0.1", free_port(), 0, 1, Duration::from_secs(5), None, true)
                    .err()
                    .expect("no NCCL group without a GPU");
            assert!(err.contains("NCCL"), "{err}");
        }
    }

    #[test]
    fn undefined_gradients_become_zeros_and_defined_ones_stay() {
        let p = Tensor::ones([2, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        assert!(!p.grad().defined());
        define_grad(&p).unwrap();
        assert_eq!(values(&p.grad()), vec![0.0; 4]);

        (&p * 3.0).sum(Kind::Float).backward();
        define_grad(&p).unwrap();
        assert_eq!(values(&p.grad()), vec![3.0; 4]);
    }

    #[test]
    fn a_reducer_of_one_rank_leaves_gradients_as_they_are() {
        let group = solo();
        let w = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        let mut reducer = RawReducer::new(&group, &[&w], 1 << 20).unwrap();
        for step in 1..=3 {
            let loss = (&w * &w).sum(Kind::Float) * f64::from(step);
            reducer.prepare(&[&loss]).unwrap();
            loss.backward();
            assert_eq!(values(&w.grad()), vec![2.0 * step as f32, 4.0 * step as f32]);
            let _ = w.grad().zero_();
        }
        drop(reducer);
        // Once the reducer is gone, backward is autograd's alone.
        (&w * 3.0).sum(Kind::Float).backward();
        assert_eq!(values(&w.grad()), vec![3.0, 3.0]);
    }

    #[test]
    fn a_group_outlives_its_handle_while_a_graph_needs_it() {
        let x = Tensor::from_slice(&[2.0f32]).set_requires_grad(true);
        let y = {
            let group = solo();
            group.all_reduce_with_grad(&x).unwrap()
        };
        // The handle is gone; the autograd node's own reference runs backward.
        (y * 5.0).sum(Kind::Float).backward();
        assert_eq!(values(&x.grad()), vec![5.0]);
    }
}
