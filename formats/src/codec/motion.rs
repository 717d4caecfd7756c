//! Global motion: the encoder's search for one vector per plane
//! (`FORMAT.md#325-encoder-informative`) and the shifted previous plane `R` that both sides
//! predict from (`FORMAT.md#322-predictors`).

use super::plane::Geom;
use super::sums::sum_abs_diff;

/// Motion search range in pixels for full-resolution planes (half for chroma). Panning at
/// 256p moves up to ~7 pixels a frame on the test clips; a wider search slows the encoder.
const SEARCH_RANGE: i32 = 8;

/// Row `src` shifted by `dx` pixels (`out[x] = src[x + dx * s]`), edge pixels replicated.
#[inline]
fn shift_row(src: &[u8], s: usize, dx: i32, out: &mut [u8]) {
    let w = src.len();
    let k = dx.unsigned_abs() as usize * s;
    if k == 0 {
        out.copy_from_slice(src);
    } else if k >= w {
        let edge = if dx > 0 { &src[w - s..] } else { &src[..s] };
        for (i, o) in out.iter_mut().enumerate() {
            *o = edge[i % s];
        }
    } else if dx > 0 {
        // `w` and `k` are multiples of `s`, so `i % s` is the channel of `out[w - k + i]`.
        out[..w - k].copy_from_slice(&src[k..]);
        let edge = &src[w - s..];
        for (i, o) in out[w - k..].iter_mut().enumerate() {
            *o = edge[i % s];
        }
    } else {
        out[k..].copy_from_slice(&src[..w - k]);
        for (i, o) in out[..k].iter_mut().enumerate() {
            *o = src[i % s];
        }
    }
}

/// Row `y` of the previous plane shifted by `v` (`FORMAT.md#322-predictors`: `R`).
#[inline]
pub(super) fn shifted_row(g: &Geom, prev: &[u8], v: (i8, i8), y: usize, out: &mut [u8]) {
    let sy = (y as i64 + i64::from(v.1)).clamp(0, g.h as i64 - 1) as usize;
    shift_row(&prev[sy * g.w..][..g.w], g.s, i32::from(v.0), out);
}

/// The whole previous plane shifted by `v` into `out` (`row` is scratch).
pub(super) fn shift_plane(
    g: &Geom,
    prev: &[u8],
    v: (i8, i8),
    out: &mut Vec<u8>,
    row: &mut Vec<u8>,
) {
    out.resize(g.len(), 0);
    row.resize(g.w, 0);
    for y in 0..g.h {
        shifted_row(g, prev, v, y, row);
        out[y * g.w..][..g.w].copy_from_slice(row);
    }
}

/// The global shift of the previous plane that best matches `cur` (smallest sum of absolute
/// differences over every fourth row, away from the edges), `(0, 0)` on ties.
pub(super) fn search_vector(g: &Geom, cur: &[u8], prev: &[u8]) -> (i8, i8) {
    let (w, s) = (g.w, g.s);
    let range = if g.bh < 16 { SEARCH_RANGE / 2 } else { SEARCH_RANGE };
    let r = range.min((w / s / 4) as i32).min((g.h / 4) as i32);
    if r <= 0 {
        return (0, 0);
    }
    let ru = r as usize;
    let (x0, x1) = (ru * s, w - ru * s);
    let step = if g.h >= 64 { 4 } else { 2 };
    let sad = |dx: i32, dy: i32, limit: u64| -> u64 {
        let mut total = 0u64;
        for y in (ru..g.h - ru).step_by(step) {
            let a = &cur[y * w + x0..y * w + x1];
            let sy = (y as i64 + i64::from(dy)) as usize;
            let sx = (x0 as i64 + i64::from(dx) * s as i64) as usize;
            let b = &prev[sy * w + sx..][..x1 - x0];
            total += sum_abs_diff(a, b);
            if total >= limit {
                break;
            }
        }
        total
    };
    let mut best = (sad(0, 0, u64::MAX), 0, 0);
    for dy in -r..=r {
        for dx in -r..=r {
            if (dx, dy) != (0, 0) {
                let t = sad(dx, dy, best.0);
                if t < best.0 {
                    best = (t, dx, dy);
                }
            }
        }
    }
    (best.1 as i8, best.2 as i8)
}
