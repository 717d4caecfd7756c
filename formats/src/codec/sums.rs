//! Byte sums of the encoder's searches, 16 bytes a step with SSE2's `psadbw` on x86_64
//! (every x86_64 CPU has SSE2), a scalar loop elsewhere: LLVM's own vectorisation of these
//! loops fed `psadbw` 4 bytes at a time, and the motion search ([`sum_abs_diff`]) and the
//! block costs ([`add_abs_i8_lanes`]) took 11 % and about 5 % of the default sharder's CPU
//! time (perf on `cvrl-shard build`).

/// `sum |a[i] - b[i]|` over two rows of equal length (else over the shorter's length).
pub(super) fn sum_abs_diff(a: &[u8], b: &[u8]) -> u64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (wide, done) = wide::sum_abs_diff(a, b);
    wide + a[done..].iter().zip(&b[done..]).map(|(&p, &q)| u64::from(p.abs_diff(q))).sum::<u64>()
}

/// Adds `sum |r[i] as i8|` over each 8 bytes of the row `r` to `lanes` (one per 8 bytes, the
/// last for what is left): the block costs of a block row, 8 columns at a time.
pub(super) fn add_abs_i8_lanes(r: &[u8], lanes: &mut [u64]) {
    let done = wide::add_abs_i8_lanes(r, lanes);
    for (lane, chunk) in lanes[done / 8..].iter_mut().zip(r[done..].chunks(8)) {
        *lane += chunk.iter().map(|&x| u64::from((x as i8).unsigned_abs())).sum::<u64>();
    }
}

/// The SSE2 loops over the first multiple of 16 bytes.
#[cfg(target_arch = "x86_64")]
mod wide {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi64, _mm_loadu_si128, _mm_min_epu8, _mm_sad_epu8, _mm_setzero_si128,
        _mm_storeu_si128, _mm_sub_epi8,
    };

    /// [`super::sum_abs_diff`] over the first multiple of 16 bytes of `a` and `b` (equal
    /// lengths), and that many bytes.
    pub(super) fn sum_abs_diff(a: &[u8], b: &[u8]) -> (u64, usize) {
        let n = a.len().min(b.len()) / 16 * 16;
        let mut lanes = [0u64; 2];
        // SAFETY: SSE2 is part of every x86_64 CPU; the loads read bytes i..i + 16 <= n,
        // inside both slices (unaligned loads), and the store writes the 16 bytes of `lanes`.
        unsafe {
            let mut acc = _mm_setzero_si128();
            for i in (0..n).step_by(16) {
                let x = _mm_loadu_si128(a.as_ptr().add(i).cast::<__m128i>());
                let y = _mm_loadu_si128(b.as_ptr().add(i).cast::<__m128i>());
                acc = _mm_add_epi64(acc, _mm_sad_epu8(x, y));
            }
            _mm_storeu_si128(lanes.as_mut_ptr().cast::<__m128i>(), acc);
        }
        (lanes[0] + lanes[1], n)
    }

    /// [`super::add_abs_i8_lanes`] over the first multiple of 16 bytes; returns that many.
    pub(super) fn add_abs_i8_lanes(r: &[u8], lanes: &mut [u64]) -> usize {
        let n = (r.len() / 16 * 16).min(lanes.len() / 2 * 16);
        // SAFETY: SSE2 is part of every x86_64 CPU; byte i..i + 16 < n of `r` and lanes
        // i / 8 and i / 8 + 1 < n / 8 of `lanes` exist (unaligned loads and stores).
        unsafe {
            let zero = _mm_setzero_si128();
            for i in (0..n).step_by(16) {
                let x = _mm_loadu_si128(r.as_ptr().add(i).cast::<__m128i>());
                let sad = _mm_sad_epu8(_mm_min_epu8(x, _mm_sub_epi8(zero, x)), zero);
                let at = lanes.as_mut_ptr().add(i / 8).cast::<__m128i>();
                _mm_storeu_si128(at, _mm_add_epi64(_mm_loadu_si128(at), sad));
            }
        }
        n
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod wide {
    pub(super) fn sum_abs_diff(_: &[u8], _: &[u8]) -> (u64, usize) {
        (0, 0)
    }
    pub(super) fn add_abs_i8_lanes(_: &[u8], _: &mut [u64]) -> usize {
        0
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
        }
        assert_eq!(sum_abs_diff(&[255; 40], &[0; 40]), 40 * 255);
        // The extremes of i8: -128 counts 128, -1 and 1 count 1.
        let edge = [0x80u8, 0xff, 0x01, 0x7f, 0x00, 0x80, 0x81, 0xfe].repeat(5);
        let mut lanes = [0u64; 5];
        add_abs_i8_lanes(&edge, &mut lanes);
        assert_eq!(lanes, [128 + 1 + 1 + 127 + 128 + 127 + 2; 5]);
        for len in [0, 5, 8, 16, 21, 40, 53] {
            let row = &a[..len];
            let mut lanes = vec![7u64; len.div_ceil(8)];
            add_abs_i8_lanes(row, &mut lanes);
            let want: Vec<u64> = row
                .chunks(8)
                .map(|c| 7 + c.iter().map(|&x| u64::from((x as i8).unsigned_abs())).sum::<u64>())
                .collect();
            assert_eq!(lanes, want, "{len} bytes");
        }
    }
}
