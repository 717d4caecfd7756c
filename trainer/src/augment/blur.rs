//! Gaussian blur: the reference's kernel ([`blur_kernel`], σ in output pixels, crop/10
//! taps) applied separably with zero padding, taps below 1e-5 dropped, eight lanes at a time.

use super::resize::to_u8;

/// The reference's Gaussian blur kernel for `sigma` at output size `out_size`
/// (`random_blur` in `video_ssl_preprocess_ops.py`): `kernel_size = out_size / 10`, radius
/// `kernel_size / 2` (11 at 224, so 23 taps), weights `exp(-k² / 2σ²)` normalised to sum
/// to 1, applied separably with zero padding. Public so that a device-side blur can use
/// the same kernel (see the module doc).
pub fn blur_kernel(sigma: f32, out_size: u32) -> Vec<f32> {
    let radius = (out_size as usize / 10) / 2;
    let weights: Vec<f32> = (0..=2 * radius)
        .map(|i| {
            let k = i.abs_diff(radius) as f32;
            (-(k * k) / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let total: f32 = weights.iter().sum();
    weights.into_iter().map(|w| w / total).collect()
}

/// The blur kernel and its buffers.
#[derive(Default)]
pub(super) struct BlurScratch {
    taps: Vec<f32>,
    radius: usize,
    /// Horizontally blurred plane.
    tmp: Vec<f32>,
    /// One source row with `radius` zeros on either side.
    padded: Vec<f32>,
    /// One output row being accumulated.
    acc: Vec<f32>,
}

/// Taps below this weight are dropped: the reference's 23 taps at σ ≤ 2 carry under 2e-4 of
/// the total beyond the kept ones, far below half a level.
pub(super) const MIN_TAP: f32 = 1e-5;

// The blur's row kernels, eight lanes at a time, copied into local arrays and stored back
// whole. Written as in-place slice loops (`acc[i] += ...`) the compiler kept them scalar,
// unable to rule out that the store overlaps the next loads, and the blur ran several
// times slower.

pub(super) const L8: usize = 8;

#[inline(always)]
pub(super) fn lanes(v: &[f32]) -> [f32; L8] {
    v.try_into().expect("8 lanes")
}

#[inline(always)]
pub(super) fn scale(out: &mut [f32], src: &[f32], w: f32) {
    for (o, &v) in out.iter_mut().zip(src) {
        *o = w * v;
    }
}

#[inline(always)]
pub(super) fn add_one(acc: &mut [f32], src: &[f32], w: f32) {
    let n = acc.len().min(src.len()) / L8 * L8;
    for (o, x) in acc[..n].chunks_exact_mut(L8).zip(src[..n].chunks_exact(L8)) {
        // Copies in, one store out: with no store between the loads the eight lanes
        // become one vector operation.
        let (mut v, x): ([f32; L8], [f32; L8]) = (lanes(o), lanes(x));
        for i in 0..L8 {
            v[i] += w * x[i];
        }
        o.copy_from_slice(&v);
    }
    for (o, &x) in acc[n..].iter_mut().zip(&src[n..]) {
        *o += w * x;
    }
}

#[inline(always)]
pub(super) fn add_pair(acc: &mut [f32], a: &[f32], b: &[f32], w: f32) {
    let n = acc.len().min(a.len()).min(b.len()) / L8 * L8;
    let rows =
        acc[..n].chunks_exact_mut(L8).zip(a[..n].chunks_exact(L8)).zip(b[..n].chunks_exact(L8));
    for ((o, x), y) in rows {
        let (mut v, x, y): ([f32; L8], [f32; L8], [f32; L8]) = (lanes(o), lanes(x), lanes(y));
        for i in 0..L8 {
            v[i] += w * (x[i] + y[i]);
        }
        o.copy_from_slice(&v);
    }
    for ((o, &x), &y) in acc[n..].iter_mut().zip(&a[n..]).zip(&b[n..]) {
        *o += w * (x + y);
    }
}

impl BlurScratch {
    /// Loads the reference's kernel ([`blur_kernel`]) less the taps that carry nothing.
    /// Returns false when there is nothing to blur (radius 0).
    pub(super) fn set_kernel(&mut self, sigma: f32, s: usize) -> bool {
        let kernel = blur_kernel(sigma, s as u32);
        let radius = kernel.len() / 2;
        if radius == 0 || sigma.is_nan() || sigma <= 0.0 {
            return false;
        }
        let kept = kernel[radius + 1..].iter().take_while(|&&w| w >= MIN_TAP).count();
        self.radius = kept;
        self.taps.clear();
        self.taps.extend_from_slice(&kernel[radius - kept..=radius + kept]);
        self.tmp.clear();
        self.tmp.resize(s * s, 0.0);
        self.padded.clear();
        self.padded.resize(s + 2 * kept, 0.0);
        self.acc.clear();
        self.acc.resize(s, 0.0);
        true
    }

    /// Separable blur of one `s x s` plane in place, zero padding (TF's `padding='SAME'`
    /// depthwise convolution), so edges darken as in the reference. Each pass adds one tap
    /// pair at a time over a whole row (`acc += w * (left + right)`, the kernel being
    /// symmetric): plain slice loops, which the compiler vectorises. (Accumulating a few
    /// registers' worth of columns over all taps at once came out as scalar code.)
    #[inline(always)]
    pub(super) fn apply(&mut self, plane: &mut [u8], s: usize) {
        let r = self.radius;
        let BlurScratch { taps, tmp, padded, acc, .. } = self;
        let (centre, pairs) = (taps[r], &taps[r + 1..]);
        // Horizontal, from a zero-padded copy of each row.
        for (src, out) in plane.chunks_exact(s).zip(tmp.chunks_exact_mut(s)) {
            for (d, &v) in padded[r..r + s].iter_mut().zip(src) {
                *d = f32::from(v);
            }
            scale(out, &padded[r..r + s], centre);
            for (k, &w) in (1..).zip(pairs) {
                add_pair(out, &padded[r + k..r + k + s], &padded[r - k..r - k + s], w);
            }
        }
        // Vertical; rows outside the plane are zeros, so their taps are skipped.
        let row = |y: usize| &tmp[y * s..(y + 1) * s];
        for (y, dst) in plane.chunks_exact_mut(s).enumerate() {
            scale(acc, row(y), centre);
            for (k, &w) in (1..).zip(pairs) {
                let (up, down) = (y.checked_sub(k), Some(y + k).filter(|&d| d < s));
                match (up, down) {
                    (Some(u), Some(d)) => add_pair(acc, row(u), row(d), w),
                    (Some(one), None) | (None, Some(one)) => add_one(acc, row(one), w),
                    (None, None) => {}
                }
            }
            for (d, &v) in dst.iter_mut().zip(acc.iter()) {
                *d = to_u8(v);
            }
        }
    }
}
