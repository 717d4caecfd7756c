//! Keeping the ranks' models equal: the gradients of a [`VarStore`] averaged over the ranks,
//! two ways, and [`broadcast_variables`], which copies rank 0's variables to every rank
//! before training starts.
//!
//! - [`GradReducer`] is PyTorch DDP's own engine, `c10d::Reducer` (exported by
//!   libtorch_cpu.so, no Python involved): hooks on every parameter's gradient accumulator
//!   all-reduce a bucket as soon as its gradients are ready, so communication overlaps the
//!   rest of backward. Arm it after each forward with [`GradReducer::prepare_for_backward`].
//!   Every trainable variable must get a gradient in every armed backward (the model's
//!   always do); otherwise the next `prepare_for_backward` fails.
//! - [`GradSync`] reduces after backward instead: one pass per bucket copies the gradients
//!   into a flat buffer kept from step to step, sums it over the ranks, divides by the world
//!   size and copies back. No hooks, no arming, parameters without a gradient count as zero;
//!   the communication adds to the step time instead of hiding behind backward.

use std::collections::HashMap;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::ffi::{self, RawReducer};
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
        let total = buckets.iter().map(|b| b.numel).sum::<i64>();
        check_same_parameters(group, "gradient bucket check", buckets.len(), total)?;
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

/// Fails unless every rank has `count` trainable tensors of `elements` elements in all (one
/// small all-gather): reducing different lists would pair unrelated buffers, or hang.
fn check_same_parameters(
    group: &ProcessGroup,
    op: &'static str,
    count: usize,
    elements: i64,
) -> Result<(), DistError> {
    let layout = [count as i64, elements];
    let all = group.all_gather(&Tensor::from_slice(&layout))?;
    let all = Vec::<i64>::try_from(&all).unwrap_or_default();
    if all.len() != 2 * group.world_size() || all.chunks(2).any(|rank| rank != layout) {
        return Err(DistError::Collective {
            op,
            rank: group.rank(),
            world_size: group.world_size(),
            message: format!(
                "ranks disagree on the trainable parameters: [tensors or buckets, elements] per \
                 rank {all:?}"
            ),
        });
    }
    Ok(())
}

/// Averages a [`VarStore`]'s gradients over the ranks during backward, through
/// `c10d::Reducer` (module docs).
pub struct GradReducer {
    raw: RawReducer,
    group: ProcessGroup,
}

impl std::fmt::Debug for GradReducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GradReducer({:?})", self.group)
    }
}

impl GradReducer {
    /// Hooks the trainable variables of `vs` in reverse creation order (the last layers'
    /// gradients are ready first), in buckets of `bucket_bytes` (the first of 1 MiB, as DDP).
    /// After the first step the buckets are rebuilt once in the order gradients arrived.
    /// Checks that every rank has the same parameters (a collective: call it on every rank).
    pub fn new(
        vs: &VarStore,
        group: &ProcessGroup,
        bucket_bytes: usize,
    ) -> Result<Self, DistError> {
        let mut params = vs.trainable_variables();
        params.reverse();
        let elements = params.iter().map(|p| p.numel() as i64).sum();
        check_same_parameters(group, "gradient reducer check", params.len(), elements)?;
        let refs: Vec<&Tensor> = params.iter().collect();
        let raw = RawReducer::new(group.raw(), &refs, bucket_bytes).map_err(|message| {
            DistError::Collective {
                op: "gradient reducer setup",
                rank: group.rank(),
                world_size: group.world_size(),
                message,
            }
        })?;
        Ok(GradReducer { raw, group: group.clone() })
    }

    /// Arms the hooks for the backward of `outputs` (the loss): call it after the forward
    /// pass and before backward, on every rank, in each step whose gradients should be
    /// averaged. After that backward every trainable gradient holds its mean over the ranks.
    /// With gradient accumulation, arm only the last micro-batch's backward: the earlier ones
    /// accumulate locally and the armed one reduces the sums.
    pub fn prepare_for_backward(&mut self, outputs: &[&Tensor]) -> Result<(), DistError> {
        self.raw.prepare(outputs).map_err(|message| DistError::Collective {
            op: "gradient reducer prepare",
            rank: self.group.rank(),
            world_size: self.group.world_size(),
            message,
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
