//! The encoder's side of prediction (`FORMAT.md#322-predictors`): per plane, the motion
//! vector and the cheapest predictor of each block (`FORMAT.md#325-encoder-informative`),
//! and the residual plane they give.

use super::mode::{Predictor, PredictorMode};
use super::motion::{search_vector, shift_plane};
use super::plane::Geom;

/// LOCO-I's median edge detector, `clamp(a + b - c, min(a, b), max(a, b))`.
#[inline(always)]
pub(super) fn med(a: i32, b: i32, c: i32) -> i32 {
    (a + b - c).clamp(a.min(b), a.max(b))
}

/// Scratch of the per-plane predictor choice.
#[derive(Default)]
pub(super) struct PredictScratch {
    /// Residual plane of each predictor, indexed by code.
    cand: Vec<Vec<u8>>,
    /// The previous plane shifted by the motion vector.
    shifted: Vec<u8>,
    /// Row scratch of `shift_plane`.
    row: Vec<u8>,
}

impl PredictScratch {
    pub(super) fn new() -> Self {
        PredictScratch { cand: vec![Vec::new(); Predictor::ALL.len()], ..PredictScratch::default() }
    }
}

/// Chooses the vector and the block codes of one plane and writes its residual to `dst`.
#[allow(clippy::too_many_arguments)]
pub(super) fn predict_plane(
    mode: PredictorMode,
    candidates: &[Predictor],
    sc: &mut PredictScratch,
    g: &Geom,
    cur: &[u8],
    prev: Option<&[u8]>,
    codes: &mut [u8],
    dst: &mut [u8],
) -> (i8, i8) {
    let mut cands: Vec<Predictor> = match (mode, prev) {
        (PredictorMode::Raw | PredictorMode::Plain, _) => vec![Predictor::Raw],
        (PredictorMode::Med, _) | (PredictorMode::Temporal, None) => vec![Predictor::Med],
        (PredictorMode::Temporal, Some(_)) => vec![Predictor::Temporal],
        (PredictorMode::Adaptive | PredictorMode::Interleaved, _) => {
            candidates.iter().copied().filter(|p| prev.is_some() || !p.is_temporal()).collect()
        }
    };
    let mut vector = (0i8, 0i8);
    if let Some(pv) = prev {
        if cands.iter().any(|p| p.uses_vector()) {
            vector = search_vector(g, cur, pv);
            if vector == (0, 0) {
                // Same as the unshifted predictors: skip the work.
                cands.retain(|p| !p.uses_vector());
            } else {
                shift_plane(g, pv, vector, &mut sc.shifted, &mut sc.row);
            }
        }
    }
    for &p in &cands {
        let buf = &mut sc.cand[p as usize];
        buf.resize(g.len(), 0);
        let reference = match p {
            Predictor::Temporal | Predictor::TemporalMed => prev,
            Predictor::Motion | Predictor::MotionMed => Some(&sc.shifted[..]),
            Predictor::Raw | Predictor::Med => None,
        };
        residual_plane(p, g, cur, reference, buf);
    }
    if let [only] = cands[..] {
        codes.fill(only.code());
        dst.copy_from_slice(&sc.cand[only as usize]);
        return (0, 0);
    }
    let mut any_vector = false;
    for by in 0..g.nby {
        let (y0, y1) = (by * g.bh, ((by + 1) * g.bh).min(g.h));
        for bx in 0..g.nbx {
            let (x0, x1) = (bx * g.bw, ((bx + 1) * g.bw).min(g.w));
            // Sum of |residual|: a cheap stand-in for the coded size that tracks it well
            // (zero flags dominate, and small residuals are cheap in every stream).
            let cost = |p: Predictor| -> u32 {
                let buf = &sc.cand[p as usize];
                (y0..y1)
                    .map(|y| {
                        buf[y * g.w + x0..y * g.w + x1]
                            .iter()
                            .map(|&r| u32::from((r as i8).unsigned_abs()))
                            .sum::<u32>()
                    })
                    .sum()
            };
            let mut best = (u32::MAX, Predictor::Raw);
            for &p in &cands {
                let c = cost(p);
                if c < best.0 {
                    best = (c, p);
                }
            }
            let p = best.1;
            any_vector |= p.uses_vector();
            codes[by * g.nbx + bx] = p.code();
            let buf = &sc.cand[p as usize];
            for y in y0..y1 {
                dst[y * g.w + x0..y * g.w + x1].copy_from_slice(&buf[y * g.w + x0..y * g.w + x1]);
            }
        }
    }
    if any_vector {
        vector
    } else {
        (0, 0)
    }
}

/// Residual of predictor `p` over a whole plane (the encoder knows every pixel, so unlike
/// the decoder these loops carry no dependency and vectorise).
fn residual_plane(p: Predictor, g: &Geom, cur: &[u8], reference: Option<&[u8]>, out: &mut [u8]) {
    let (w, s) = (g.w, g.s);
    match (p, reference) {
        (Predictor::Raw, _) => out.copy_from_slice(cur),
        (Predictor::Temporal | Predictor::Motion, Some(r)) => {
            for ((o, &x), &r) in out.iter_mut().zip(cur).zip(r) {
                *o = x.wrapping_sub(r);
            }
        }
        (Predictor::Med, _) => {
            for y in 0..g.h {
                let row = &cur[y * w..][..w];
                let o = &mut out[y * w..][..w];
                if y == 0 {
                    o[..s].copy_from_slice(&row[..s]);
                    for x in s..w {
                        o[x] = row[x].wrapping_sub(row[x - s]);
                    }
                } else {
                    let up = &cur[(y - 1) * w..][..w];
                    for x in 0..s {
                        o[x] = row[x].wrapping_sub(up[x]);
                    }
                    for x in s..w {
                        let pred =
                            med(i32::from(row[x - s]), i32::from(up[x]), i32::from(up[x - s]));
                        o[x] = row[x].wrapping_sub(pred as u8);
                    }
                }
            }
        }
        (Predictor::TemporalMed | Predictor::MotionMed, Some(r)) => {
            let d = |i: usize| i32::from(cur[i]) - i32::from(r[i]);
            for y in 0..g.h {
                let o = &mut out[y * w..][..w];
                let i0 = y * w;
                // The residual of MED on D is D minus its spatial prediction, modulo 256.
                if y == 0 {
                    for (x, o) in o.iter_mut().enumerate() {
                        let pred = if x < s { 0 } else { d(i0 + x - s) };
                        *o = (d(i0 + x) - pred) as u8;
                    }
                } else {
                    let u0 = i0 - w;
                    for (x, o) in o.iter_mut().enumerate() {
                        let pred = if x < s {
                            d(u0 + x)
                        } else {
                            med(d(i0 + x - s), d(u0 + x), d(u0 + x - s))
                        };
                        *o = (d(i0 + x) - pred) as u8;
                    }
                }
            }
        }
        // Temporal predictors always get a reference; keep the residual defined anyway.
        (_, None) => out.copy_from_slice(cur),
    }
}
