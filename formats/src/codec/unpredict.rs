//! The decoder's second pass: residual planes back to pixels, in place
//! (`FORMAT.md#322-predictors`). Each row is cut into runs of blocks with the same
//! predictor; MED-type predictors are serial chains, so rows are done two at a time where
//! that gives the CPU two chains to overlap.

use super::mode::Predictor;
use super::motion::shifted_row;
use super::plane::Geom;
use super::predict::med;

/// Pass 2: turns the residuals in `plane` into pixels, in place, row by row; each row is cut
/// into runs of blocks with the same predictor.
pub(super) fn unpredict_plane(
    g: &Geom,
    codes: &[u8],
    v: (i8, i8),
    plane: &mut [u8],
    prev: Option<&[u8]>,
    refrows: &mut [Vec<u8>; 3],
    runs: &mut Vec<(usize, usize, Predictor)>,
) {
    for r in refrows.iter_mut() {
        r.resize(g.w, 0);
    }
    for by in 0..g.nby {
        runs.clear();
        for bx in 0..g.nbx {
            // Codes were validated; an impossible one decodes as RAW rather than panic.
            let p = Predictor::from_code(codes[by * g.nbx + bx]).unwrap_or(Predictor::Raw);
            let (x0, x1) = (bx * g.bw, ((bx + 1) * g.bw).min(g.w));
            match runs.last_mut() {
                Some(last) if last.2 == p => last.1 = x1,
                _ => runs.push((x0, x1, p)),
            }
        }
        let uses_vector = runs.iter().any(|r| r.2.uses_vector());
        let (mut y, y_end) = (by * g.bh, ((by + 1) * g.bh).min(g.h));
        while y < y_end {
            // MED-type predictors are one serial chain per row; two rows at once give the
            // CPU two chains to overlap (with S = 3 the channels already do that).
            if g.s == 1 && y > 0 && y + 1 < y_end {
                unpredict_pair(g, runs, v, plane, prev, refrows, uses_vector, y);
                y += 2;
            } else {
                unpredict_row(g, runs, v, plane, prev, refrows, uses_vector, y);
                y += 1;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn unpredict_row(
    g: &Geom,
    runs: &[(usize, usize, Predictor)],
    v: (i8, i8),
    plane: &mut [u8],
    prev: Option<&[u8]>,
    refrows: &mut [Vec<u8>; 3],
    uses_vector: bool,
    y: usize,
) {
    let (w, s) = (g.w, g.s);
    let (above, rest) = plane.split_at_mut(y * w);
    let row = &mut rest[..w];
    let up = (y > 0).then(|| &above[(y - 1) * w..][..w]);
    let Some(prev) = prev else {
        for &(x0, x1, p) in runs {
            if p == Predictor::Med {
                med_run(row, up, x0, x1, s);
            }
        }
        return;
    };
    let [rc, ru, _] = refrows;
    if uses_vector {
        shifted_row(g, prev, v, y, rc);
        if y > 0 {
            shifted_row(g, prev, v, y - 1, ru);
        }
    }
    let prev_row = &prev[y * w..][..w];
    let prev_up = (y > 0).then(|| &prev[(y - 1) * w..][..w]);
    for &(x0, x1, p) in runs {
        match p {
            Predictor::Raw => {}
            Predictor::Temporal => add_run(&mut row[x0..x1], &prev_row[x0..x1]),
            Predictor::Motion => add_run(&mut row[x0..x1], &rc[x0..x1]),
            Predictor::Med => med_run(row, up, x0, x1, s),
            Predictor::TemporalMed => tmed_run(row, up.zip(prev_up), prev_row, x0, x1, s),
            Predictor::MotionMed => tmed_run(row, up.map(|u| (u, &ru[..])), rc, x0, x1, s),
        }
    }
}

/// Rows `y` and `y + 1` (`y >= 1`, `S == 1`) together.
#[allow(clippy::too_many_arguments)]
fn unpredict_pair(
    g: &Geom,
    runs: &[(usize, usize, Predictor)],
    v: (i8, i8),
    plane: &mut [u8],
    prev: Option<&[u8]>,
    refrows: &mut [Vec<u8>; 3],
    uses_vector: bool,
    y: usize,
) {
    let w = g.w;
    let (above, rest) = plane.split_at_mut(y * w);
    let up = &above[(y - 1) * w..][..w];
    let (r0, r1) = rest[..2 * w].split_at_mut(w);
    let Some(prev) = prev else {
        for &(x0, x1, p) in runs {
            if p == Predictor::Med {
                med_pair(r0, r1, up, x0, x1);
            }
        }
        return;
    };
    let [rc0, ru, rc1] = refrows;
    if uses_vector {
        shifted_row(g, prev, v, y - 1, ru);
        shifted_row(g, prev, v, y, rc0);
        shifted_row(g, prev, v, y + 1, rc1);
    }
    let pu = &prev[(y - 1) * w..][..w];
    let p0 = &prev[y * w..][..w];
    let p1 = &prev[(y + 1) * w..][..w];
    for &(x0, x1, p) in runs {
        match p {
            Predictor::Raw => {}
            Predictor::Temporal => {
                add_run(&mut r0[x0..x1], &p0[x0..x1]);
                add_run(&mut r1[x0..x1], &p1[x0..x1]);
            }
            Predictor::Motion => {
                add_run(&mut r0[x0..x1], &rc0[x0..x1]);
                add_run(&mut r1[x0..x1], &rc1[x0..x1]);
            }
            Predictor::Med => med_pair(r0, r1, up, x0, x1),
            Predictor::TemporalMed => tmed_pair(r0, r1, up, [pu, p0, p1], x0, x1),
            Predictor::MotionMed => tmed_pair(r0, r1, up, [ru, rc0, rc1], x0, x1),
        }
    }
}

/// MED over `[x0, x1)` of two rows (`r1` below `r0`, `up` above `r0`, not the first row).
#[inline]
fn med_pair(r0: &mut [u8], r1: &mut [u8], up: &[u8], x0: usize, x1: usize) {
    let (r0, r1, up) = (&mut r0[..x1], &mut r1[..x1], &up[..x1]);
    let mut start = x0;
    if x0 == 0 {
        r0[0] = r0[0].wrapping_add(up[0]);
        r1[0] = r1[0].wrapping_add(r0[0]);
        start = 1;
    }
    if start >= x1 {
        return;
    }
    let (mut a0, mut c0) = (i32::from(r0[start - 1]), i32::from(up[start - 1]));
    let mut a1 = i32::from(r1[start - 1]);
    let mut c1 = a0;
    let it = r0[start..].iter_mut().zip(r1[start..].iter_mut()).zip(&up[start..]);
    for ((x0, x1), &b) in it {
        let b = i32::from(b);
        let v0 = i32::from(x0.wrapping_add(med(a0, b, c0) as u8));
        *x0 = v0 as u8;
        let v1 = i32::from(x1.wrapping_add(med(a1, v0, c1) as u8));
        *x1 = v1 as u8;
        (a0, c0, a1, c1) = (v0, b, v1, v0);
    }
}

/// MED on the difference to reference rows `[above, row 0, row 1]`, over two rows.
#[inline]
fn tmed_pair(r0: &mut [u8], r1: &mut [u8], up: &[u8], refs: [&[u8]; 3], x0: usize, x1: usize) {
    let (r0, r1, up) = (&mut r0[..x1], &mut r1[..x1], &up[..x1]);
    let (ru, rc0, rc1) = (&refs[0][..x1], &refs[1][..x1], &refs[2][..x1]);
    let d = |x: u8, r: u8| i32::from(x) - i32::from(r);
    let mut start = x0;
    if x0 == 0 {
        r0[0] = r0[0].wrapping_add((i32::from(rc0[0]) + d(up[0], ru[0])) as u8);
        r1[0] = r1[0].wrapping_add((i32::from(rc1[0]) + d(r0[0], rc0[0])) as u8);
        start = 1;
    }
    if start >= x1 {
        return;
    }
    let i = start - 1;
    let (mut da0, mut dc0) = (d(r0[i], rc0[i]), d(up[i], ru[i]));
    let mut da1 = d(r1[i], rc1[i]);
    let mut dc1 = da0;
    let it = r0[start..]
        .iter_mut()
        .zip(r1[start..].iter_mut())
        .zip(up[start..].iter().zip(&ru[start..]))
        .zip(rc0[start..].iter().zip(&rc1[start..]));
    for (((x0, x1), (&u, &uref)), (&c0, &c1)) in it {
        let db0 = d(u, uref);
        let v0 = x0.wrapping_add((i32::from(c0) + med(da0, db0, dc0)) as u8);
        *x0 = v0;
        let d0 = d(v0, c0);
        let v1 = x1.wrapping_add((i32::from(c1) + med(da1, d0, dc1)) as u8);
        *x1 = v1;
        (da0, dc0, da1, dc1) = (d0, db0, d(v1, c1), d0);
    }
}

#[inline]
fn add_run(row: &mut [u8], reference: &[u8]) {
    for (x, &r) in row.iter_mut().zip(reference) {
        *x = x.wrapping_add(r);
    }
}

/// MED over `row[x0..x1]`; `up` is the decoded row above (`None` on row 0).
#[inline]
fn med_run(row: &mut [u8], up: Option<&[u8]>, x0: usize, x1: usize, s: usize) {
    let row = &mut row[..x1];
    let Some(up) = up else {
        for x in x0..x1 {
            let pred = if x >= s { row[x - s] } else { 0 };
            row[x] = row[x].wrapping_add(pred);
        }
        return;
    };
    let up = &up[..x1];
    let start = x0.max(s).min(x1);
    for x in x0..start {
        row[x] = row[x].wrapping_add(up[x]);
    }
    if start >= x1 {
        return;
    }
    if s == 1 {
        // One dependency chain: carry the left and up-left values in registers.
        let (mut a, mut c) = (i32::from(row[start - 1]), i32::from(up[start - 1]));
        for (x, &b) in row[start..].iter_mut().zip(&up[start..]) {
            let b = i32::from(b);
            let v = x.wrapping_add(med(a, b, c) as u8);
            *x = v;
            a = i32::from(v);
            c = b;
        }
    } else {
        for x in start..x1 {
            let pred = med(i32::from(row[x - s]), i32::from(up[x]), i32::from(up[x - s]));
            row[x] = row[x].wrapping_add(pred as u8);
        }
    }
}

/// MED on the difference to a reference: `rc` is the reference row, `up` the decoded row
/// above with its reference row (`None` on row 0).
#[inline]
fn tmed_run(row: &mut [u8], up: Option<(&[u8], &[u8])>, rc: &[u8], x0: usize, x1: usize, s: usize) {
    let row = &mut row[..x1];
    let rc = &rc[..x1];
    let d = |x: u8, r: u8| i32::from(x) - i32::from(r);
    let Some((up, ru)) = up else {
        for x in x0..x1 {
            let pred = i32::from(rc[x]) + if x >= s { d(row[x - s], rc[x - s]) } else { 0 };
            row[x] = row[x].wrapping_add(pred as u8);
        }
        return;
    };
    let (up, ru) = (&up[..x1], &ru[..x1]);
    let start = x0.max(s).min(x1);
    for x in x0..start {
        row[x] = row[x].wrapping_add((i32::from(rc[x]) + d(up[x], ru[x])) as u8);
    }
    if start >= x1 {
        return;
    }
    if s == 1 {
        let mut da = d(row[start - 1], rc[start - 1]);
        let mut dc = d(up[start - 1], ru[start - 1]);
        let it =
            row[start..].iter_mut().zip(&rc[start..]).zip(up[start..].iter().zip(&ru[start..]));
        for ((x, &r), (&u, &uref)) in it {
            let db = d(u, uref);
            let v = x.wrapping_add((i32::from(r) + med(da, db, dc)) as u8);
            *x = v;
            da = d(v, r);
            dc = db;
        }
    } else {
        for x in start..x1 {
            let pred = i32::from(rc[x])
                + med(d(row[x - s], rc[x - s]), d(up[x], ru[x]), d(up[x - s], ru[x - s]));
            row[x] = row[x].wrapping_add(pred as u8);
        }
    }
}
