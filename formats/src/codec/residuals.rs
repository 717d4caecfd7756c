//! Residual streams (`FORMAT.md#323-residual-streams`): the encoder splits residual planes
//! into context-selected streams, and the decoder's first pass reads them back into
//! residual planes.

use super::bits::{BitWriter, Fault, Readers};
use super::context::{
    group_up_sum, om_code, pixel_sum, row_group_contexts, sgn3, z_ctx, LIT_K, NM, NO, NZ, PAD_L,
    PAD_R,
};
use super::plane::Geom;

/// Appends the residual plane `res` to the streams (`FORMAT.md#323-residual-streams`).
pub(super) fn encode_residuals(
    g: &Geom,
    res: &[u8],
    bits: &mut [BitWriter],
    bytes: &mut [Vec<u8>],
    rows: &mut [Vec<u8>; 2],
) {
    let (w, s) = (g.w, g.s);
    for r in rows.iter_mut() {
        r.clear();
        r.resize(PAD_L + w + PAD_R, 0);
    }
    let [ra, rb] = rows;
    let (mut up, mut cur) = (&mut ra[..], &mut rb[..]);
    for y in 0..g.h {
        let r = &res[y * w..][..w];
        cur[PAD_L..PAD_L + w].copy_from_slice(r);
        for x0 in (0..w).step_by(8) {
            let n = (w - x0).min(8);
            let k = z_ctx(group_up_sum(up, x0));
            if k >= LIT_K {
                bytes[NM + k - LIT_K].extend_from_slice(&r[x0..x0 + n]);
                continue;
            }
            let mut mask = 0u32;
            for (i, &b) in r[x0..x0 + n].iter().enumerate() {
                mask |= u32::from(b != 0) << i;
            }
            bits[k].put(mask, n as u32);
            while mask != 0 {
                let i = PAD_L + x0 + mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let (ko, km, ks) = pixel_ctx(up, cur[i - s] != 0, i, s);
                let v = cur[i] as i8;
                let mag = u32::from(v.unsigned_abs());
                bits[NZ + ko].put(u32::from(mag > 1), 1);
                bits[NZ + NO + ks].put(u32::from(v < 0), 1);
                if mag > 1 {
                    bytes[km].push((mag - 2) as u8);
                }
            }
        }
        std::mem::swap(&mut up, &mut cur);
    }
}

/// Contexts of a non-zero residual at padded index `i`: (O, M, S). They use the row above
/// and only whether the left neighbour is non-zero, never its value, so a decoder knows them
/// from the zero flags alone and no pixel waits for its left neighbour's magnitude.
#[inline(always)]
fn pixel_ctx(up: &[u8], left_nonzero: bool, i: usize, s: usize) -> (usize, usize, usize) {
    let (b, c, d) = (up[i], up[i - s], up[i + s]);
    let abs = |v: u8| (v as i8).unsigned_abs();
    let oc = om_code(pixel_sum(u8::from(left_nonzero), abs(b), abs(c), abs(d)));
    (usize::from(oc & 7), usize::from(oc >> 3), 3 * sgn3(b) + sgn3(c))
}

/// Pass 1: entropy-decodes one plane's residuals into `plane`. Contexts depend only on
/// residuals, so this runs before any prediction.
/// `avx2`: run the build of [`residuals_body`] compiled for AVX2 (the caller checked the
/// CPU); its row loops get twice the lanes, and the bytes it produces are the same.
#[inline(never)]
pub(super) fn decode_residuals(
    g: &Geom,
    data: &[u8],
    rd: &mut Readers,
    rows: &mut RowScratch,
    plane: &mut [u8],
    fault: &mut Fault,
    avx2: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is only true when the CPU has every feature of the build
        // (`ChunkDecoder::new`, `has_avx2`).
        unsafe { residuals_avx2(g, data, rd, rows, plane, fault) };
        return;
    }
    let _ = avx2;
    residuals_body(g, data, rd, rows, plane, fault);
}

/// [`residuals_body`] compiled for AVX2 and its bit instructions (everything it calls is
/// `#[inline(always)]`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,bmi2,popcnt,lzcnt")]
unsafe fn residuals_avx2(
    g: &Geom,
    data: &[u8],
    rd: &mut Readers,
    rows: &mut RowScratch,
    plane: &mut [u8],
    fault: &mut Fault,
) {
    residuals_body(g, data, rd, rows, plane, fault)
}

#[inline(always)]
fn residuals_body(
    g: &Geom,
    data: &[u8],
    rd: &mut Readers,
    rows: &mut RowScratch,
    plane: &mut [u8],
    fault: &mut Fault,
) {
    let (w, s) = (g.w, g.s);
    let ngroups = w.div_ceil(8);
    let padded = PAD_L + w + PAD_R;
    for r in [&mut rows.up, &mut rows.cur, &mut rows.abs, &mut rows.om, &mut rows.sg] {
        r.clear();
        r.resize(padded, 0);
    }
    rows.ctx.clear();
    rows.ctx.resize(ngroups, 0);
    let RowScratch { up, cur, abs, ctx, om, sg, pending } = rows;
    for y in 0..g.h {
        // Every context of this row depends only on the row above and on this row's zero
        // flags, so they are computed in loops over whole rows that vectorise; what remains
        // per pixel is reading the streams.
        row_group_contexts(up, abs, ctx);
        let span = PAD_L..PAD_L + w;
        pending.clear();
        for (gi, &k) in ctx.iter().enumerate() {
            let x0 = gi * 8;
            let k = usize::from(k);
            let n = (w - x0).min(8);
            let vals: &mut [u8; 8] = (&mut cur[PAD_L + x0..PAD_L + x0 + 8]).try_into().unwrap();
            if k >= LIT_K {
                // Busy area: the bytes are stored as they are, a plain copy.
                *vals = rd.l[(k - LIT_K) & 7].read8(data, n, fault);
                continue;
            }
            let mask = rd.z[k & 15].read(data, n as u32, fault);
            // Until the magnitudes below replace them, a zero-flag group holds its flags (0
            // or 1), so `cur != 0` tells every byte of the row whether it is non-zero.
            // Spilling zeros into the right padding is harmless.
            *vals = NZ_EXPAND[mask as usize & 0xff];
            if mask != 0 {
                pending.push((x0 as u32, mask));
            }
        }
        if pending.is_empty() {
            plane[y * w..][..w].copy_from_slice(&cur[span]);
            std::mem::swap(up, cur);
            continue;
        }
        // Contexts of the non-zero residuals, only on rows that have some.
        for ((o, &b), &c) in
            sg[span.clone()].iter_mut().zip(&up[span.clone()]).zip(&up[PAD_L - s..])
        {
            *o = (3 * sgn3(b) + sgn3(c)) as u8;
        }
        let it = om[span.clone()].iter_mut().zip(&cur[PAD_L - s..]);
        for ((o, &left), (&b, (&c, &d))) in
            it.zip(abs[span.clone()].iter().zip(abs[PAD_L - s..].iter().zip(&abs[PAD_L + s..])))
        {
            *o = om_code(pixel_sum(u8::from(left != 0), b, c, d));
        }
        for &(x0, mut mask) in pending.iter() {
            while mask != 0 {
                let i = PAD_L + x0 as usize + mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let (oc, ks) = (om[i], sg[i]);
                let big = rd.o[usize::from(oc & 7)].read(data, 1, fault);
                let neg = rd.s[usize::from(ks & 15)].read(data, 1, fault);
                let m = u32::from(rd.m[usize::from(oc >> 3) & 3].read_if(data, big != 0, fault));
                let mag = if big != 0 { m + 2 } else { 1 };
                if mag > 127 + neg {
                    fault.magnitude.get_or_insert(mag);
                }
                let m = mag as u8;
                cur[i] = if neg != 0 { m.wrapping_neg() } else { m };
            }
        }
        plane[y * w..][..w].copy_from_slice(&cur[span]);
        std::mem::swap(up, cur);
    }
}

/// Row buffers of [`decode_residuals`], padded by `PAD_L`/`PAD_R` zero bytes.
#[derive(Default)]
pub(super) struct RowScratch {
    /// Residuals of the row above and of this row.
    up: Vec<u8>,
    cur: Vec<u8>,
    /// `|v|` of the row above.
    abs: Vec<u8>,
    /// Group context of each group of this row.
    ctx: Vec<u8>,
    /// Per pixel: O and M contexts (`om_code`), and S context.
    om: Vec<u8>,
    sg: Vec<u8>,
    /// Groups of this row with non-zero residuals: (x0, zero-flag mask).
    pending: Vec<(u32, u32)>,
}

/// Bit `i` of the index becomes byte `i` (0 or 1).
static NZ_EXPAND: [[u8; 8]; 256] = {
    let mut t = [[0u8; 8]; 256];
    let mut m = 0;
    while m < 256 {
        let mut i = 0;
        while i < 8 {
            t[m][i] = ((m >> i) & 1) as u8;
            i += 1;
        }
        m += 1;
    }
    t
};
