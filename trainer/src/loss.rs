//! CVRL's contrastive loss: SimCLR's NT-Xent (InfoNCE) over the two clips of each video, as
//! the reference's `losses.py` computes it.
//!
//! For a batch of N videos, `z_a[i]` and `z_b[i]` are the embeddings of the two clips of video
//! `i`. Both are L2-normalised; for each clip, its positive is the other clip of its video and
//! its negatives are the other 2N - 2 clips of the batch (both views). With cosine similarity
//! `s` and temperature τ, the loss of anchor clip `i` (one of the 2N) is
//!
//! ```text
//! ℓ_i = −log( exp(s(i, i')/τ) / Σ_{k ≠ i, k ≤ 2N} exp(s(i, k)/τ) )
//! ```
//!
//! and [`info_nce`] returns `loss_a + loss_b`, each direction the mean of `ℓ` over its N
//! anchors, i.e. `(1/N) Σ_{i=1..2N} ℓ_i`. That is exactly **twice** SimCLR's `L`, which
//! averages `ℓ` over all 2N anchors, and equal to "`L` averaged over N" when that means
//! `(1/N) Σ_videos (ℓ_i + ℓ_i')`, the reading the reference code supports. The factor 2 is
//! kept on purpose: the reference adds its weight decay (1e-6 · Σ ½‖w‖²) to this summed loss,
//! so halving it would double the relative weight decay.
//!
//! [`cross_entropy`] is the supervised baseline's loss, on the same f32 footing.
//!
//! Negatives come from the whole batch passed in. The reference gathers embeddings across
//! TPU replicas first (global batch); on one device the local batch is the global one, and
//! across processes `crate::dist::info_nce_global` gathers them the same way, through
//! `nt_xent`, the piece both share.

use tch::{Kind, Tensor};

/// What the reference subtracts from the self-similarity logits (`LARGE_NUM`). After the
/// shift `exp` underflows to exactly 0 in f32, so the clip never counts as its own negative,
/// while, unlike `-inf`, no `inf - inf` can turn into NaN anywhere downstream.
pub const SELF_MASK: f64 = 1e9;

/// The reference's temperature τ.
pub const REFERENCE_TEMPERATURE: f64 = 0.1;

/// NT-Xent loss of paired embeddings `z_a`, `z_b` (`[N, D]`, row `i` of each from the same
/// video) at temperature τ: a scalar f32 tensor, `loss_a + loss_b` (see the module docs for
/// how this relates to the paper's formula).
///
/// The loss is computed in f32 whatever the input kind (bf16 embeddings are upcast, and
/// CUDA autocast is switched off inside), because the softmax over 2N - 1 logits scaled by
/// 1/τ = 10 loses too much in bf16. Gradients flow back to the inputs in their own kind.
///
/// # Panics
///
/// If `z_a` and `z_b` are not both `[N, D]` with the same N and D, or τ is not positive.
pub fn info_nce(z_a: &Tensor, z_b: &Tensor, temperature: f64) -> Tensor {
    check_pair(z_a, z_b, temperature);
    crate::device::cuda_autocast(false, || {
        let a = l2_normalize(&z_a.to_kind(Kind::Float));
        let b = l2_normalize(&z_b.to_kind(Kind::Float));
        nt_xent(&a, &b, None, 0, temperature)
    })
}

/// The NT-Xent loss of [`info_nce`] for N local anchors of each view, the L2-normalised
/// `a`, `b` (`[N, D]`), against M candidates of each view: `a`, `b` themselves when `all` is
/// `None` (one device, M = N), else `all = (a_all, b_all)` (`[M, D]`, the global batch
/// gathered across ranks, see `crate::dist::info_nce_global`), in which local anchor `i` is
/// candidate `offset + i`. Returns `loss_a + loss_b`, each the mean over the N local anchors.
///
/// The graph is built in one fixed order (self-similarities first), so the single-process
/// loss and its gradients stay bit-identical to what they were before the global variant.
pub(crate) fn nt_xent(
    a: &Tensor,
    b: &Tensor,
    all: Option<(&Tensor, &Tensor)>,
    offset: i64,
    temperature: f64,
) -> Tensor {
    let (a_all, b_all) = all.unwrap_or((a, b));
    let (n, m) = (a.size()[0], a_all.size()[0]);
    let device = a.device();
    let labels = Tensor::arange_start(offset, offset + n, (Kind::Int64, device));
    let mask = labels.one_hot(m).to_kind(Kind::Float) * SELF_MASK;

    let logits_aa = a.matmul(&a_all.tr()) / temperature - &mask;
    let logits_bb = b.matmul(&b_all.tr()) / temperature - &mask;
    let logits_ab = a.matmul(&b_all.tr()) / temperature;
    let logits_ba = match all {
        // b·aᵀ = (a·bᵀ)ᵀ: one matmul fewer than the reference, same numbers.
        None => logits_ab.tr(),
        Some(_) => b.matmul(&a_all.tr()) / temperature,
    };

    // Row i of [ab | aa]: column offset + i is the positive (b_i), the rest of ab and aa
    // (minus the masked a_i) are the 2M - 2 negatives.
    let loss_a = Tensor::cat(&[&logits_ab, &logits_aa], 1).cross_entropy_for_logits(&labels);
    let loss_b = Tensor::cat(&[&logits_ba, &logits_bb], 1).cross_entropy_for_logits(&labels);
    loss_a + loss_b
}

/// Mean cross-entropy of `logits` (`[N, K]`) against class indices `labels` (`[N]`,
/// int64): the loss of the supervised baseline (`cvrl-train --supervised`). Like
/// [`info_nce`] it runs in f32 whatever the input kind, with CUDA autocast off.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Tensor {
    crate::device::cuda_autocast(false, || {
        logits.to_kind(Kind::Float).cross_entropy_for_logits(labels)
    })
}

/// The preconditions of both InfoNCE forms: paired `[N, D]` embeddings of one shape and a
/// positive temperature. Broken only by a programming error, hence a panic.
pub(crate) fn check_pair(z_a: &Tensor, z_b: &Tensor, temperature: f64) {
    assert!(temperature > 0.0, "temperature must be positive, got {temperature}");
    assert!(
        z_a.dim() == 2 && z_a.size() == z_b.size(),
        "embeddings must both be [N, D], got {:?} and {:?}",
        z_a.size(),
        z_b.size()
    );
}

/// Rows scaled to unit L2 norm, as TF's `l2_normalize`: `x / sqrt(max(‖x‖², 1e-12))`, so a
/// zero row stays zero instead of becoming NaN.
pub(crate) fn l2_normalize(x: &Tensor) -> Tensor {
    x * x.square().sum_dim_intlist([1i64].as_slice(), true, None).clamp_min(1e-12).rsqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Deterministic, well-spread `[n, d]` values without the global RNG (tests run in
    /// parallel and would race for its state).
    fn pseudo_random(n: i64, d: i64, phase: f64) -> Tensor {
        (Tensor::arange(n * d, (Kind::Float, Device::Cpu)) * 0.737 + phase).sin().view([n, d]) * 3.0
    }

    fn scalar(t: &Tensor) -> f64 {
        f64::try_from(t).expect("a scalar tensor")
    }

    #[test]
    fn orthogonal_embeddings_match_the_closed_form() {
        // z_a = z_b = the first N unit vectors: the positive has similarity 1, every
        // negative 0, so ℓ_i = log(1 + (2N - 2) e^{-1/τ}) for each of the 2N anchors.
        for (n, tau) in [(4, 1.0), (5, 0.5), (3, 0.1)] {
            let z = Tensor::eye_m(n, 8, (Kind::Float, Device::Cpu));
            let got = scalar(&info_nce(&z, &z, tau));
            let per_anchor = (1.0 + (2 * n - 2) as f64 * (-1.0 / tau).exp()).ln();
            let expected = 2.0 * per_anchor;
            assert!((got - expected).abs() < 1e-6, "n={n} τ={tau}: {got} vs {expected}");
        }
    }

    #[test]
    fn aligned_pairs_cost_less_than_shuffled_pairs() {
        let a = pseudo_random(8, 16, 0.0);
        let b = &a + pseudo_random(8, 16, 1.3) * 0.2;
        let shuffled = b.roll([3i64].as_slice(), [0i64].as_slice());
        let aligned = scalar(&info_nce(&a, &b, REFERENCE_TEMPERATURE));
        let wrong = scalar(&info_nce(&a, &shuffled, REFERENCE_TEMPERATURE));
        assert!(aligned < wrong, "aligned {aligned} should be below shuffled {wrong}");
    }

    #[test]
    fn tends_to_zero_for_aligned_distinct_embeddings_as_temperature_shrinks() {
        let z = Tensor::eye_m(6, 16, (Kind::Float, Device::Cpu));
        let losses: Vec<f64> =
            [1.0, 0.3, 0.1, 0.03, 0.01].iter().map(|&t| scalar(&info_nce(&z, &z, t))).collect();
        // Strictly decreasing until f32 rounds log(1 + tiny) to exactly 0.
        assert!(losses.windows(2).all(|w| w[1] < w[0] || w[1] == 0.0), "{losses:?}");
        assert!(losses[4] < 1e-6, "τ = 0.01 gives {}", losses[4]);
    }

    #[test]
    fn symmetric_in_the_two_views_and_blind_to_scale() {
        let a = pseudo_random(5, 12, 0.0);
        let b = pseudo_random(5, 12, 0.4);
        let ab = scalar(&info_nce(&a, &b, 0.2));
        let ba = scalar(&info_nce(&b, &a, 0.2));
        let scaled = scalar(&info_nce(&(&a * 7.0), &(&b * 0.01), 0.2));
        assert!((ab - ba).abs() < 1e-5, "{ab} vs {ba}");
        assert!((ab - scaled).abs() < 1e-5, "{ab} vs {scaled}");
    }

    #[test]
    fn bf16_inputs_give_an_f32_loss_and_bf16_gradients() {
        let a = pseudo_random(4, 8, 0.0).to_kind(Kind::BFloat16).set_requires_grad(true);
        let b = pseudo_random(4, 8, 0.9).to_kind(Kind::BFloat16).set_requires_grad(true);
        let loss = info_nce(&a, &b, REFERENCE_TEMPERATURE);
        assert_eq!(loss.kind(), Kind::Float);
        assert_eq!(loss.size(), Vec::<i64>::new());
        // Same numbers as the f32 loss of the bf16-rounded inputs: nothing ran in bf16.
        let reference = info_nce(&a.to_kind(Kind::Float), &b.to_kind(Kind::Float), 0.1);
        assert!((scalar(&loss) - scalar(&reference)).abs() < 1e-6);
        loss.backward();
        assert_eq!(a.grad().kind(), Kind::BFloat16);
        assert!(scalar(&a.grad().abs().sum(Kind::Float)) > 0.0);
    }

    #[test]
    fn cross_entropy_of_uniform_logits_is_log_k() {
        let logits = Tensor::zeros([4, 5], (Kind::BFloat16, Device::Cpu));
        let labels = Tensor::from_slice(&[0i64, 1, 4, 2]);
        let loss = cross_entropy(&logits, &labels);
        assert_eq!(loss.kind(), Kind::Float);
        assert!((scalar(&loss) - 5f64.ln()).abs() < 1e-6);
    }

    #[test]
    fn zero_embedding_gives_a_finite_loss() {
        let a = pseudo_random(3, 4, 0.0) * Tensor::from_slice(&[0.0f32, 1.0, 1.0]).view([3, 1]);
        let b = pseudo_random(3, 4, 0.2);
        assert!(scalar(&info_nce(&a, &b, 0.1)).is_finite());
    }
}
