//! CVRL training on [tch] (libtorch): the clip sampler, the video augmentations, the 3D
//! ResNet (R3D) encoder, the InfoNCE loss and the training loop all live here.
//!
//! This crate reads decoded clips through `cvrl-formats` and never links FFmpeg: its binaries
//! must run on a GPU machine that has torch but no FFmpeg. It links libtorch dynamically; the
//! build script adds an rpath to libtorch and keeps libtorch_cuda.so linked so that CUDA is
//! found at run time (see `build.rs`).
//!
//! So far it holds [`device`] (picking and describing the device to train on),
//! [`sampler`] (CVRL's temporal interval sampler and evaluation clip placement),
//! [`augment`] (CVRL's temporally consistent crop, flip and colour augmentation, on the CPU),
//! [`model`] (the R3D backbone and projection head), [`loss`] (the InfoNCE loss),
//! [`schedule`] (warm-up + cosine learning rate, linear scaling), [`optim`] (SGD with
//! momentum and LARS, weight decay on kernels only), [`checkpoint`] (atomic checkpoints,
//! resume, encoder export), [`train`] (the training loop behind the `cvrl-train` binary) and
//! [`eval`] (linear probe, kNN and plots behind `cvrl-eval`).

pub mod augment;
pub mod checkpoint;
pub mod device;
pub mod dist;
pub mod eval;
pub mod loader;
pub mod loss;
pub mod mismatch;
pub mod model;
pub mod optim;
pub mod run_dir;
pub mod sampler;
pub mod schedule;
pub mod tensorboard;
pub mod train;
