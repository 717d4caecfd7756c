//! CVRL's temporal interval sampler and evaluation clip placement, which live in
//! [`cvrl_formats::sampler`] so that the Python package samples pairs without linking
//! libtorch. Re-exported here so the trainer's callers keep their paths.

pub use cvrl_formats::sampler::*;
