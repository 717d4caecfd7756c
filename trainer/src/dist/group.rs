//! [`ProcessGroup`]: this process's membership of a data-parallel run, and the collectives
//! the trainer uses on it, each returning a [`DistError`] that names the operation and the
//! rank instead of throwing or hanging.
//!
//! Every rank must issue the same collectives in the same order, on tensors of the same shape
//! and kind (for [`ProcessGroup::all_gather`]: the same shape on every rank). A collective
//! whose peer died fails as soon as the transport notices (Gloo: at once, the connection
//! closes); one whose peer hangs fails after [`GroupOptions::timeout`]. Which peer it was,
//! the error cannot say: [`ProcessGroup::find_lost`] (in `lost.rs`) asks the heartbeats.

use std::sync::Arc;
use std::time::Duration;

use tch::{Device, Tensor};

use super::ffi::{self, RawGroup};
use super::launch::Launch;

/// A rendezvous or a collective that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DistError {
    /// Joining the group failed: the store at the master address was not reached, or not
    /// every rank arrived within the timeout.
    #[error("rank {rank} of {world_size} could not join the group at {addr}:{port}: {message}")]
    Rendezvous {
        /// The master address.
        addr: String,
        /// The master port.
        port: u16,
        /// This rank.
        rank: usize,
        /// The world size.
        world_size: usize,
        /// What c10d said.
        message: String,
    },
    /// A collective failed (a lost peer, a timeout, a tensor it cannot take).
    #[error("{op} failed on rank {rank} of {world_size}: {message}")]
    Collective {
        /// The collective: `all_reduce`, `all_gather`, `broadcast`, `barrier`, ...
        op: &'static str,
        /// This rank.
        rank: usize,
        /// The world size.
        world_size: usize,
        /// What c10d said.
        message: String,
    },
}

/// How to build a [`ProcessGroup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOptions {
    /// Limit of the rendezvous and of every collective: how long a rank waits for a peer that
    /// hangs. PyTorch's default is 30 minutes.
    pub timeout: Duration,
    /// Also create an NCCL backend for CUDA tensors (needs the shim built with NCCL, see
    /// [`nccl_available`]). CPU tensors always go through Gloo.
    pub nccl: bool,
    /// The network interface Gloo binds to (`GLOO_SOCKET_IFNAME`), else the master's address
    /// when it is a loopback one, else this host name's address.
    pub gloo_interface: Option<String>,
}

/// PyTorch's default collective timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

impl GroupOptions {
    /// Options for training on `device`: NCCL when it is a CUDA device, the default timeout,
    /// and Gloo's interface from `GLOO_SOCKET_IFNAME` if set.
    pub fn for_device(device: Device) -> Self {
        GroupOptions {
            timeout: DEFAULT_TIMEOUT,
            nccl: device.is_cuda(),
            gloo_interface: std::env::var("GLOO_SOCKET_IFNAME").ok().filter(|s| !s.is_empty()),
        }
    }
}

/// Whether this build can put CUDA tensors through NCCL (libtorch_cuda linked and NCCL's
/// headers found when the trainer was built).
pub fn nccl_available() -> bool {
    ffi::nccl_compiled()
}

/// This process's membership of a group of `world_size` ranks. Cloning shares the membership;
/// the group is left when the last clone (and the last autograd graph that needs it) drops.
#[derive(Clone)]
pub struct ProcessGroup {
    raw: Arc<RawGroup>,
    rank: usize,
    world_size: usize,
    master_addr: Arc<str>,
    master_port: u16,
    timeout: Duration,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProcessGroup(rank {} of {})", self.rank, self.world_size)
    }
}

impl ProcessGroup {
    /// Meets the other ranks of `launch` at its master address (rank 0 serves the store
    /// there) and builds the backends; returns once all ranks have joined.
    pub fn new(launch: &Launch, options: &GroupOptions) -> Result<Self, DistError> {
        let raw = RawGroup::new(
            &launch.master_addr,
            launch.master_port,
            launch.rank,
            launch.world_size,
            options.timeout,
            options.gloo_interface.as_deref(),
            options.nccl,
        )
        .map_err(|message| DistError::Rendezvous {
            addr: launch.master_addr.clone(),
            port: launch.master_port,
            rank: launch.rank,
            world_size: launch.world_size,
            message,
        })?;
        Ok(ProcessGroup {
            raw: Arc::new(raw),
            rank: launch.rank,
            world_size: launch.world_size,
            master_addr: launch.master_addr.as_str().into(),
            master_port: launch.master_port,
            timeout: options.timeout,
        })
    }

    /// The shim's handle, for the other modules of `dist`.
    pub(crate) fn raw(&self) -> &RawGroup {
        &self.raw
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Where rank 0 serves the group's store.
    pub fn master_addr(&self) -> &str {
        &self.master_addr
    }

    /// The store's port.
    pub fn master_port(&self) -> u16 {
        self.master_port
    }

    /// The limit of every collective ([`GroupOptions::timeout`]).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn failed(&self, op: &'static str) -> impl FnOnce(String) -> DistError + '_ {
        move |message| DistError::Collective {
            op,
            rank: self.rank,
            world_size: self.world_size,
            message,
        }
    }

    /// Sums `t` over all ranks, in place (no autograd record).
    pub fn all_reduce_sum_(&self, t: &mut Tensor) -> Result<(), DistError> {
        self.raw.all_reduce_sum_(t).map_err(self.failed("all_reduce"))
    }

    /// Every rank's `t` concatenated along dim 0 in rank order: `[world * N, ...]` for `t` of
    /// `[N, ...]` (no autograd record).
    pub fn all_gather(&self, t: &Tensor) -> Result<Tensor, DistError> {
        self.raw.all_gather(t).map_err(self.failed("all_gather"))
    }

    /// Overwrites `t` with rank `root`'s `t`.
    pub fn broadcast_(&self, t: &mut Tensor, root: usize) -> Result<(), DistError> {
        self.raw.broadcast_(t, root).map_err(self.failed("broadcast"))
    }

    /// Returns once every rank has called it.
    pub fn barrier(&self) -> Result<(), DistError> {
        self.raw.barrier().map_err(self.failed("barrier"))
    }

    /// [`ProcessGroup::all_gather`] with gradient (`torch.distributed.nn.functional.
    /// all_gather`): backward sums the incoming gradient over ranks and hands this rank its
    /// own rows. Backward is itself a collective, so every rank must run it.
    pub fn all_gather_with_grad(&self, t: &Tensor) -> Result<Tensor, DistError> {
        self.raw.all_gather_with_grad(t).map_err(self.failed("all_gather_with_grad"))
    }

    /// The sum of `t` over ranks, as a new tensor with gradient: backward sums the incoming
    /// gradient over ranks. Backward is itself a collective, so every rank must run it.
    pub fn all_reduce_with_grad(&self, t: &Tensor) -> Result<Tensor, DistError> {
        self.raw.all_reduce_with_grad(t).map_err(self.failed("all_reduce_with_grad"))
    }
}
