//! Data-parallel training on PyTorch's distributed engine (c10d): Gloo between CPU tensors,
//! NCCL between CUDA tensors, reached through a small C++ shim (`trainer/csrc/c10d_shim.cpp`,
//! compiled by `build.rs`).
//!
//! - [`Launch`]: who this process is, from torchrun's or Slurm's variables; `None` when it
//!   runs alone, in which case none of this module is used and training is unchanged.
//! - [`ProcessGroup`]: the rendezvous and the collectives (all-reduce, all-gather,
//!   broadcast, barrier), plus all-gather and all-reduce with gradient.
//! - [`info_nce_global`]: CVRL's InfoNCE with negatives from every rank.
//! - [`GradReducer`]: gradients averaged over ranks during backward (DDP's `c10d::Reducer`);
//!   [`GradSync`]: the same after backward, bucket by bucket; [`broadcast_variables`]: equal
//!   weights on every rank at the start.
//! - [`SyncBatchNorm`]: BatchNorm over the group's batch (`crate::model::Norm::SyncBatch`).
//! - [`Lost`]: which rank stopped answering, from the heartbeats, after a collective failed.
//!
//! One step of a rank, in order:
//!
//! ```no_run
//! use cvrl_trainer::dist::{
//!     broadcast_variables, info_nce_global, GradReducer, GroupOptions, Launch, ProcessGroup,
//!     DEFAULT_BUCKET_BYTES,
//! };
//! use cvrl_trainer::model::{HeadConfig, Model, Norm, R3dConfig};
//! use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};
//!
//! # fn main() -> anyhow::Result<()> {
//! let launch = Launch::from_env()?.expect("started by torchrun or srun");
//! let device = Device::cuda_if_available();
//! let group = ProcessGroup::new(&launch, &GroupOptions::for_device(device))?;
//! let vs = nn::VarStore::new(device);
//! let norm = Norm::SyncBatch(group.clone());
//! let model = Model::with_norm(&vs.root(), &R3dConfig::r3d18(), &HeadConfig::reference(), &norm)?;
//! broadcast_variables(&vs, &group, 0)?; // same start on every rank
//! let mut reducer = GradReducer::new(&vs, &group, DEFAULT_BUCKET_BYTES)?;
//! let mut opt = nn::Sgd::default().build(&vs, 0.1)?;
//! # let (view_a, view_b) = (Tensor::zeros([2, 3, 8, 32, 32], (Kind::Float, device)), Tensor::zeros([2, 3, 8, 32, 32], (Kind::Float, device)));
//! // This rank's slice of the global batch: both views of its N videos.
//! let (_, z_a) = model.forward_t(&view_a, true);
//! let (_, z_b) = model.forward_t(&view_b, true);
//! let loss = info_nce_global(&z_a, &z_b, 0.1, &group)?;
//! opt.zero_grad();
//! reducer.prepare_for_backward(&[&loss])?; // this backward averages the gradients
//! loss.f_backward()?; // backward runs collectives: f_backward returns their errors
//! opt.step();
//! # Ok(())
//! # }
//! ```
//!
//! With [`GradSync`] instead of [`GradReducer`], call `grads.all_reduce_mean()?` between
//! `f_backward` and `step` (and nothing before backward).
//!
//! Every rank runs the same steps with the same batch size: collectives pair up by order.
//! A rank that dies makes the others' next collective fail at once (Gloo notices the closed
//! connection); one that hangs makes them fail after [`GroupOptions::timeout`]. Every rank
//! writes a heartbeat to the group's store once a second, and [`ProcessGroup::find_lost`]
//! reads them after such a failure to name the rank that stopped ([`Lost`]).

mod ffi;
mod grad;
mod group;
mod launch;
mod loss;
mod lost;
mod sync_bn;

pub use grad::{broadcast_variables, GradReducer, GradSync, DEFAULT_BUCKET_BYTES};
pub use group::{nccl_available, DistError, GroupOptions, ProcessGroup, DEFAULT_TIMEOUT};
pub use launch::{first_host, slurm_default_port, Launch, LaunchError, Launcher};
pub use loss::info_nce_global;
pub use lost::{Lost, READ_TIMEOUT, WATCH};
pub use sync_bn::{sync_batch_norm, SyncBatchNorm};
