//! `cvrl._cvrl`: the native half of the `cvrl` Python package (pyo3, built by maturin as one
//! abi3 wheel; `scripts/python-package.sh`).
//!
//! It opens shard sets through `cvrl-formats`' validating reader and hands Python what a
//! training loop needs: frames in Rust-owned buffers that `cvrl.ShardSet` views as numpy
//! arrays without a copy, their memory reused once Python drops them ([`set`], [`frames`]);
//! the index as an Arrow C stream that pyarrow imports without a copy ([`index`]); clip
//! placement from [`cvrl_formats::sampler`] (the trainer's own sampling code); shared memory
//! that DataLoader workers collate batches into, reused from batch to batch ([`shared`]);
//! and reading errors as Python exceptions naming the shard and the video ([`error`]).
//! Decoding runs with the GIL released, so DataLoader worker threads and processes scale.
//! Nothing here links torch; the PyTorch side (`cvrl.torch`) is Python.

use pyo3::prelude::*;

mod error;
mod frames;
mod index;
mod set;
mod shared;

/// The module `cvrl._cvrl`; `cvrl` (python/cvrl) wraps it.
#[pymodule]
fn _cvrl(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<set::ShardSet>()?;
    m.add_class::<frames::Frames>()?;
    m.add_class::<index::IndexStream>()?;
    m.add_class::<shared::SharedBatches>()?;
    m.add_class::<shared::Slot>()?;
    m.add("ShardError", m.py().get_type::<error::ShardError>())?;
    m.add_function(wrap_pyfunction!(set::sample_seed, m)?)?;
    Ok(())
}
