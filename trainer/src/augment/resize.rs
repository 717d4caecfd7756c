//! Crop and resize: bilinear sample tables built once per clip ([`Tables`]), and
//! [`resample_frame`], which reads `yuv420p` directly (luma and both chroma planes resampled
//! separably at the output resolution, chroma centre-sited from its own half-size plane)
//! and converts to RGB only at the output pixels.

use cvrl_formats::{FrameLayout, PixelFormat};

use super::ClipParams;

/// Bilinear taps along one axis, one entry per output coordinate: element offsets of the
/// two source samples relative to `lo` (offsets are sample index times the sample step)
/// and the weight of the second. Vertical axes use both offsets ([`Axis::tap`]); the
/// horizontal resampling reads the second sample at `i0 + step` (see `RowPair::fill`).
#[derive(Default)]
pub(super) struct Axis {
    pub(super) i0: Vec<usize>,
    pub(super) i1: Vec<usize>,
    pub(super) f: Vec<f32>,
    /// Element offset of the leftmost sample any tap reads.
    pub(super) lo: usize,
    /// Elements from `lo` to the rightmost sample any tap reads, inclusive.
    pub(super) span: usize,
    /// Elements between consecutive samples.
    step: usize,
}

impl Axis {
    /// Taps at continuous source `positions` (pixel centres at integers) in a plane of `n`
    /// samples `step` elements apart; positions are clamped to the plane (edge replicate).
    pub(super) fn build(&mut self, positions: impl Iterator<Item = f64>, n: usize, step: usize) {
        self.i0.clear();
        self.i1.clear();
        self.f.clear();
        let last = (n - 1) as f64;
        for p in positions {
            let p = p.clamp(0.0, last);
            let base = p.floor();
            let i0 = base as usize;
            self.i0.push(i0 * step);
            self.i1.push((i0 + 1).min(n - 1) * step);
            self.f.push((p - base) as f32);
        }
        self.lo = self.i0.iter().copied().min().unwrap_or(0);
        let hi = self.i1.iter().copied().max().unwrap_or(0);
        self.span = hi - self.lo + 1;
        self.step = step;
        for i in self.i0.iter_mut().chain(self.i1.iter_mut()) {
            *i -= self.lo;
        }
    }

    /// Tap `o` as absolute sample offsets (row numbers for a vertical axis).
    #[inline(always)]
    pub(super) fn tap(&self, o: usize) -> (usize, usize, f32) {
        (self.lo + self.i0[o], self.lo + self.i1[o], self.f[o])
    }

    pub(super) fn reverse(&mut self) {
        self.i0.reverse();
        self.i1.reverse();
        self.f.reverse();
    }
}

/// Source coordinate of output sample `o` of `out` when `len` samples starting at `start`
/// are resized to `out`: TF's half-pixel-centre mapping, clamped to the box as TF's resize
/// of the sliced box clamps to its edges.
pub(super) fn box_pos(start: u32, len: u32, out: usize, o: usize) -> f64 {
    let src = (o as f64 + 0.5) * f64::from(len) / out as f64 - 0.5;
    f64::from(start) + src.clamp(0.0, f64::from(len - 1))
}

/// Chroma plane coordinate of luma coordinate `p` for 2x subsampling with chroma sited at
/// the centre of each 2x2 block (the JPEG/MPEG-1 convention, and what nearest-neighbour
/// upsampling as in `yuv420p_to_rgb24` assumes).
pub(super) fn chroma_pos(p: f64) -> f64 {
    (p + 0.5) / 2.0 - 0.5
}

/// The sample tables of one parameter set: luma (or RGB) axes and chroma axes.
#[derive(Default)]
pub(super) struct Tables {
    pub(super) x: Axis,
    pub(super) y: Axis,
    pub(super) cx: Axis,
    pub(super) cy: Axis,
}

impl Tables {
    pub(super) fn build(&mut self, layout: &FrameLayout, p: &ClipParams, s: usize) {
        let (w, h) = (layout.width() as usize, layout.height() as usize);
        let c = p.crop;
        let xs = (0..s).map(|o| box_pos(c.x, c.w, s, o));
        let ys = (0..s).map(|o| box_pos(c.y, c.h, s, o));
        match layout.format() {
            PixelFormat::Rgb24 => {
                self.x.build(xs, w, 3);
                self.y.build(ys, h, 1);
            }
            PixelFormat::Yuv420p => {
                self.x.build(xs.clone(), w, 1);
                self.y.build(ys.clone(), h, 1);
                self.cx.build(xs.map(chroma_pos), w / 2, 1);
                self.cy.build(ys.map(chroma_pos), h / 2, 1);
            }
        }
        if p.flip {
            // The reference flips the resized frame: output column o is resized column s-1-o.
            self.x.reverse();
            self.cx.reverse();
        }
    }
}

/// Two horizontally resampled source rows, so consecutive output rows that share a source
/// row (every row when upscaling) resample it once.
#[derive(Default)]
pub(super) struct RowPair {
    rows: [Vec<f32>; 2],
    ids: [usize; 2],
    /// The source row's samples as f32.
    span: Vec<f32>,
}

impl RowPair {
    pub(super) fn reset(&mut self, s: usize) {
        for r in &mut self.rows {
            r.clear();
            r.resize(s, 0.0);
        }
        self.ids = [usize::MAX; 2];
    }

    /// Rows `r0` and `r1` of `plane` (`stride` elements a row) resampled along `x`.
    #[inline(always)]
    pub(super) fn get(
        &mut self,
        plane: &[u8],
        stride: usize,
        x: &Axis,
        r0: usize,
        r1: usize,
    ) -> (&[f32], &[f32]) {
        let s0 = match self.ids.iter().position(|&id| id == r0) {
            Some(i) => i,
            None => {
                let i = if self.ids[0] == r1 { 1 } else { 0 };
                self.fill(i, plane, stride, x, r0);
                i
            }
        };
        let s1 = match self.ids.iter().position(|&id| id == r1) {
            Some(i) => i,
            None => {
                let i = 1 - s0;
                self.fill(i, plane, stride, x, r1);
                i
            }
        };
        (&self.rows[s0], &self.rows[s1])
    }

    #[inline(always)]
    pub(super) fn fill(&mut self, slot: usize, plane: &[u8], stride: usize, x: &Axis, r: usize) {
        // Convert the span the taps read to f32 first (vectorised), then gather floats:
        // gathering bytes and converting each one is scalar and was the hot spot.
        // The second sample is always `step` after the first: where the table clamps it
        // (the last sample) the weight is 0, so the `step` elements past the span only need
        // to be finite. One index table instead of two.
        let start = r * stride + x.lo;
        let src = &plane[start..start + x.span];
        self.span.resize(x.span + x.step, 0.0);
        for (d, &v) in self.span.iter_mut().zip(src) {
            *d = f32::from(v);
        }
        let (span, out, step) = (&self.span, &mut self.rows[slot], x.step);
        for ((o, &i), &f) in out.iter_mut().zip(&x.i0).zip(&x.f) {
            let (a, b) = (span[i], span[i + step]);
            *o = a + (b - a) * f;
        }
        self.ids[slot] = r;
    }
}

/// Per-plane row caches and one vertically interpolated row per plane.
#[derive(Default)]
pub(super) struct Rows {
    pairs: [RowPair; 3],
    lerped: [Vec<f32>; 3],
}

#[inline(always)]
pub(super) fn lerp_rows(a: &[f32], b: &[f32], f: f32, out: &mut [f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a + (b - a) * f;
    }
}

#[inline(always)]
pub(super) fn to_u8(v: f32) -> u8 {
    // Round to nearest (ties to even) by adding 1.5 * 2^23: the integer lands in the low
    // mantissa bits. Unlike an `as` cast (scalar code with saturation fix-ups) this is
    // plain vector arithmetic; the clamp keeps the integer in 0..=255.
    const MAGIC: f32 = 12_582_912.0;
    ((v.clamp(0.0, 255.0) + MAGIC).to_bits() & 0xFF) as u8
}

// `f32::max`/`min` honour NaN, which costs extra instructions per lane; pixel values are
// never NaN, so plain selects do (they compile to maxps/minps).
#[inline(always)]
pub(super) fn max(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

#[inline(always)]
pub(super) fn min(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}

// BT.601 limited range, the constants of `cvrl_formats::pixel::yuv420p_to_rgb24`.
pub(super) const K_Y: f32 = 76309.0 / 65536.0;
pub(super) const K_RV: f32 = 104597.0 / 65536.0;
pub(super) const K_GU: f32 = 25675.0 / 65536.0;
pub(super) const K_GV: f32 = 53279.0 / 65536.0;
pub(super) const K_BU: f32 = 132201.0 / 65536.0;

/// Crops, resizes and flips one stored frame into three `s x s` RGB planes.
#[inline(always)]
pub(super) fn resample_frame(
    layout: &FrameLayout,
    frame: &[u8],
    tb: &Tables,
    rows: &mut Rows,
    s: usize,
    out: &mut [&mut [u8]; 3],
) {
    let Rows { pairs, lerped } = rows;
    for p in pairs.iter_mut() {
        p.reset(s);
    }
    for l in lerped.iter_mut() {
        l.clear();
        l.resize(s, 0.0);
    }
    let (w, h) = (layout.width() as usize, layout.height() as usize);
    let [lr, lg, lb] = lerped;
    let [pr, pg, pb] = pairs;
    let [or, og, ob] = out;
    match layout.format() {
        PixelFormat::Yuv420p => {
            let (yp, rest) = frame.split_at(w * h);
            let (up, vp) = rest.split_at(w * h / 4);
            let cw = w / 2;
            for oy in 0..s {
                let (r0, r1, f) = tb.y.tap(oy);
                let (a, b) = pr.get(yp, w, &tb.x, r0, r1);
                lerp_rows(a, b, f, lr);
                let (c0, c1, cf) = tb.cy.tap(oy);
                let (a, b) = pg.get(up, cw, &tb.cx, c0, c1);
                lerp_rows(a, b, cf, lg);
                let (a, b) = pb.get(vp, cw, &tb.cx, c0, c1);
                lerp_rows(a, b, cf, lb);
                let row = oy * s..(oy + 1) * s;
                let (ro, go, bo) = (&mut or[row.clone()], &mut og[row.clone()], &mut ob[row]);
                let yuv = lr.iter().zip(lg.iter()).zip(lb.iter());
                for ((((&y, &u), &v), ro), (go, bo)) in
                    yuv.zip(ro.iter_mut()).zip(go.iter_mut().zip(bo.iter_mut()))
                {
                    let c = (y - 16.0) * K_Y;
                    let (d, e) = (u - 128.0, v - 128.0);
                    *ro = to_u8(c + K_RV * e);
                    *go = to_u8(c - K_GU * d - K_GV * e);
                    *bo = to_u8(c + K_BU * d);
                }
            }
        }
        PixelFormat::Rgb24 => {
            let stride = 3 * w;
            for oy in 0..s {
                let (r0, r1, f) = tb.y.tap(oy);
                let row = oy * s..(oy + 1) * s;
                for (c, (pair, dst)) in [
                    (&mut *pr, &mut or[row.clone()]),
                    (&mut *pg, &mut og[row.clone()]),
                    (&mut *pb, &mut ob[row]),
                ]
                .into_iter()
                .enumerate()
                {
                    let (a, b) = pair.get(&frame[c..], stride, &tb.x, r0, r1);
                    for ((o, &a), &b) in dst.iter_mut().zip(a).zip(b) {
                        *o = to_u8(a + (b - a) * f);
                    }
                }
            }
        }
    }
}
