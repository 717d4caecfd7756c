//! Codec 3's residual coding (`FORMAT.md#34-chunk-data-interleaved-predicted-frames`): each
//! group of 8 residuals takes codec 1's group context from the row above; in a quiet area
//! its zero flags go to a bit stream of that context and its non-zero bytes, as they are, to
//! one of three byte streams; a busy group goes whole to the literal stream. Each stream is
//! a zstd frame of its own, so zstd's Huffman tables fit each.
//!
//! Why not codec 1's streams: those spend up to three serial bit reads on every non-zero
//! residual (its magnitude and sign contexts), which bound codec 1's decoder to 130-220
//! MB/s. Here the decoder reads one flag group per 8 residuals and places the group's
//! non-zero bytes with a table. Why not the residual bytes alone: zstd's Huffman coder
//! spends at least a bit on every zero, and most residuals are zero; the flags cost a
//! fraction of that (`scripts/pilots/chunk_layouts.py`: 26 % fewer bytes on a panning clip).

use super::bits::{BitReader, BitWriter, ByteReader, Fault};
use super::context::{row_group_contexts, LIT_K, PAD_L, PAD_R};
use super::decode::has_avx2;
use super::plane::Geom;

/// Zero-flag streams `Z0..Z8`, one per quiet group context.
pub(super) const N_FLAG: usize = LIT_K;
/// Non-zero byte streams `N0..N2`: a group of context `k` uses `N[k / 3]`.
pub(super) const N_NONZERO: usize = 3;
/// Every stream of a frame: `Z0..Z8`, `N0..N2`, `L`.
pub(super) const N_STREAMS: usize = N_FLAG + N_NONZERO + 1;

/// The encoder's streams of one frame.
pub(super) struct Streams {
    flags: Vec<BitWriter>,
    /// `N0..N2`, then `L`.
    bytes: Vec<Vec<u8>>,
    /// The row above, padded (`PAD_L`, `PAD_R`), its `|v|`, and this row's group contexts.
    up: Vec<u8>,
    abs: Vec<u8>,
    ctx: Vec<u8>,
    /// Take [`encode_avx2`]: the CPU has AVX2 and its bit instructions (`has_avx2`).
    avx2: bool,
}

impl Streams {
    pub(super) fn new() -> Self {
        Streams {
            flags: (0..N_FLAG).map(|_| BitWriter::default()).collect(),
            bytes: vec![Vec::new(); N_NONZERO + 1],
            up: Vec::new(),
            abs: Vec::new(),
            ctx: Vec::new(),
            avx2: has_avx2(),
        }
    }

    /// Streams that never take the AVX2 build of [`Streams::encode_plane`].
    #[cfg(test)]
    pub(super) fn without_avx2() -> Self {
        Streams { avx2: false, ..Streams::new() }
    }

    pub(super) fn clear(&mut self) {
        self.flags.iter_mut().for_each(BitWriter::clear);
        self.bytes.iter_mut().for_each(Vec::clear);
    }

    /// Flushes the bit streams; then [`Streams::get`] returns them whole.
    pub(super) fn finish(&mut self) {
        self.flags.iter_mut().for_each(BitWriter::finish);
    }

    /// Stream `s` in the order `Z0..Z8`, `N0..N2`, `L`.
    pub(super) fn get(&self, s: usize) -> &[u8] {
        if s < N_FLAG {
            &self.flags[s].out
        } else {
            &self.bytes[s - N_FLAG]
        }
    }

    /// Appends the residual plane `res` to the streams.
    pub(super) fn encode_plane(&mut self, g: &Geom, res: &[u8]) {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: `avx2` is only true when the CPU has every feature of the build
            // (`Streams::new`, `has_avx2`).
            unsafe { encode_avx2(self, g, res) };
            return;
        }
        encode_body::<false>(self, g, res);
    }
}

/// [`encode_body`] compiled for AVX2 and its bit instructions (everything it calls is
/// `#[inline(always)]`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,bmi2,popcnt,lzcnt")]
unsafe fn encode_avx2(streams: &mut Streams, g: &Geom, res: &[u8]) {
    encode_body::<true>(streams, g, res)
}

/// `SIMD`: gather the non-zero bytes with a byte shuffle (only from [`encode_avx2`]).
#[inline(always)]
fn encode_body<const SIMD: bool>(streams: &mut Streams, g: &Geom, res: &[u8]) {
    let w = g.w;
    let Streams { flags, bytes, up, abs, ctx, .. } = streams;
    for r in [&mut *up, &mut *abs] {
        r.clear();
        r.resize(PAD_L + w + PAD_R, 0);
    }
    ctx.resize(w.div_ceil(8), 0);
    for row in res.chunks_exact(w) {
        // The decoder's context loop: the same contexts by construction.
        row_group_contexts(up, abs, ctx);
        for (group, &k) in row.chunks(8).zip(ctx.iter()) {
            let k = usize::from(k);
            if k >= LIT_K {
                bytes[N_NONZERO].extend_from_slice(group);
                continue;
            }
            // A whole group as one 8-byte load; only a row's last group may be shorter
            // (a copy of variable length is a `memmove` call).
            let word: [u8; 8] = group.try_into().unwrap_or_else(|_| {
                let mut word = [0u8; 8];
                word[..group.len()].copy_from_slice(group);
                word
            });
            let mask = nonzero_mask(word);
            flags[k].put(mask as u32, group.len() as u32);
            // The non-zero bytes in order, without a branch per byte: all 8 bytes written,
            // the stream cut back to the non-zero ones.
            let nz = &mut bytes[k / 3];
            let at = nz.len();
            nz.extend_from_slice(&gather::<SIMD>(word, mask));
            nz.truncate(at + mask.count_ones() as usize);
        }
        up[PAD_L..PAD_L + w].copy_from_slice(row);
    }
}

/// The non-zero bytes of a group, in order, from its zero-flag `mask` (then bytes of no
/// meaning): the inverse of [`scatter`].
#[inline(always)]
fn gather<const SIMD: bool>(word: [u8; 8], mask: usize) -> [u8; 8] {
    shuffle8::<SIMD>(word, &GATHER[mask & 0xff])
}

/// The decoder's readers of one frame's streams.
#[derive(Default)]
pub(super) struct Readers {
    /// `Z0..Z8`; the length is a power of two so a masked index needs no bounds check.
    z: [BitReader; 16],
    /// `N0..N2`.
    n: [ByteReader; 4],
    l: ByteReader,
}

impl Readers {
    /// Points stream `s` (in the order of [`Streams::get`]) at `data[pos..end]`.
    pub(super) fn init(&mut self, s: usize, pos: usize, end: usize) {
        match s {
            _ if s < N_FLAG => self.z[s] = BitReader::new(pos, end, s),
            _ if s < N_FLAG + N_NONZERO => self.n[s - N_FLAG] = ByteReader::new(pos, end, s),
            _ => self.l = ByteReader::new(pos, end, s),
        }
    }

    /// The first stream not read exactly to its end, if any.
    pub(super) fn unfinished(&self) -> Option<usize> {
        if let Some(s) = (0..N_FLAG).find(|&s| !self.z[s].finished()) {
            return Some(s);
        }
        if let Some(s) = (0..N_NONZERO).find(|&s| !self.n[s].finished()) {
            return Some(N_FLAG + s);
        }
        (!self.l.finished()).then_some(N_STREAMS - 1)
    }
}

/// Row buffers of [`decode_plane`], padded by `PAD_L`/`PAD_R` bytes.
#[derive(Default)]
pub(super) struct Rows {
    up: Vec<u8>,
    cur: Vec<u8>,
    /// `|v|` of the row above.
    abs: Vec<u8>,
    /// Group context of each group of this row.
    ctx: Vec<u8>,
}

/// Reads one plane's residuals from the streams into `plane`. `data` holds the streams
/// and at least 8 bytes after the last one (the readers load 8 bytes at a time). `avx2`:
/// run the build of [`decode_body`] compiled for AVX2 (the caller checked the CPU); the
/// bytes it produces are the same.
pub(super) fn decode_plane(
    g: &Geom,
    data: &[u8],
    rd: &mut Readers,
    rows: &mut Rows,
    plane: &mut [u8],
    fault: &mut Fault,
    avx2: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is only true when the CPU has every feature of the build
        // (`ChunkDecoder::new`, `has_avx2`).
        unsafe { decode_avx2(g, data, rd, rows, plane, fault) };
        return;
    }
    let _ = avx2;
    decode_body::<false>(g, data, rd, rows, plane, fault);
}

/// [`decode_body`] compiled for AVX2 and its bit instructions (everything it calls is
/// `#[inline(always)]`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,bmi2,popcnt,lzcnt")]
unsafe fn decode_avx2(
    g: &Geom,
    data: &[u8],
    rd: &mut Readers,
    rows: &mut Rows,
    plane: &mut [u8],
    fault: &mut Fault,
) {
    decode_body::<true>(g, data, rd, rows, plane, fault)
}

/// `SIMD`: place the non-zero bytes with a byte shuffle (only from [`decode_avx2`]).
#[inline(always)]
fn decode_body<const SIMD: bool>(
    g: &Geom,
    data: &[u8],
    rd: &mut Readers,
    rows: &mut Rows,
    plane: &mut [u8],
    fault: &mut Fault,
) {
    let w = g.w;
    let padded = PAD_L + w + PAD_R;
    for r in [&mut rows.up, &mut rows.cur, &mut rows.abs] {
        r.clear();
        r.resize(padded, 0);
    }
    let ngroups = w.div_ceil(8);
    rows.ctx.clear();
    rows.ctx.resize(ngroups, 0);
    let Rows { up, cur, abs, ctx } = rows;
    for out in plane.chunks_exact_mut(w) {
        // The contexts depend only on the row above: loops over whole rows that vectorise.
        row_group_contexts(up, abs, ctx);
        for (gi, &k) in ctx.iter().enumerate() {
            let x0 = gi * 8;
            let (k, n) = (usize::from(k), (w - x0).min(8));
            let vals: &mut [u8; 8] = (&mut cur[PAD_L + x0..PAD_L + x0 + 8]).try_into().unwrap();
            if k >= LIT_K {
                // Busy area: the bytes as they are. Bytes past the row come back zero, so
                // the right padding stays zero for the next row's contexts.
                *vals = rd.l.read8(data, n, fault);
                continue;
            }
            let mask = rd.z[k & 15].read(data, n as u32, fault) as usize & 0xff;
            let count = mask.count_ones() as usize;
            let bytes = rd.n[(k / 3) & 3].read8(data, count, fault);
            if has_zero_byte(bytes, count) {
                // A flagged residual must be non-zero: reported as magnitude 0.
                fault.magnitude.get_or_insert(0);
            }
            *vals = scatter::<SIMD>(bytes, mask);
        }
        out.copy_from_slice(&cur[PAD_L..PAD_L + w]);
        std::mem::swap(up, cur);
    }
}

/// The group's 8 residuals from its zero-flag `mask` and its non-zero `bytes`, in order.
#[inline(always)]
fn scatter<const SIMD: bool>(bytes: [u8; 8], mask: usize) -> [u8; 8] {
    shuffle8::<SIMD>(bytes, &SCATTER[mask & 0xff])
}

/// `out[i] = bytes[from[i]]`, where index 8 gives a zero: one byte shuffle in the AVX2
/// builds (`SIMD`, only from [`encode_avx2`] and [`decode_avx2`]).
#[inline(always)]
fn shuffle8<const SIMD: bool>(bytes: [u8; 8], from: &[u8; 8]) -> [u8; 8] {
    #[cfg(target_arch = "x86_64")]
    if SIMD {
        use std::arch::x86_64::{_mm_cvtsi128_si64, _mm_cvtsi64_si128, _mm_shuffle_epi8};
        // SAFETY: `SIMD` is true only in the AVX2 builds, whose CPU check covers SSSE3.
        // Index 8 picks byte 8 of the register, which the load zeroed.
        unsafe {
            let v = _mm_cvtsi64_si128(i64::from_le_bytes(bytes));
            let r = _mm_shuffle_epi8(v, _mm_cvtsi64_si128(i64::from_le_bytes(*from)));
            return _mm_cvtsi128_si64(r).to_le_bytes();
        }
    }
    let src = [bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], 0];
    from.map(|i| src[usize::from(i)])
}

/// Whether one of the first `count` (at most 8) bytes is zero.
#[inline(always)]
fn has_zero_byte(bytes: [u8; 8], count: usize) -> bool {
    // Bytes past `count` are set to 0xff, then the usual test for a zero byte in a word.
    let keep = if count >= 8 { u64::MAX } else { (1u64 << (8 * count)) - 1 };
    let v = u64::from_le_bytes(bytes) | !keep;
    v.wrapping_sub(0x0101_0101_0101_0101) & !v & 0x8080_8080_8080_8080 != 0
}

/// Bit `i` set where byte `i` of `word` is non-zero.
#[inline(always)]
fn nonzero_mask(word: [u8; 8]) -> usize {
    // High bit of each byte: set where the byte is non-zero (its low 7 bits added to 0x7f
    // carry into bit 7, or bit 7 was set); then gather the 8 high bits into one byte.
    let v = u64::from_le_bytes(word);
    let high = ((v & 0x7f7f_7f7f_7f7f_7f7f).wrapping_add(0x7f7f_7f7f_7f7f_7f7f) | v)
        & 0x8080_8080_8080_8080;
    ((high >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as usize
}

/// For each zero-flag mask, the positions of its set bits in order (then 0s): where the
/// encoder takes the group's non-zero bytes from.
static GATHER: [[u8; 8]; 256] = mask_table(true);

/// For each zero-flag mask, where each of the group's 8 bytes comes from: the index of its
/// non-zero byte among the group's (set bits below it), or 8 (a zero) for a clear bit.
static SCATTER: [[u8; 8]; 256] = mask_table(false);

/// [`GATHER`] (`gather`) or [`SCATTER`]: for the `j`-th set bit `i` of each mask, entry
/// `j` is `i` or entry `i` is `j`.
const fn mask_table(gather: bool) -> [[u8; 8]; 256] {
    let mut t = [[if gather { 0 } else { 8 }; 8]; 256];
    let mut m = 0;
    while m < 256 {
        let (mut i, mut j) = (0, 0);
        while i < 8 {
            if (m >> i) & 1 == 1 {
                if gather {
                    t[m][j] = i as u8;
                } else {
                    t[m][i] = j as u8;
                }
                j += 1;
            }
            i += 1;
        }
        m += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zero_byte_test_looks_only_at_the_first_bytes() {
        assert!(!has_zero_byte([1, 2, 3, 0, 0, 0, 0, 0], 3));
        assert!(has_zero_byte([1, 2, 0, 0, 0, 0, 0, 0], 3));
        assert!(!has_zero_byte([0; 8], 0));
        assert!(has_zero_byte([1, 1, 1, 1, 1, 1, 1, 0], 8));
        assert!(!has_zero_byte([0x80, 0xff, 1, 2, 3, 4, 5, 6], 8));
        for b in 0..=255u8 {
            assert_eq!(has_zero_byte([b, 7, 7, 7, 7, 7, 7, 7], 8), b == 0);
        }
    }

    #[test]
    fn both_scatters_place_the_nth_non_zero_byte_at_the_nth_set_bit() {
        let bytes = [11, 22, 33, 44, 55, 66, 77, 88];
        for mask in 0..256usize {
            let mut want = [0u8; 8];
            let mut j = 0;
            for (i, w) in want.iter_mut().enumerate() {
                if mask >> i & 1 == 1 {
                    *w = bytes[j];
                    j += 1;
                }
            }
            assert_eq!(scatter::<false>(bytes, mask), want, "{mask:08b}");
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") {
                assert_eq!(scatter::<true>(bytes, mask), want, "{mask:08b}");
            }
        }
    }

    #[test]
    fn the_nonzero_mask_and_the_gather_table_pick_the_nonzero_bytes() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Bytes that are often zero, sometimes 0x80 or 0x01 (the carry's edge cases).
            let word: [u8; 8] =
                (state.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes().map(|b| match b % 4 {
                    0 | 1 => 0,
                    2 => [0x80, 0x01, 0xff, 0x7f][usize::from(b >> 6)],
                    _ => b,
                });
            let mask = nonzero_mask(word);
            let want: usize = (0..8).filter(|&i| word[i] != 0).map(|i| 1 << i).sum();
            assert_eq!(mask, want, "{word:?}");
            let picked: Vec<u8> = GATHER[mask][..mask.count_ones() as usize]
                .iter()
                .map(|&i| word[usize::from(i)])
                .collect();
            let nonzero: Vec<u8> = word.iter().copied().filter(|&b| b != 0).collect();
            assert_eq!(picked, nonzero);
            assert_eq!(scatter::<false>(picked_word(&picked), mask), word, "gather then scatter");
        }
    }

    #[test]
    fn both_gathers_and_both_encoders_agree() {
        for mask in 0..256usize {
            let word = [11, 22, 33, 44, 55, 66, 77, 88];
            let n = mask.count_ones() as usize;
            let want: Vec<u8> = (0..8).filter(|&i| mask >> i & 1 == 1).map(|i| word[i]).collect();
            assert_eq!(gather::<false>(word, mask)[..n], want[..], "{mask:08b}");
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                assert_eq!(gather::<true>(word, mask)[..n], want[..], "{mask:08b}");
            }
        }
        // Whole planes, quiet and busy areas, rows that end in a short group, 3 channels.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for (w, h, s) in [(61, 9, 1), (64, 4, 1), (33 * 3, 5, 3), (5, 3, 1)] {
            let g = Geom { off: 0, w, h, s, bw: 16 * s, bh: 16, nbx: 1, nby: 1 };
            let res: Vec<u8> = (0..w * h)
                .map(|i| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let busy = (i / w) % 3 == 2;
                    if busy || state.is_multiple_of(5) {
                        (state >> 40) as u8
                    } else {
                        0
                    }
                })
                .collect();
            let mut portable = Streams::without_avx2();
            let mut fast = Streams::new();
            for st in [&mut portable, &mut fast] {
                st.clear();
                st.encode_plane(&g, &res);
                st.finish();
            }
            for k in 0..N_STREAMS {
                assert_eq!(portable.get(k), fast.get(k), "{w}x{h}: stream {k}");
            }
            assert!((0..N_STREAMS).any(|k| !portable.get(k).is_empty()));
        }
    }

    fn picked_word(p: &[u8]) -> [u8; 8] {
        let mut w = [0u8; 8];
        w[..p.len()].copy_from_slice(p);
        w
    }

    #[test]
    fn the_scatter_table_places_the_nth_non_zero_byte_at_the_nth_set_bit() {
        assert_eq!(SCATTER[0], [8; 8]);
        assert_eq!(SCATTER[0b1010_0101], [0, 8, 1, 8, 8, 2, 8, 3]);
        assert_eq!(SCATTER[0xff], [0, 1, 2, 3, 4, 5, 6, 7]);
    }
}
