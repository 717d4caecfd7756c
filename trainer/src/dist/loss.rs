//! InfoNCE with negatives from every rank: [`info_nce_global`].
//!
//! Each rank L2-normalises its own `[N, D]` embeddings of both views, gathers every rank's
//! (with gradient) into `[W·N, D]`, and scores its N local anchors of each view against all
//! 2·W·N clips: the positive is the other view of the same video, the 2·W·N − 2 others are
//! negatives, as the reference does on TPU replicas. The formula and scaling are
//! [`crate::loss::info_nce`]'s (the shared piece is `loss::nt_xent`), with the mean over
//! the N local anchors, so the mean of the W ranks' losses equals `info_nce` of the
//! concatenated batch, and after [`crate::dist::GradSync`] divides the summed gradients by W
//! each rank holds the gradient of that single-process loss.

use tch::{Kind, Tensor};

use super::{DistError, ProcessGroup};
use crate::loss::{check_pair, l2_normalize, nt_xent};

/// NT-Xent loss of this rank's paired embeddings `z_a`, `z_b` (`[N, D]`, the same N on every
/// rank) against the whole group's: a scalar f32 tensor, `loss_a + loss_b` over the local
/// anchors. Runs two all-gathers now and, in backward, two all-reduces: every rank must call
/// it, and run backward, in step.
///
/// Like `info_nce`, it computes in f32 with CUDA autocast off; gradients reach the inputs in
/// their own kind.
///
/// # Panics
///
/// If `z_a` and `z_b` are not both `[N, D]` with the same N and D, or τ is not positive.
pub fn info_nce_global(
    z_a: &Tensor,
    z_b: &Tensor,
    temperature: f64,
    group: &ProcessGroup,
) -> Result<Tensor, DistError> {
    check_pair(z_a, z_b, temperature);
    crate::device::cuda_autocast(false, || {
        let a = l2_normalize(&z_a.to_kind(Kind::Float));
        let b = l2_normalize(&z_b.to_kind(Kind::Float));
        let a_all = group.all_gather_with_grad(&a)?;
        let b_all = group.all_gather_with_grad(&b)?;
        let offset = i64::try_from(group.rank()).expect("rank fits i64") * a.size()[0];
        Ok(nt_xent(&a, &b, Some((&a_all, &b_all)), offset, temperature))
    })
}
