//! Pixel formats and the geometry of stored frames (`FORMAT.md#31-frames`), and the
//! conversion of a `yuv420p` frame to RGB that cvrl's tools use.
//!
//! [`FrameLayout`] is validated once (size bounds, even `yuv420p` sizes) so that every
//! size computation after it is plain arithmetic.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How the pixels of a stored frame are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// Planar Y, U, V with 2x2 chroma subsampling (limited range, as decoded).
    Yuv420p,
    /// Packed R, G, B, one byte each.
    Rgb24,
}

impl PixelFormat {
    /// The on-disk code of this format (`FORMAT.md#3-video-record`).
    pub fn code(self) -> u8 {
        match self {
            PixelFormat::Yuv420p => 1,
            PixelFormat::Rgb24 => 2,
        }
    }

    /// Inverse of [`PixelFormat::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(PixelFormat::Yuv420p),
            2 => Some(PixelFormat::Rgb24),
            _ => None,
        }
    }

    /// The name used in the index, the manifest and on the command line (FFmpeg's names).
    pub fn as_str(self) -> &'static str {
        match self {
            PixelFormat::Yuv420p => "yuv420p",
            PixelFormat::Rgb24 => "rgb24",
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PixelFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "yuv420p" => Ok(PixelFormat::Yuv420p),
            "rgb24" => Ok(PixelFormat::Rgb24),
            other => Err(format!("unknown pixel format {other:?} (expected yuv420p or rgb24)")),
        }
    }
}

/// One plane of a frame: `width` bytes per row, `height` rows, packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plane {
    pub width: usize,
    pub height: usize,
}

impl Plane {
    pub fn len(&self) -> usize {
        self.width * self.height
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Validated geometry of the frames of one video. Construct with [`FrameLayout::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    width: u32,
    height: u32,
    format: PixelFormat,
}

/// Largest width or height accepted (8K); bounds every size computation.
pub const MAX_DIMENSION: u32 = 8192;

impl FrameLayout {
    /// Checks that the size is non-zero, at most [`MAX_DIMENSION`], and even for `yuv420p`.
    pub fn new(width: u32, height: u32, format: PixelFormat) -> Result<Self, String> {
        if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
            return Err(format!("frame size {width}x{height} outside 1..={MAX_DIMENSION}"));
        }
        if format == PixelFormat::Yuv420p && (!width.is_multiple_of(2) || !height.is_multiple_of(2))
        {
            return Err(format!("yuv420p frame size {width}x{height} must be even"));
        }
        Ok(FrameLayout { width, height, format })
    }

    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// The planes of one frame, in storage order.
    pub fn planes(&self) -> Vec<Plane> {
        let (w, h) = (self.width as usize, self.height as usize);
        match self.format {
            PixelFormat::Yuv420p => {
                let c = Plane { width: w / 2, height: h / 2 };
                vec![Plane { width: w, height: h }, c, c]
            }
            PixelFormat::Rgb24 => vec![Plane { width: 3 * w, height: h }],
        }
    }

    /// Bytes of one stored frame.
    pub fn frame_bytes(&self) -> usize {
        self.planes().iter().map(Plane::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuv420p_frame_is_one_and_a_half_bytes_per_pixel() {
        let l = FrameLayout::new(342, 256, PixelFormat::Yuv420p).unwrap();
        assert_eq!(l.frame_bytes(), 342 * 256 * 3 / 2);
        assert_eq!(l.planes()[1], Plane { width: 171, height: 128 });
    }

    #[test]
    fn odd_yuv_sizes_and_zero_sizes_are_rejected() {
        assert!(FrameLayout::new(341, 256, PixelFormat::Yuv420p).is_err());
        assert!(FrameLayout::new(341, 256, PixelFormat::Rgb24).is_ok());
        assert!(FrameLayout::new(0, 256, PixelFormat::Rgb24).is_err());
        assert!(FrameLayout::new(9000, 256, PixelFormat::Rgb24).is_err());
    }

    #[test]
    fn names_round_trip() {
        for f in [PixelFormat::Yuv420p, PixelFormat::Rgb24] {
            assert_eq!(f.as_str().parse::<PixelFormat>().unwrap(), f);
            assert_eq!(PixelFormat::from_code(f.code()), Some(f));
        }
    }
}

/// Converts one `yuv420p` frame (BT.601, limited range: what H.264 Kinetics videos decode
/// to) to packed `rgb24`, writing `width * height * 3` bytes into `rgb`. Fixed-point with
/// 16 fractional bits, so results match the float formula to within one level.
///
/// Two rows at a time share their chroma terms, and blocks of [`BLOCK`] chroma samples go
/// through fixed-length loops the compiler vectorises (built twice: for the baseline x86-64
/// and for AVX2, picked at run time). Every pixel is the same integer expression as in a
/// plain per-pixel loop; the tests compare the two byte for byte.
///
/// # Panics
/// If `yuv` is shorter than [`FrameLayout::frame_bytes`] or `rgb` than `width * height * 3`.
pub fn yuv420p_to_rgb24(layout: &FrameLayout, yuv: &[u8], rgb: &mut [u8]) {
    let (w, h) = (layout.width() as usize, layout.height() as usize);
    assert!(
        yuv.len() >= layout.frame_bytes() && rgb.len() >= w * h * 3,
        "yuv420p_to_rgb24: {w}x{h} needs {} yuv and {} rgb bytes, got {} and {}",
        layout.frame_bytes(),
        w * h * 3,
        yuv.len(),
        rgb.len()
    );
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked on the line above).
        unsafe { convert_frame_avx2(w, h, yuv, rgb) };
        return;
    }
    convert_frame(w, h, yuv, rgb);
}

/// [`convert_frame`] compiled for AVX2 (everything it calls is `#[inline(always)]`): twice
/// the lanes, the same bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn convert_frame_avx2(w: usize, h: usize, yuv: &[u8], rgb: &mut [u8]) {
    convert_frame(w, h, yuv, rgb)
}

/// The body of [`yuv420p_to_rgb24`] for an even `w x h` frame, buffers long enough.
#[inline(always)]
fn convert_frame(w: usize, h: usize, yuv: &[u8], rgb: &mut [u8]) {
    let cw = w / 2;
    let (y_plane, rest) = yuv.split_at(w * h);
    let (u_plane, v_plane) = rest.split_at(cw * (h / 2));
    let rows = y_plane
        .chunks_exact(2 * w)
        .zip(u_plane.chunks_exact(cw))
        .zip(v_plane.chunks_exact(cw))
        .zip(rgb[..w * h * 3].chunks_exact_mut(6 * w));
    for (((y2, u), v), out2) in rows {
        let (y0, y1) = y2.split_at(w);
        let (o0, o1) = out2.split_at_mut(3 * w);
        convert_rows([y0, y1], u, v, [o0, o1]);
    }
}

/// A box in stored pixels: columns `x..x + w`, rows `y..y + h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Crop {
    /// The whole `layout` frame.
    pub fn full(layout: &FrameLayout) -> Self {
        Crop { x: 0, y: 0, w: layout.width(), h: layout.height() }
    }

    /// Whether the box is non-empty and lies inside `layout`'s frames.
    pub fn fits(&self, layout: &FrameLayout) -> bool {
        self.w > 0
            && self.h > 0
            && u64::from(self.x) + u64::from(self.w) <= u64::from(layout.width())
            && u64::from(self.y) + u64::from(self.h) <= u64::from(layout.height())
    }

    /// Bytes of the box as packed `rgb24`.
    pub fn rgb_bytes(&self) -> usize {
        3 * self.w as usize * self.h as usize
    }
}

/// [`yuv420p_to_rgb24`] of the box `crop` only: `crop.w * crop.h * 3` bytes into `rgb`,
/// byte for byte the whole frame's conversion cut to the box (and mirrored left to right
/// when `flip`), at the cost of the box's pixels (plus at most one column and row around
/// it, for an odd edge).
///
/// # Panics
/// If the box does not [`fit`](Crop::fits) the frame, `yuv` is shorter than
/// [`FrameLayout::frame_bytes`] or `rgb` than [`Crop::rgb_bytes`].
pub fn yuv420p_to_rgb24_crop(
    layout: &FrameLayout,
    yuv: &[u8],
    crop: Crop,
    flip: bool,
    rgb: &mut [u8],
) {
    assert!(
        crop.fits(layout) && yuv.len() >= layout.frame_bytes() && rgb.len() >= crop.rgb_bytes(),
        "yuv420p_to_rgb24_crop: {crop:?} of a {}x{} frame into {} rgb bytes from {} yuv bytes",
        layout.width(),
        layout.height(),
        rgb.len(),
        yuv.len()
    );
    let (w, h) = (layout.width() as usize, layout.height() as usize);
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked on the line above).
        unsafe { convert_crop_avx2(w, h, yuv, crop, flip, rgb) };
        return;
    }
    convert_crop(w, h, yuv, crop, flip, rgb);
}

/// [`convert_crop`] compiled for AVX2, as [`convert_frame_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn convert_crop_avx2(
    w: usize,
    h: usize,
    yuv: &[u8],
    crop: Crop,
    flip: bool,
    rgb: &mut [u8],
) {
    convert_crop(w, h, yuv, crop, flip, rgb)
}

/// The body of [`yuv420p_to_rgb24_crop`]: each pair of rows the box touches is converted
/// over the chroma columns the box touches into a scratch pair of rows, whose rows and
/// columns inside the box are copied out (the copy runs in cache).
///
/// A mirrored box converts mirrored rows: the luma and chroma samples of those columns in
/// reverse order convert to the mirrored RGB row (each pair of luma samples still shares
/// its chroma sample, since the columns start and end on chroma edges), so mirroring costs
/// a byte reversal of the planes' rows instead of a 3-byte copy per pixel.
#[inline(always)]
fn convert_crop(w: usize, h: usize, yuv: &[u8], crop: Crop, flip: bool, rgb: &mut [u8]) {
    let cw = w / 2;
    let (y_plane, rest) = yuv.split_at(w * h);
    let (u_plane, v_plane) = rest.split_at(cw * (h / 2));
    let [x, y, bw, bh] = [crop.x, crop.y, crop.w, crop.h].map(|v| v as usize);
    let (c0, c1) = (x / 2, (x + bw).div_ceil(2));
    let n = c1 - c0;
    // Bytes of the scratch rows before the box: 3 when it starts on an odd column (or, when
    // mirrored, ends on an even one).
    let skip = 3 * if flip { 2 * c1 - (x + bw) } else { x - 2 * c0 };
    let out_row = 3 * bw;
    let (mut s0, mut s1) = (vec![0u8; 6 * n], vec![0u8; 6 * n]);
    // Mirrored input rows: two luma rows, then U, then V.
    let mut mirrored = vec![0u8; if flip { 6 * n } else { 0 }];
    for cy in y / 2..(y + bh).div_ceil(2) {
        let luma = |r: usize| &y_plane[r * w + 2 * c0..r * w + 2 * c1];
        let chroma = cy * cw + c0..cy * cw + c1;
        let (u, v) = (&u_plane[chroma.clone()], &v_plane[chroma]);
        let (l0, l1) = (luma(2 * cy), luma(2 * cy + 1));
        if flip {
            let (m0, rest) = mirrored.split_at_mut(2 * n);
            let (m1, rest) = rest.split_at_mut(2 * n);
            let (mu, mv) = rest.split_at_mut(n);
            for (dst, src) in [(&mut *m0, l0), (&mut *m1, l1), (&mut *mu, u), (&mut *mv, v)] {
                reverse_into(src, dst);
            }
            convert_rows([m0, m1], mu, mv, [&mut s0, &mut s1]);
        } else {
            convert_rows([l0, l1], u, v, [&mut s0, &mut s1]);
        }
        for (r, scratch) in [(2 * cy, &s0), (2 * cy + 1, &s1)] {
            if (y..y + bh).contains(&r) {
                let at = (r - y) * out_row;
                rgb[at..at + out_row].copy_from_slice(&scratch[skip..skip + out_row]);
            }
        }
    }
}

/// `dst` = `src` in reverse order (the same length).
#[inline(always)]
fn reverse_into(src: &[u8], dst: &mut [u8]) {
    for (d, &s) in dst.iter_mut().zip(src.iter().rev()) {
        *d = s;
    }
}

/// Copies a row of packed RGB pixels, mirrored left to right when `flip`.
///
/// # Panics
/// If the rows differ in length.
#[inline(always)]
pub fn copy_rgb_row(src: &[u8], dst: &mut [u8], flip: bool) {
    if flip {
        assert_eq!(src.len(), dst.len(), "copy_rgb_row: rows of different lengths");
        for (d, s) in dst.chunks_exact_mut(3).zip(src.chunks_exact(3).rev()) {
            d.copy_from_slice(s);
        }
    } else {
        dst.copy_from_slice(src);
    }
}

/// Two rows that share the chroma samples `u` and `v`: `2 * u.len()` pixels of each `y`
/// row into each `out` row, whole [`BLOCK`]s and then a padded last block.
#[inline(always)]
fn convert_rows(y: [&[u8]; 2], u: &[u8], v: &[u8], out: [&mut [u8]; 2]) {
    let ([y0, y1], [o0, o1]) = (y, out);
    let cw = u.len();
    let whole = cw / BLOCK * BLOCK;
    for b in (0..whole).step_by(BLOCK) {
        let (ys, os) = (2 * b..2 * b + 2 * BLOCK, 6 * b..6 * b + 6 * BLOCK);
        convert_block(
            [&y0[ys.clone()], &y1[ys]],
            &u[b..b + BLOCK],
            &v[b..b + BLOCK],
            [&mut o0[os.clone()], &mut o1[os]],
        );
    }
    if whole < cw {
        // The row's last chroma samples: a block padded with zeros, of which only the
        // first `rest` samples' pixels are copied out.
        let rest = cw - whole;
        let (mut yp, mut up, mut vp) = ([[0u8; 2 * BLOCK]; 2], [0u8; BLOCK], [0u8; BLOCK]);
        yp[0][..2 * rest].copy_from_slice(&y0[2 * whole..2 * cw]);
        yp[1][..2 * rest].copy_from_slice(&y1[2 * whole..2 * cw]);
        up[..rest].copy_from_slice(&u[whole..]);
        vp[..rest].copy_from_slice(&v[whole..]);
        let [mut op0, mut op1] = [[0u8; 6 * BLOCK]; 2];
        convert_block([&yp[0], &yp[1]], &up, &vp, [&mut op0, &mut op1]);
        o0[6 * whole..6 * cw].copy_from_slice(&op0[..6 * rest]);
        o1[6 * whole..6 * cw].copy_from_slice(&op1[..6 * rest]);
    }
}

/// Chroma samples per block of [`yuv420p_to_rgb24`]: 32 pixels of each of two rows.
const BLOCK: usize = 16;

/// `BLOCK` chroma samples and the `2 x 2 * BLOCK` pixels they cover. Slices of at least
/// those lengths, cut to exactly them first, so the loops below know their lengths.
#[inline(always)]
fn convert_block(y: [&[u8]; 2], u: &[u8], v: &[u8], out: [&mut [u8]; 2]) {
    let (u, v) = (&u[..BLOCK], &v[..BLOCK]);
    // What each pixel's chroma sample adds to R, G and B in 16.16 fixed point, with the
    // rounding half (32768) folded in.
    let (mut tr, mut tg, mut tb) = ([0i32; 2 * BLOCK], [0i32; 2 * BLOCK], [0i32; 2 * BLOCK]);
    for i in 0..2 * BLOCK {
        let (d, e) = (i32::from(u[i / 2]) - 128, i32::from(v[i / 2]) - 128);
        tr[i] = 104597 * e + 32768; // 1.596
        tg[i] = 32768 - 25675 * d - 53279 * e; // 0.392, 0.813
        tb[i] = 132201 * d + 32768; // 2.017
    }
    for (ys, os) in y.into_iter().zip(out) {
        let (ys, os) = (&ys[..2 * BLOCK], &mut os[..6 * BLOCK]);
        // Each pixel as the little-endian word R | G << 8 | B << 16, then stored 4 bytes at
        // a time 3 bytes apart (each store's fourth byte is overwritten by the next): one
        // store per pixel instead of three byte copies.
        let mut px = [0u32; 2 * BLOCK];
        for i in 0..2 * BLOCK {
            let c = (i32::from(ys[i]) - 16) * 76309; // 255/219 in 16.16
            let (r, g, b) = (to_u8(c + tr[i]), to_u8(c + tg[i]), to_u8(c + tb[i]));
            px[i] = u32::from(r) | u32::from(g) << 8 | u32::from(b) << 16;
        }
        for i in 0..2 * BLOCK - 1 {
            os[3 * i..3 * i + 4].copy_from_slice(&px[i].to_le_bytes());
        }
        let last = 2 * BLOCK - 1;
        os[3 * last..].copy_from_slice(&px[last].to_le_bytes()[..3]);
    }
}

/// `v >> 16` clamped to a byte. That lies in -277..=535 for any input, so it is clamped as
/// an i16, for which SSE2 has min/max and saturating packs (it has none for i32).
#[inline(always)]
fn to_u8(v: i32) -> u8 {
    ((v >> 16) as i16).clamp(0, 255) as u8
}

#[cfg(test)]
mod convert_tests {
    use super::*;

    #[test]
    fn limited_range_grey_white_and_red_convert_to_rgb() {
        let l = FrameLayout::new(2, 2, PixelFormat::Yuv420p).unwrap();
        let mut rgb = [0u8; 12];
        yuv420p_to_rgb24(&l, &[16, 16, 16, 16, 128, 128], &mut rgb);
        assert_eq!(rgb, [0; 12]);
        yuv420p_to_rgb24(&l, &[235, 235, 235, 235, 128, 128], &mut rgb);
        assert_eq!(rgb, [255; 12]);
        // BT.601 limited-range pure red is Y=81, U=90, V=240.
        yuv420p_to_rgb24(&l, &[81, 81, 81, 81, 90, 240], &mut rgb);
        assert!(rgb[0] >= 253 && rgb[1] <= 2 && rgb[2] <= 2, "{rgb:?}");
    }

    /// The conversion as one plain loop over pixels, the formula written once per pixel:
    /// what the blocked, vectorised [`yuv420p_to_rgb24`] must reproduce byte for byte.
    fn reference(layout: &FrameLayout, yuv: &[u8], rgb: &mut [u8]) {
        let (w, h) = (layout.width() as usize, layout.height() as usize);
        let (y_plane, rest) = yuv.split_at(w * h);
        let (u_plane, v_plane) = rest.split_at(w * h / 4);
        for row in 0..h {
            let ys = &y_plane[row * w..(row + 1) * w];
            let us = &u_plane[(row / 2) * (w / 2)..(row / 2 + 1) * (w / 2)];
            let vs = &v_plane[(row / 2) * (w / 2)..(row / 2 + 1) * (w / 2)];
            let out = &mut rgb[row * w * 3..(row + 1) * w * 3];
            for (x, px) in out.chunks_exact_mut(3).enumerate() {
                let c = (i32::from(ys[x]) - 16) * 76309;
                let d = i32::from(us[x / 2]) - 128;
                let e = i32::from(vs[x / 2]) - 128;
                let clamp = |v: i32| ((v + 32768) >> 16).clamp(0, 255) as u8;
                px[0] = clamp(c + 104597 * e);
                px[1] = clamp(c - 25675 * d - 53279 * e);
                px[2] = clamp(c + 132201 * d);
            }
        }
    }

    #[test]
    fn blocked_conversion_matches_the_per_pixel_loop_byte_for_byte() {
        use rand::{RngExt as _, SeedableRng};
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(7);
        // Widths below, at and around the block (32 pixels), odd chroma widths, the bench's
        // 456 and 342, and one over 1000; every byte value in every plane.
        let sizes = [(2, 2), (30, 4), (32, 2), (34, 6), (64, 8), (66, 10), (94, 4), (342, 16)];
        for (w, h) in sizes.into_iter().chain([(456, 12), (1030, 6)]) {
            let l = FrameLayout::new(w, h, PixelFormat::Yuv420p).unwrap();
            for _ in 0..4 {
                let mut yuv = vec![0u8; l.frame_bytes()];
                rng.fill(&mut yuv[..]);
                let n = (w * h * 3) as usize;
                // A longer output buffer than needed: bytes past the frame stay untouched.
                let (mut want, mut got) = (vec![0xAAu8; n + 5], vec![0xAAu8; n + 5]);
                reference(&l, &yuv, &mut want);
                yuv420p_to_rgb24(&l, &yuv, &mut got);
                assert!(want == got, "{w}x{h}: the blocked conversion differs");
                // The baseline build of the body, which CPUs without AVX2 run.
                got.fill(0xAA);
                convert_frame(w as usize, h as usize, &yuv, &mut got);
                assert!(want == got, "{w}x{h}: the baseline blocked conversion differs");
            }
        }
    }

    #[test]
    fn crops_convert_as_the_whole_frame_cut_to_the_box_and_mirrored() {
        use rand::{RngExt as _, SeedableRng};
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(11);
        for (w, h) in [(2, 2), (34, 6), (66, 10), (456, 16)] {
            let l = FrameLayout::new(w, h, PixelFormat::Yuv420p).unwrap();
            let mut yuv = vec![0u8; l.frame_bytes()];
            rng.fill(&mut yuv[..]);
            let mut whole = vec![0u8; (w * h * 3) as usize];
            reference(&l, &yuv, &mut whole);
            // Random boxes (odd and even edges), the whole frame and single pixels.
            let mut crops: Vec<Crop> = (0..40)
                .map(|_| {
                    let (bw, bh) = (rng.random_range(1..=w), rng.random_range(1..=h));
                    let (x, y) = (rng.random_range(0..=w - bw), rng.random_range(0..=h - bh));
                    Crop { x, y, w: bw, h: bh }
                })
                .collect();
            crops.extend([Crop::full(&l), Crop { x: w - 1, y: h - 1, w: 1, h: 1 }]);
            for crop in crops {
                let want: Vec<u8> = (crop.y..crop.y + crop.h)
                    .flat_map(|r| {
                        let at = 3 * (r * w + crop.x) as usize;
                        whole[at..at + 3 * crop.w as usize].iter().copied()
                    })
                    .collect();
                // Bytes past the box stay untouched.
                // The box mirrored: each row's pixels in reverse order.
                let mirrored: Vec<u8> = want
                    .chunks_exact(3 * crop.w as usize)
                    .flat_map(|row| row.chunks_exact(3).rev().flatten().copied())
                    .collect();
                for (flip, want) in [(false, &want), (true, &mirrored)] {
                    let mut got = vec![0xAAu8; crop.rgb_bytes() + 4];
                    yuv420p_to_rgb24_crop(&l, &yuv, crop, flip, &mut got);
                    assert!(got[..want.len()] == want[..], "{w}x{h} {crop:?} flip {flip}");
                    assert!(got[want.len()..].iter().all(|&b| b == 0xAA), "{w}x{h} {crop:?}");
                    got.fill(0xAA);
                    convert_crop(w as usize, h as usize, &yuv, crop, flip, &mut got);
                    assert!(got[..want.len()] == want[..], "{w}x{h} {crop:?}, baseline build");
                }
            }
        }
    }

    #[test]
    fn crops_outside_the_frame_do_not_fit() {
        let l = FrameLayout::new(8, 4, PixelFormat::Yuv420p).unwrap();
        assert!(Crop { x: 2, y: 1, w: 6, h: 3 }.fits(&l));
        for bad in [(0, 0, 0, 4), (0, 0, 8, 0), (3, 0, 6, 4), (0, 1, 8, 4), (u32::MAX, 0, 2, 2)] {
            let (x, y, w, h) = bad;
            assert!(!Crop { x, y, w, h }.fits(&l), "{bad:?}");
        }
    }

    #[test]
    fn extreme_planes_convert_as_the_per_pixel_loop() {
        // The corners of the i16 clamp's range: Y, U, V at 0 and 255 in all combinations.
        let l = FrameLayout::new(64, 2, PixelFormat::Yuv420p).unwrap();
        for (y, u, v) in (0..8).map(|k| (255 * (k & 1), 255 * (k >> 1 & 1), 255 * (k >> 2))) {
            let mut yuv = vec![y as u8; 128];
            yuv.extend(std::iter::repeat_n(u as u8, 32));
            yuv.extend(std::iter::repeat_n(v as u8, 32));
            let (mut want, mut got) = ([0u8; 384], [0u8; 384]);
            reference(&l, &yuv, &mut want);
            yuv420p_to_rgb24(&l, &yuv, &mut got);
            assert_eq!(want, got, "Y {y} U {u} V {v}");
            convert_frame(64, 2, &yuv, &mut got);
            assert_eq!(want, got, "Y {y} U {u} V {v}, baseline build");
        }
    }
}
