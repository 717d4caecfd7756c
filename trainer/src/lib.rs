//! CVRL training on [tch] (libtorch): the clip sampler, the video augmentations, the 3D
//! ResNet (R3D) encoder, the InfoNCE loss and the training loop all live here.
//!
//! This crate reads decoded clips through `cvrl-formats` and never links FFmpeg: its binaries
//! must run on a GPU machine that has torch but no FFmpeg. It links libtorch dynamically; the
//! build script adds an rpath to libtorch and keeps libtorch_cuda.so linked so that CUDA is
//! found at run time (see `build.rs`).
//!
//! So far it holds [`device`] (picking and describing the device to train on) and
//! [`sampler`] (CVRL's temporal interval sampler and evaluation clip placement).

pub mod device;
pub mod loader;
pub mod sampler;
