//! Byte sums of the encoder's searches, 16 bytes a step with SSE2's `psadbw` on x86_64
//! (every x86_64 CPU has SSE2), a scalar loop elsewhere: LLVM's own vectorisation of these
//! loops fed `psadbw` 4 bytes at a time, and the motion search ([`sum_abs_diff`]) and the
//! block costs ([`sum_abs_i8`]) took 11 % and about 5 % of the default sharder's CPU time
//! (perf on `cvrl-shard build`).

/// `sum |a[i] - b[i]|` over two rows of equal length (else over the shorter's length).
pub(super) fn sum_abs_diff(a: &[u8], b: &[u8]) -> u64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (wide, done) = wide::sum_abs_diff(a, b);
    wide + a[done..].iter().zip(&b[done..]).map(|(&p, &q)| u64::from(p.abs_diff(q))).sum::<u64>()
}

/// `sum |r[i] as i8|`: the size of a residual block, as the predictor choice estimates it.
pub(super) fn sum_abs_i8(r: &[u8]) -> u32 {
    let (wide, done) = wide::sum_abs_i8(r);
    wide + r[done..].iter().map(|&x| u32::from((x as i8).unsigned_abs())).sum::<u32>()
}

/// The sums over the first multiple of 16 bytes, and that many bytes.
#[cfg(target_arch = "x86_64")]
mod wide {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi64, _mm_loadu_si128, _mm_min_epu8, _mm_sad_epu8, _mm_setzero_si128,
        _mm_storeu_si128, _mm_sub_epi8,
    };

    /// `f(x, y)` of each 16 bytes of `a` and `b` (equal lengths), summed over its 64-bit
    /// lanes.
    #[inline(always)]
    fn fold(a: &[u8], b: &[u8], f: impl Fn(__m128i, __m128i) -> __m128i) -> (u64, usize) {
        let n = a.len().min(b.len()) / 16 * 16;
        let mut lanes = [0u64; 2];
        // SAFETY: SSE2 is part of every x86_64 CPU; the loads read bytes i..i + 16 <= n,
        // inside both slices (unaligned loads), and the store writes the 16 bytes of `lanes`.
        unsafe {
            let mut acc = _mm_setzero_si128();
            for i in (0..n).step_by(16) {
                let x = _mm_loadu_si128(a.as_ptr().add(i).cast::<__m128i>());
                let y = _mm_loadu_si128(b.as_ptr().add(i).cast::<__m128i>());
                acc = _mm_add_epi64(acc, f(x, y));
            }
            _mm_storeu_si128(lanes.as_mut_ptr().cast::<__m128i>(), acc);
        }
        (lanes[0] + lanes[1], n)
    }

    pub(super) fn sum_abs_diff(a: &[u8], b: &[u8]) -> (u64, usize) {
        // SAFETY (of the intrinsics): SSE2, which every x86_64 CPU has.
        fold(a, b, |x, y| unsafe { _mm_sad_epu8(x, y) })
    }

    pub(super) fn sum_abs_i8(r: &[u8]) -> (u32, usize) {
        // |x as i8| = min(x, -x) as bytes (128 for -128), summed against zero.
        // SAFETY (of the intrinsics): SSE2, which every x86_64 CPU has.
        let (sum, n) = fold(r, r, |x, _| unsafe {
            let zero = _mm_setzero_si128();
            _mm_sad_epu8(_mm_min_epu8(x, _mm_sub_epi8(zero, x)), zero)
        });
        // At most 128 per byte: a block of up to 2^25 bytes fits.
        (sum as u32, n)
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod wide {
    pub(super) fn sum_abs_diff(_: &[u8], _: &[u8]) -> (u64, usize) {
        (0, 0)
    }
    pub(super) fn sum_abs_i8(_: &[u8]) -> (u32, usize) {
        (0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_match_the_byte_by_byte_ones() {
        let a: Vec<u8> = (0..53u32).map(|i| (i * 97 % 256) as u8).collect();
        let b: Vec<u8> = (0..53u32).map(|i| (i * 31 % 256) as u8).collect();
        for len in [0, 1, 15, 16, 17, 32, 53] {
            let diff: u64 = (0..len).map(|i| u64::from(a[i].abs_diff(b[i]))).sum();
            assert_eq!(sum_abs_diff(&a[..len], &b[..len]), diff, "{len} bytes");
            let abs: u32 = a[..len].iter().map(|&x| u32::from((x as i8).unsigned_abs())).sum();
            assert_eq!(sum_abs_i8(&a[..len]), abs, "{len} bytes");
        }
        assert_eq!(sum_abs_diff(&[255; 40], &[0; 40]), 40 * 255);
        // The extremes of i8: -128 counts 128, -1 and 1 count 1.
        let edge = [0x80u8, 0xff, 0x01, 0x7f, 0x00, 0x80, 0x81, 0xfe].repeat(5);
        assert_eq!(sum_abs_i8(&edge), 5 * (128 + 1 + 1 + 127 + 128 + 127 + 2));
    }
}
