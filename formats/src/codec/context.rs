//! The context model shared by encoder and decoder (`FORMAT.md#323-residual-streams`): the
//! stream counts and thresholds, and the contexts of a group and of a non-zero residual as
//! fast code (a quantiser table for groups; for residuals, sums saturated to a byte and
//! compared without a table so the decoder's row loops vectorise).

/// Group contexts; those from `LIT_K` up are literal groups.
pub(super) const NG: usize = 13;
pub(super) const LIT_K: usize = 9;
pub(super) const NZ: usize = LIT_K;
pub(super) const NO: usize = 7;
pub(super) const NS: usize = 9;
pub(super) const NM: usize = 4;
pub(super) const NL: usize = NG - LIT_K;
pub(super) const N_BIT_STREAMS: usize = NZ + NO + NS;
pub(super) const N_BYTE_STREAMS: usize = NM + NL;
pub(super) const N_STREAMS: usize = N_BIT_STREAMS + N_BYTE_STREAMS;
pub(super) const Z_THRESHOLDS: [u32; NG - 1] = [0, 1, 2, 3, 4, 6, 8, 11, 15, 20, 28, 40];
pub(super) const O_THRESHOLDS: [u32; NO - 1] = [1, 2, 4, 7, 12, 20];
pub(super) const M_THRESHOLDS: [u32; NM - 1] = [4, 10, 25];
/// Bytes of left padding on context rows: at least `S` and at least 1 (group context).
pub(super) const PAD_L: usize = 8;
/// Bytes of right padding: the group context reads up to `x0 + 8`, a group writes 8 bytes.
pub(super) const PAD_R: usize = 16;

const fn quantizer<const N: usize, const T: usize>(t: [u32; T]) -> [u8; N] {
    let mut q = [0u8; N];
    let mut s = 0;
    while s < N {
        let mut k = 0;
        while k < T && t[k] < s as u32 {
            k += 1;
        }
        q[s] = k as u8;
        s += 1;
    }
    q
}

/// Group context index for `g` (`g > 40` maps to the last context).
static ZQ: [u8; 42] = quantizer::<42, { NG - 1 }>(Z_THRESHOLDS);

#[inline(always)]
pub(super) fn z_ctx(g: u32) -> usize {
    ZQ[g.min(41) as usize] as usize
}

/// Context sum `s` of a non-zero residual (`FORMAT.md#323-residual-streams`), saturated: every threshold is below 255.
#[inline(always)]
pub(super) fn pixel_sum(left_nonzero: u8, b: u8, c: u8, d: u8) -> u8 {
    (2 * left_nonzero).saturating_add(b).saturating_add(c).saturating_add(d)
}

/// `(O context) | (M context) << 3` for a context sum, computed without a table so the
/// decoder's per-row loop vectorises.
#[inline(always)]
pub(super) fn om_code(sum: u8) -> u8 {
    let ko = O_THRESHOLDS.iter().map(|&t| u8::from(u32::from(sum) > t)).sum::<u8>();
    let km = M_THRESHOLDS.iter().map(|&t| u8::from(u32::from(sum) > t)).sum::<u8>();
    ko | km << 3
}

#[inline(always)]
pub(super) fn sgn3(v: u8) -> usize {
    ((v as i8).signum() + 1) as usize
}

/// Sum of `|v|` over the 10 bytes `x0-1..=x0+8` of a padded row (index `PAD_L + x`).
#[inline(always)]
pub(super) fn group_up_sum(up: &[u8], x0: usize) -> u32 {
    let win: &[u8; 10] = up[PAD_L + x0 - 1..PAD_L + x0 + 9].try_into().unwrap();
    win.iter().map(|&v| u32::from((v as i8).unsigned_abs())).sum()
}

/// The group contexts of a row (`ctx`, one per group of 8) from the padded residual row
/// above (`up`, index `PAD_L + x`); `abs` is scratch of `up`'s length. Loops over whole rows
/// that vectorise, for both decoders' residual passes.
#[inline(always)]
pub(super) fn row_group_contexts(up: &[u8], abs: &mut [u8], ctx: &mut [u8]) {
    for (a, &v) in abs.iter_mut().zip(up) {
        *a = (v as i8).unsigned_abs();
    }
    for (gi, c) in ctx.iter_mut().enumerate() {
        let win = &abs[PAD_L + gi * 8 - 1..PAD_L + gi * 8 + 9];
        *c = z_ctx(win.iter().map(|&a| u32::from(a)).sum()) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_tables_match_their_thresholds() {
        for g in 0..100u32 {
            assert_eq!(z_ctx(g), Z_THRESHOLDS.iter().filter(|&&t| g > t).count());
        }
        for s in 0..=255u8 {
            let c = om_code(s);
            let above = |t: &[u32]| t.iter().filter(|&&t| u32::from(s) > t).count() as u8;
            assert_eq!((c & 7, c >> 3), (above(&O_THRESHOLDS), above(&M_THRESHOLDS)));
        }
        assert_eq!(pixel_sum(1, 128, 128, 128), 255);
    }

    #[test]
    fn group_contexts_sum_the_ten_bytes_above() {
        // Every |v| up to 128 (v = -128 included), in every position of a window.
        let mut x = 0x9e37_79b9u32;
        for _ in 0..2000 {
            let up: Vec<u8> = (0..PAD_L + 24 + PAD_R)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    [0x80, 0x7f, 0x81, 0, 1, 0xff, x as u8, (x >> 8) as u8][(x >> 29) as usize]
                })
                .collect();
            let mut abs = vec![0; up.len()];
            let mut ctx = vec![0; 3];
            row_group_contexts(&up, &mut abs, &mut ctx);
            for (gi, &c) in ctx.iter().enumerate() {
                let sum: u32 = (0..10)
                    .map(|i| u32::from((up[PAD_L + gi * 8 - 1 + i] as i8).unsigned_abs()))
                    .sum();
                assert_eq!(usize::from(c), z_ctx(sum), "group {gi}");
            }
        }
    }
}
