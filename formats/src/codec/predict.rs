//! The encoder's side of prediction (`FORMAT.md#322-predictors`): per plane, the motion
//! vector and the cheapest predictor of each block (`FORMAT.md#325-encoder-informative`),
//! and the residual plane they give.

use super::mode::{Predictor, PredictorMode};
use super::motion::{search_vector, shift_plane};
use super::plane::Geom;
use super::sums::add_abs_i8_lanes;
use std::ops::{Add, Sub};

/// LOCO-I's median edge detector, `clamp(a + b - c, min(a, b), max(a, b))`, in any integer
/// type that holds `a + b - c`: i32 in the decoder, i16 in the encoder's vectorised rows
/// ([`med_residual`]).
#[inline(always)]
pub(super) fn med<T: Copy + Ord + Add<Output = T> + Sub<Output = T>>(a: T, b: T, c: T) -> T {
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
    /// The current and the previous row of the plane [`med_residual`] predicts.
    med_rows: [Vec<i16>; 2],
    /// The predictor chosen for each block of a block row.
    chosen: Vec<Predictor>,
    /// Each candidate's sums of |residual| over 8 columns of a block row.
    lanes: Vec<u64>,
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
        residual_plane(p, g, cur, reference, &mut sc.med_rows, buf);
    }
    if let [only] = cands[..] {
        codes.fill(only.code());
        dst.copy_from_slice(&sc.cand[only as usize]);
        return (0, 0);
    }
    let mut any_vector = false;
    // Block costs: the sum of |residual|, a cheap stand-in for the coded size that tracks
    // it well (zero flags dominate, and small residuals are cheap in every stream), summed
    // 8 columns at a time over a block row (blocks are 8, 16 or 48 bytes wide).
    let n_lanes = g.w.div_ceil(8);
    let lanes_per_block = g.bw / 8;
    let chosen = &mut sc.chosen;
    chosen.clear();
    chosen.resize(g.nbx, Predictor::Raw);
    for by in 0..g.nby {
        let (y0, y1) = (by * g.bh, ((by + 1) * g.bh).min(g.h));
        sc.lanes.clear();
        sc.lanes.resize(cands.len() * n_lanes, 0);
        for (lanes, &p) in sc.lanes.chunks_exact_mut(n_lanes).zip(&cands) {
            for y in y0..y1 {
                add_abs_i8_lanes(&sc.cand[p as usize][y * g.w..][..g.w], lanes);
            }
        }
        for bx in 0..g.nbx {
            let (l0, l1) = (bx * lanes_per_block, ((bx + 1) * lanes_per_block).min(n_lanes));
            let mut best = (u64::MAX, Predictor::Raw);
            for (lanes, &p) in sc.lanes.chunks_exact(n_lanes).zip(&cands) {
                let c: u64 = lanes[l0..l1].iter().sum();
                if c < best.0 {
                    best = (c, p);
                }
            }
            let p = best.1;
            any_vector |= p.uses_vector();
            codes[by * g.nbx + bx] = p.code();
            chosen[bx] = p;
        }
        // Each row of the block row from the chosen residuals, a copy per run of blocks
        // with the same predictor rather than one per block (a `memmove` call each).
        for y in y0..y1 {
            let mut bx = 0;
            while bx < g.nbx {
                let p = chosen[bx];
                let run = chosen[bx..].iter().take_while(|&&q| q == p).count();
                let (x0, x1) = (bx * g.bw, ((bx + run) * g.bw).min(g.w));
                let at = y * g.w;
                dst[at + x0..at + x1].copy_from_slice(&sc.cand[p as usize][at + x0..at + x1]);
                bx += run;
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
fn residual_plane(
    p: Predictor,
    g: &Geom,
    cur: &[u8],
    reference: Option<&[u8]>,
    rows: &mut [Vec<i16>; 2],
    out: &mut [u8],
) {
    match (p, reference) {
        (Predictor::Raw, _) => out.copy_from_slice(cur),
        (Predictor::Temporal | Predictor::Motion, Some(r)) => {
            for ((o, &x), &r) in out.iter_mut().zip(cur).zip(r) {
                *o = x.wrapping_sub(r);
            }
        }
        (Predictor::Med, _) => med_residual(g, cur, None, rows, out),
        (Predictor::TemporalMed | Predictor::MotionMed, Some(r)) => {
            med_residual(g, cur, Some(r), rows, out);
        }
        // Temporal predictors always get a reference; keep the residual defined anyway.
        (_, None) => out.copy_from_slice(cur),
    }
}

/// MED's residual over a plane of `D = cur - reference` (`D = cur` without a reference),
/// modulo 256: `D` minus its prediction from the left (`s` bytes back), upper and upper-left
/// values; the left one alone in the first row, the upper one alone in the first `s`
/// columns (`FORMAT.md#322-predictors`). The rows are widened to i16, where `a + b - c` of
/// three differences fits, so that every loop vectorises with SSE2's 16-bit min and max:
/// the same arithmetic in i32 with a closure per pixel ran scalar and took a fifth of the
/// default sharder's CPU time (perf on `cvrl-shard build`).
fn med_residual(
    g: &Geom,
    cur: &[u8],
    reference: Option<&[u8]>,
    rows: &mut [Vec<i16>; 2],
    out: &mut [u8],
) {
    let (w, s) = (g.w, g.s);
    let [up, row] = rows;
    up.resize(w, 0);
    row.resize(w, 0);
    for y in 0..g.h {
        let c = &cur[y * w..][..w];
        match reference {
            Some(r) => {
                for ((d, &x), &r) in row.iter_mut().zip(c).zip(&r[y * w..][..w]) {
                    *d = i16::from(x) - i16::from(r);
                }
            }
            None => {
                for (d, &x) in row.iter_mut().zip(c) {
                    *d = i16::from(x);
                }
            }
        }
        let (o_first, o_rest) = out[y * w..][..w].split_at_mut(s);
        let (d_first, d_rest) = row.split_at(s);
        if y == 0 {
            for (o, &d) in o_first.iter_mut().zip(d_first) {
                *o = d as u8;
            }
            for ((o, &d), &left) in o_rest.iter_mut().zip(d_rest).zip(&row[..w - s]) {
                *o = (d - left) as u8;
            }
        } else {
            for ((o, &d), &u) in o_first.iter_mut().zip(d_first).zip(&up[..s]) {
                *o = (d - u) as u8;
            }
            let neighbours = row[..w - s].iter().zip(&up[s..]).zip(&up[..w - s]);
            for ((o, &d), ((&a, &b), &c)) in o_rest.iter_mut().zip(d_rest).zip(neighbours) {
                *o = (d - med(a, b, c)) as u8;
            }
        }
        std::mem::swap(up, row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MED's residual pixel by pixel, as FORMAT.md defines it: the oracle of
    /// [`med_residual`].
    fn med_residual_by_pixel(g: &Geom, cur: &[u8], reference: Option<&[u8]>) -> Vec<u8> {
        let d = |i: usize| i32::from(cur[i]) - reference.map_or(0, |r| i32::from(r[i]));
        let (w, s) = (g.w, g.s);
        let mut out = vec![0; g.len()];
        for y in 0..g.h {
            for x in 0..w {
                let i = y * w + x;
                let pred = match (y, x < s) {
                    (0, true) => 0,
                    (0, false) => d(i - s),
                    (_, true) => d(i - w),
                    (_, false) => med(d(i - s), d(i - w), d(i - w - s)),
                };
                out[i] = (d(i) - pred) as u8;
            }
        }
        out
    }

    #[test]
    fn med_residuals_match_the_pixel_by_pixel_definition() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut bytes = |n: usize, smooth: bool| -> Vec<u8> {
            let mut v = 128u8;
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    v = if smooth {
                        v.wrapping_add((x >> 62) as u8).wrapping_sub(1)
                    } else {
                        x as u8
                    };
                    v
                })
                .collect()
        };
        for (w_px, h, s) in [(1, 1, 1), (1, 5, 3), (7, 1, 1), (17, 9, 1), (33, 20, 3), (64, 3, 1)] {
            let w = w_px * s;
            let g = Geom { off: 0, w, h, s, bw: 16 * s, bh: 16, nbx: 1, nby: 1 };
            for smooth in [false, true] {
                let cur = bytes(w * h, smooth);
                let prev = bytes(w * h, smooth);
                let mut rows = [Vec::new(), Vec::new()];
                let mut out = vec![0xA5; w * h];
                for reference in [None, Some(&prev[..])] {
                    med_residual(&g, &cur, reference, &mut rows, &mut out);
                    let want = med_residual_by_pixel(&g, &cur, reference);
                    assert_eq!(
                        out,
                        want,
                        "{w}x{h} s={s} smooth={smooth} {:?}",
                        reference.is_some()
                    );
                }
            }
        }
    }
}
