//! Keeping the ranks' models equal: [`GradSync`] averages the gradients of a [`VarStore`]
//! over the ranks after backward, bucketed, and [`broadcast_variables`] copies rank 0's
//! variables to every rank before training starts.
//!
//! The gradients are reduced after backward rather than overlapped with it. PyTorch's DDP
//! overlaps through `c10d::Reducer`, which libtorch_cpu.so exports and which works without
//! Python, but it hooks every parameter's gradient accumulator, must be told about each
//! forward (`prepare_for_backward`), keeps its own bucket views, and fails a step in which a
//! parameter got no gradient unless it searches the graph for unused ones; see the crate's
//! `dist` module docs for where that leaves it. Here one pass per bucket copies the
//! gradients into a flat buffer kept from step to step, sums it over the ranks, divides by
//! the world size and copies back.

use std::collections::HashMap;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::ffi;
use super::{DistError, ProcessGroup};

/// DDP's default bucket size: 25 MiB.
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// Consecutive parameters of one device and kind, reduced as one flat tensor.
struct Bucket {
    params: Vec<Tensor>,
    /// `[Σ numel]`, allocated at the first reduction and reused.
    flat: Option<Tensor>,
    numel: i64,
    options: (Kind, Device),
}

/// Averages a [`VarStore`]'s gradients over the ranks of a group.
pub struct GradSync {
    group: ProcessGroup,
    buckets: Vec<Bucket>,
}

impl std::fmt::Debug for GradSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: Vec<i64> = self.buckets.iter().map(|b| b.numel).collect();
        write!(f, "GradSync({:?}, bucket elements {sizes:?})", self.group)
    }
}

impl GradSync {
    /// Buckets of at most `bucket_bytes` (a parameter larger than that gets a bucket of its
    /// own) over the trainable variables of `vs`, in the order of their names, so that every
    /// rank, having built the same model, reduces the same tensors in the same order.
    ///
    /// Checks with one small all-gather that every rank has the same number of trainable
    /// elements in as many buckets (a collective: call it on every rank).
    pub fn new(
        vs: &VarStore,
        group: &ProcessGroup,
        bucket_bytes: usize,
    ) -> Result<Self, DistError> {
        let variables: HashMap<String, Tensor> = vs.variables();
        let mut named: Vec<(String, Tensor)> =
            variables.into_iter().filter(|(_, t)| t.requires_grad()).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));

        let mut buckets: Vec<Bucket> = Vec::new();
        for (_, param) in named {
            let options = (param.kind(), param.device());
            let numel = param.numel() as i64;
            let bytes = numel as usize * param.kind().elt_size_in_bytes();
            let fits = buckets.last().is_some_and(|b| {
                b.options == options
                    && (b.numel as usize) * options.0.elt_size_in_bytes() + bytes <= bucket_bytes
            });
            if !fits {
                buckets.push(Bucket { params: Vec::new(), flat: None, numel: 0, options });
            }
            let bucket = buckets.last_mut().expect("a bucket was just pushed");
            bucket.params.push(param);
            bucket.numel += numel;
        }
        let layout = [buckets.len() as i64, buckets.iter().map(|b| b.numel).sum::<i64>()];
        let all = group.all_gather(&Tensor::from_slice(&layout))?;
        let all = Vec::<i64>::try_from(&all).unwrap_or_default();
        if all.chunks(2).any(|rank_layout| rank_layout != layout) {
            return Err(DistError::Collective {
                op: "gradient bucket check",
                rank: group.rank(),
                world_size: group.world_size(),
                message: format!(
                    "ranks disagree on the trainable parameters: [buckets, elements] per rank \
                     {all:?}"
                ),
            });
        }
        Ok(GradSync { group: group.clone(), buckets })
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Replaces every parameter's gradient by its mean over the ranks. A parameter that got
    /// no gradient on this rank counts as zero (and gets a zero gradient), so every rank
    /// reduces the same buffers. Call it after backward, before the optimiser step, on every
    /// rank.
    pub fn all_reduce_mean(&mut self) -> Result<(), DistError> {
        let world = self.group.world_size() as f64;
        let rank = self.group.rank();
        let world_size = self.group.world_size();
        let failed = |message| DistError::Collective {
            op: "gradient all_reduce",
            rank,
            world_size,
            message,
        };
        tch::no_grad(|| {
            for bucket in &mut self.buckets {
                let mut flat = match bucket.flat.take() {
                    Some(flat) => flat,
                    None => Tensor::empty([bucket.numel], bucket.options),
                };
                let mut offset = 0;
                for p in &bucket.params {
                    ffi::define_grad(p).map_err(failed)?;
                    let n = p.numel() as i64;
                    flat.narrow(0, offset, n).copy_(&p.grad().reshape([-1]));
                    offset += n;
                }
                self.group.all_reduce_sum_(&mut flat)?;
                let _ = flat.g_div_scalar_(world);
                let mut offset = 0;
                for p in &bucket.params {
                    let n = p.numel() as i64;
                    p.grad().copy_(&flat.narrow(0, offset, n).view_as(p));
                    offset += n;
                }
                bucket.flat = Some(flat);
            }
            Ok(())
        })
    }
}

/// Overwrites every variable of `vs` (parameters and buffers such as BatchNorm's running
/// statistics) with rank `root`'s, in name order: run once after building or loading the
/// model so that all ranks start from the same weights.
pub fn broadcast_variables(
    vs: &VarStore,
    group: &ProcessGroup,
    root: usize,
) -> Result<(), DistError> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (_, mut t) in named {
            group.broadcast_(&mut t, root)?;
        }
        Ok(())
    })
}
